"""`prefkit data validate|stats|export` through the real command (CliRunner and one subprocess),
the Hub paths with no network, and the token never shown."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import datasets
import pytest
from typer.testing import CliRunner

from prefkit.cli import app
from prefkit.core.errors import DataError
from prefkit.data.schema import Judgement, Pair, Prompt, Response, Strength
from prefkit.data.writers import write_judgements, write_pairs

runner = CliRunner()
SECRET = "hf_prefkitTestTokenDoNotPrint123"


def run_prefkit(
    prefkit_bin: Path, *args: str, env: dict[str, str] | None = None, home: Path
) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    full_env.update({"HF_HOME": str(home), "COLUMNS": "200"}, **(env or {}))
    return subprocess.run([str(prefkit_bin), *args], capture_output=True, text=True, env=full_env, timeout=120)


def test_validate_clean_file(vi_file: Path) -> None:
    result = runner.invoke(app, ["data", "validate", str(vi_file)])
    assert result.exit_code == 0, result.output
    assert "vi_alpaca_preference" in result.output and "errors" in result.output


def test_validate_lists_every_bad_record(write_jsonl: Callable[..., Path], vi_rows: list[dict]) -> None:
    path = write_jsonl(
        [vi_rows[0], '{"question": "q"', {**vi_rows[1], "chosen": ""}, vi_rows[2], {**vi_rows[3], "strength": "huge"}]
    )
    result = runner.invoke(app, ["data", "validate", str(path)])
    assert isinstance(result.exception, DataError) and "3 bad record(s)" in str(result.exception)
    for where in (":2", ":3", ":5"):
        assert where in result.output
    assert "malformed JSON" in result.output and "empty text" in result.output and "not a strength" in result.output


def test_validate_flags_over_long_fields_as_warnings(vi_file: Path) -> None:
    result = runner.invoke(app, ["data", "validate", str(vi_file), "--max-chars", "10"])
    assert result.exit_code == 0
    assert "characters (over 10)" in result.output


def test_validate_subprocess_exit_code_and_stderr(
    prefkit_bin: Path, write_jsonl: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_jsonl([{"prompt": "a", "response": "b"}, "{oops"])
    proc = run_prefkit(prefkit_bin, "data", "validate", str(path), home=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and f"{path}, line 2: malformed JSON" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_stats_json(vi_file: Path) -> None:
    result = runner.invoke(app, ["data", "stats", str(vi_file), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["rows"] == 4 and stats["format"] == "vi_alpaca_preference"
    assert stats["strength"] == {"better": 1, "none": 1, "significantly_better": 1, "slightly_better": 1}
    assert stats["lengths"]["rejected"]["chars"]["min"] == 2
    assert stats["exact_duplicate_rate"] == 0.0


def test_stats_counts_exact_and_nfd_duplicates(write_jsonl: Callable[..., Path]) -> None:
    import unicodedata

    q = "Quang hợp là gì?"
    rows = [
        {"prompt": q, "response": "x"},
        {"prompt": unicodedata.normalize("NFD", q), "response": "x"},
        {"prompt": "Khác", "response": "y"},
        {"prompt": "Khác", "response": "y"},
    ]
    result = runner.invoke(app, ["data", "stats", str(write_jsonl(rows)), "--json"])
    stats = json.loads(result.output)
    assert stats["exact_duplicate_rows"] == 2 and stats["prompts"] == 2
    assert "lengths" in stats and stats["lengths"]["response"]["words"]["max"] == 1


def test_export_labelled_file(vi_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = runner.invoke(
        app,
        [
            "data",
            "export",
            str(vi_file),
            str(out),
            "--test-size",
            "0.25",
            "--margin",
            "large",
            "--jsonl",
            "--license",
            "apache-2.0",
        ],
    )
    assert result.exit_code == 0, result.output
    loaded = datasets.load_from_disk(str(out))
    assert loaded["train"].num_rows + loaded["test"].num_rows == 4
    assert sorted([*loaded["train"]["margin"], *loaded["test"]["margin"]]) == [0.0, 1.0, 2.0, 3.0]
    assert "license: apache-2.0" in (out / "README.md").read_text()


def test_export_pairs_with_judgements(tmp_path: Path) -> None:
    pairs = [Pair(Prompt(f"Hỏi {i}?"), Response(f"A{i}", model="m", seed=i), Response(f"B{i}")) for i in range(6)]
    js = [
        Judgement(p.pair_id, who, p.a.id if i % 2 else p.b.id, Strength.BETTER)
        for i, p in enumerate(pairs[:5])
        for who in ("an", "binh")
    ]
    write_pairs(pairs, tmp_path / "pairs.parquet")
    write_judgements(js, tmp_path / "judgements.jsonl")
    out = tmp_path / "ds"
    result = runner.invoke(
        app,
        [
            "data",
            "export",
            str(tmp_path / "pairs.parquet"),
            str(out),
            "--judgements",
            str(tmp_path / "judgements.jsonl"),
            "--test-size",
            "0.2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "5 rows" in result.output and "1 unjudged" in result.output
    loaded = datasets.load_from_disk(str(out))
    recs = loaded["train"].to_list() + loaded["test"].to_list()
    assert {r["id"] for r in recs} == {p.pair_id for p in pairs[:5]}
    assert all(r["n_annotators"] == 2 and r["agreement"] == 1.0 and r["strength"] == "better" for r in recs)
    assert "Judgements" in (out / "README.md").read_text()


def test_export_pairs_without_judgements_is_an_error(tmp_path: Path) -> None:
    write_pairs([Pair(Prompt("q"), Response("a"), Response("b"))], tmp_path / "pairs.jsonl")
    result = runner.invoke(app, ["data", "export", str(tmp_path / "pairs.jsonl"), str(tmp_path / "out")])
    assert isinstance(result.exception, DataError) and "pass --judgements" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_export_of_a_bad_file_writes_nothing(
    write_jsonl: Callable[..., Path], vi_rows: list[dict], tmp_path: Path
) -> None:
    path = write_jsonl([*vi_rows, {"question": "q", "chosen": "c"}])
    result = runner.invoke(app, ["data", "export", str(path), str(tmp_path / "out"), "--parquet"])
    assert isinstance(result.exception, DataError)
    assert (result.exception.line, result.exception.field) == (5, "rejected")
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}])
def test_hub_id_without_network_is_one_clear_error(prefkit_bin: Path, tmp_path: Path, env: dict[str, str]) -> None:
    proc = run_prefkit(prefkit_bin, "data", "validate", "someorg/some-dataset", env=env, home=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cannot load Hub dataset 'someorg/some-dataset'" in proc.stderr


def test_push_to_unreachable_hub_fails_clearly_without_showing_the_token(
    prefkit_bin: Path, vi_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": SECRET}
    proc = run_prefkit(
        prefkit_bin,
        "data",
        "export",
        str(vi_file),
        str(out),
        "--push-to-hub",
        "org/vi-pref",
        "--private",
        env=env,
        home=tmp_path / "hf",
    )
    assert proc.returncode == 2, proc.stderr
    assert "push to the Hub as 'org/vi-pref' failed" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert datasets.load_from_disk(str(out))["train"].num_rows > 0  # the local export stands


def test_push_without_a_token_says_how_to_get_one(prefkit_bin: Path, vi_file: Path, tmp_path: Path) -> None:
    proc = run_prefkit(
        prefkit_bin,
        "data",
        "export",
        str(vi_file),
        str(tmp_path / "ds"),
        "--push-to-hub",
        "org/x",
        env={"HF_ENDPOINT": "http://127.0.0.1:9"},
        home=tmp_path / "hf",
    )
    assert proc.returncode == 2 and "no Hugging Face token" in proc.stderr
    assert not (tmp_path / "ds").exists()
