"""`prefkit data dedup|export --config FILE --set k=v`: the command's config dataclass as YAML,
typed options over the file, `--set` over both; unknown keys and bad values are one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from prefkit.cli import app
from prefkit.data.demo import sample_path

runner = CliRunner()


def test_dedup_config_file_options_and_set(tmp_path: Path) -> None:
    config = tmp_path / "dedup.yaml"
    config.write_text("threshold: 0.5\nnum_perm: 64\nverify: estimate\non: prompt\n", encoding="utf-8")
    out = tmp_path / "kept.jsonl"
    result = runner.invoke(
        app,
        ["data", "dedup", str(sample_path()), str(out), "--config", str(config), "--num-perm", "32", "--set", "seed=3"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "kept.dedup-report.json").read_text(encoding="utf-8"))
    # from the file / typed over the file / --set / the dataclass default
    assert (report["threshold"], report["num_perm"], report["seed"], report["verify"]) == (0.5, 32, 3, "estimate")
    plain = runner.invoke(app, ["data", "dedup", str(sample_path()), str(tmp_path / "plain.jsonl")])
    assert plain.exit_code == 0, plain.output
    default = json.loads((tmp_path / "plain.dedup-report.json").read_text(encoding="utf-8"))
    assert (default["threshold"], default["num_perm"], default["seed"]) == (0.8, 128, 1)
    assert report["rows_out"] <= default["rows_out"]  # a lower threshold removes at least as many


def test_export_config_file(tmp_path: Path) -> None:
    config = tmp_path / "export.yaml"
    config.write_text("test_size: 0.25\nmargin: large\njsonl: true\nlicense: cc-by-4.0\n", encoding="utf-8")
    out = tmp_path / "ds"
    result = runner.invoke(
        app, ["data", "export", str(sample_path()), str(out), "--config", str(config), "--no-jsonl", "--set", "seed=7"]
    )
    assert result.exit_code == 0, result.output
    provenance = json.loads((out / "prefkit_provenance.json").read_text(encoding="utf-8"))
    assert provenance["margin"] == "large" and provenance["license"] == "cc-by-4.0"
    assert not (out / "jsonl").exists()  # --no-jsonl typed over the file's jsonl: true
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "cc-by-4.0" in card and "0.25" in card and "7" in card


def test_unknown_key_and_bad_value_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("thresold: 0.5\n", encoding="utf-8")
    unknown = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefkit.cli",
            "data",
            "dedup",
            str(sample_path()),
            str(tmp_path / "a.jsonl"),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert unknown.stderr.strip().splitlines() == [
        f"error: {config}: unknown key(s) thresold (known: address, columns, engine, ngram, num_perm, on, report, "
        "seed, threshold, verify, workers)"
    ]
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefkit.cli",
            "data",
            "export",
            str(sample_path()),
            str(tmp_path / "b"),
            "--set",
            "margin=huge",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "margin" in bad.stderr
    assert not (tmp_path / "a.jsonl").exists() and not (tmp_path / "b").exists()
