"""`--shard I/N`: N data-parallel runs answer disjoint parts of the prompts into one folder, which
`annotate import` (and every reader of a Parquet folder) reads whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefkit.core.errors import ConfigError
from prefkit.data.readers import read_pairs
from prefkit.generate.config import GenerateConfig
from prefkit.generate.run import generate_pairs, prompt_part

REPO = Path(__file__).resolve().parents[2]


def config(prompts: Path, out: Path, model: Path, **kw) -> GenerateConfig:
    values = dict(
        prompts=str(prompts),
        out=str(out),
        models=[str(model)],
        temperatures=[0.7, 1.1],
        max_tokens=4,
        shard_size=2,
        plan="all_pairs",
        device="cpu",
        dtype="float32",
        progress=False,
        seed=2,
    )
    return GenerateConfig(**{**values, **kw})


def by_id(pairs):
    return {p.pair_id: (p.prompt.question, p.a.text, p.b.text, p.a.seed, p.b.seed) for p in pairs}


def test_parts_split_the_prompts_disjointly_into_one_folder(tiny_model_path, questions, make_prompts, tmp_path):
    prompts = make_prompts(tmp_path / "prompts.jsonl", questions[:8])
    whole = generate_pairs(config(prompts, tmp_path / "whole", tiny_model_path))
    out = tmp_path / "parts"
    reports = [generate_pairs(config(prompts, out, tiny_model_path, shard=f"{i}/2")).report for i in range(2)]

    # Each part answered its own prompts; together they are the whole run, pair for pair.
    done = [r["prompts"]["done"] for r in reports]
    assert sum(done) == 8 and min(done) >= 1
    parts = [read_pairs(out / name) for r in reports for name in r["shards"]]
    per_part = [set(), set()]
    for i, r in enumerate(reports):
        for name in r["shards"]:
            assert name.startswith(f"part-{i:03d}-of-002.shard-")
            per_part[i].update(p.prompt.question for p in read_pairs(out / name))
    assert not per_part[0] & per_part[1]
    assert by_id(read_pairs(out)) == by_id(read_pairs(whole.out))
    assert len(read_pairs(out)) == sum(len(p) for p in parts) == 8
    assert sorted(p.name for p in out.glob("*.json")) == [
        "part-000-of-002.manifest.json",
        "part-000-of-002.report.json",
        "part-001-of-002.manifest.json",
        "part-001-of-002.report.json",
    ]
    # The split depends on the prompt id only: the same prompts in another order split the same way.
    assert all(prompt_part(p.prompt.id, 2) == (0 if p.prompt.question in per_part[0] else 1) for p in read_pairs(out))

    # `annotate import` reads the folder whole.
    from prefkit.cli import app

    db = f"sqlite:///{tmp_path / 'annotations.db'}"
    result = CliRunner().invoke(app, ["annotate", "import", str(out), "--project", "p", "--db", db])
    assert result.exit_code == 0, result.output
    assert "8" in result.output
    from prefkit.annotate.store import Store

    with Store.open(db) as store:
        assert store.count_pairs("p") == 8


def test_a_part_resumes_and_the_folder_refuses_mixed_splits(tiny_model_path, questions, make_prompts, tmp_path):
    prompts = make_prompts(tmp_path / "prompts.jsonl", questions[:8])
    out = tmp_path / "parts"
    first = generate_pairs(config(prompts, out, tiny_model_path, shard="1/2", limit=4))
    resumed = generate_pairs(config(prompts, out, tiny_model_path, shard="1/2"), resume=True)
    assert resumed.report["prompts"]["done"] > first.report["prompts"]["done"]
    assert resumed.report["shards"][: len(first.report["shards"])] == first.report["shards"]

    with pytest.raises(ConfigError, match=r"already holds a generation run .*part-001-of-002\.manifest\.json"):
        generate_pairs(config(prompts, out, tiny_model_path, shard="1/2"))
    with pytest.raises(ConfigError, match="more than other parts of a 3-way split"):
        generate_pairs(config(prompts, out, tiny_model_path, shard="0/3"))
    with pytest.raises(ConfigError, match="holds no generation run"):
        generate_pairs(config(prompts, out, tiny_model_path))
    with pytest.raises(
        ConfigError, match=r"another part of this folder ran with different settings \(max_tokens: 4 -> 5\)"
    ):
        generate_pairs(config(prompts, out, tiny_model_path, shard="0/2", max_tokens=5))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("part-000")) == []  # refused before writing

    for bad in ("2/2", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(ConfigError, match="shard must be I/N"):
            GenerateConfig(shard=bad)


@pytest.mark.slow
def test_the_readme_shell_example_runs_parts_side_by_side(tiny_model_path, questions, make_prompts, tmp_path):
    """Two `prefkit generate --shard I/2` processes at once into one folder, as the README shows."""
    prompts = make_prompts(tmp_path / "prompts.jsonl", questions[:6])
    out = tmp_path / "pairs"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from prefkit.cli import main; main()",
                "generate",
                str(prompts),
                str(out),
                "--model",
                str(tiny_model_path),
                "--temperatures",
                "0.7,1.1",
                "--max-tokens",
                "4",
                "--shard",
                f"{i}/2",
                "--shard-size",
                "1",
                "--set",
                "device=cpu",
                "--no-progress",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-2000:]
    reports = [json.loads((out / f"part-{i:03d}-of-002.report.json").read_text()) for i in range(2)]
    assert all(r["complete"] for r in reports)
    assert sum(r["prompts"]["done"] for r in reports) == 6
    assert len(read_pairs(out)) == sum(r["pairs"] for r in reports) > 0
    assert sorted(p.prompt.question for p in read_pairs(out)) == sorted(questions[:6])  # random_pair: one per prompt
