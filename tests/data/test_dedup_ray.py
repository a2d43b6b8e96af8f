"""`--engine ray`: signatures and LSH candidates on a real local Ray instance (2 CPUs), giving
exactly the kept rows and report of `--engine local` on the same input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from prefkit.core.errors import ConfigError
from prefkit.data.dedup import CHUNK_ROWS, dedup_records
from prefkit.data.minhash import WINDOW, candidate_pairs

pytest.importorskip("ray.data", reason="engine ray needs Ray Data: pip install 'prefkit[ray]'")

WORDS = [f"từ{i}" for i in range(3000)]


@pytest.fixture(scope="module")
def ray_engine():
    from prefkit.data.dedup_ray import RayEngine

    engine = RayEngine(num_cpus=2)
    yield engine
    engine.close()


def corpus(seed: int = 0) -> list[dict]:
    """More rows than one block; exact copies; and a 40-row family of one-word variants whose LSH
    buckets are larger than the candidate window."""
    rng = random.Random(seed)
    rows = [
        {"prompt": f"câu {i % 7}", "response": " ".join(rng.choice(WORDS) for _ in range(40))}
        for i in range(CHUNK_ROWS + 700)
    ]
    rows += [dict(r) for r in rows[:30]]
    base = rows[11]["response"].split()
    for k in range(WINDOW + 8):
        ws = list(base)
        ws[k % len(ws)] = f"khác{k}"
        rows.append({"prompt": rows[11]["prompt"], "response": " ".join(ws)})
    rows.append({"prompt": "?", "response": "…"})  # a key with no words
    rng.shuffle(rows)
    return rows


def without_timing(report) -> dict:
    d = report.to_dict()
    d.pop("seconds")
    return d


def test_ray_keeps_the_same_rows_and_writes_the_same_report_as_local(ray_engine):
    rows = corpus()
    local = dedup_records(rows, ["prompt", "response"], workers=1)
    ray = dedup_records(rows, ["prompt", "response"], engine=ray_engine)
    assert ray[0] == local[0]
    assert without_timing(ray[1]) == without_timing(local[1])
    assert local[1].exact_removed == 30 and local[1].near_removed >= WINDOW and local[1].empty_keys == 1


def test_ray_candidates_are_the_local_ones_with_buckets_beyond_the_window(ray_engine):
    rng = np.random.default_rng(3)
    sigs = rng.integers(0, 2, size=(3000, 16), dtype=np.uint32)  # 16 buckets per band: ~190 rows each
    expected = candidate_pairs(sigs, 4, 4)
    got = ray_engine.candidate_pairs(sigs, 4, 4)
    assert len(expected) > 3000 * (WINDOW - 1)  # windowed, not all pairs of each bucket
    assert np.array_equal(got, expected)
    assert ray_engine.candidate_pairs(sigs[:1], 4, 4).shape == (0, 2)


def test_cli_engine_ray_writes_the_local_output(ray_engine, tmp_path: Path):
    from prefkit.cli import app

    rows = corpus(seed=1)[:800]
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    runner = CliRunner()
    outs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.jsonl"
        result = runner.invoke(app, ["data", "dedup", str(src), str(out), "--engine", engine, "--workers", "2"])
        assert result.exit_code == 0, result.output
        report = json.loads((tmp_path / f"{engine}.dedup-report.json").read_text(encoding="utf-8"))
        for k in ("seconds", "output"):
            report.pop(k)
        outs[engine] = (out.read_bytes(), report)
    assert outs["ray"] == outs["local"]
    assert outs["local"][1]["rows_out"] < len(rows)

    bad = runner.invoke(app, ["data", "dedup", str(src), str(tmp_path / "x.jsonl"), "--engine", "spark"])
    assert (
        bad.exit_code != 0
        and isinstance(bad.exception, ConfigError)
        and "engine must be one of local, ray" in str(bad.exception)
    )
    assert not (tmp_path / "x.jsonl").exists()
    with pytest.raises(ConfigError, match="--address is for --engine ray"):
        dedup_records(rows[:10], ["prompt"], address="auto")
