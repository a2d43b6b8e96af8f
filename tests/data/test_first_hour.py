"""A new user's first hour with the data room (issue 21): a mistyped local path, a preference file
with other column names (and `--columns` to read it), an earlier export exported again, the docs'
examples in a user's clone, and a `--set` key blamed on `--set`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefkit.cli import app
from prefkit.core.config import load_config, parse_mapping
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.dedup_config import DedupConfig
from prefkit.data.demo import sample_path
from prefkit.data.readers import read_pairs, read_preferences
from prefkit.data.validate import validate_source

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()

PREFERENCE_CSV = (
    "instruction,output_1,output_2,preferred\n"
    '"Thủ đô của Pháp là gì?","Paris là thủ đô của Pháp.","Lyon.",1\n'
    '"Hai cộng hai bằng mấy?","Bốn.","Năm.",1\n'
    '"Viết một câu chào buổi sáng.","Chào buổi sáng!","Tạm biệt.",1\n'
)


def prefkit(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefkit.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


# --------------------------------------------------------------------------- a path that is not there


def test_a_mistyped_local_folder_is_no_such_folder_not_a_hub_dataset(tmp_path: Path) -> None:
    (tmp_path / "runs" / "export").mkdir(parents=True)
    # nothing listens on the Hub endpoint: a Hub lookup would fail with a network error instead
    proc = prefkit("data", "validate", "runs/exprot", cwd=tmp_path, env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: runs/exprot: no such file or folder (did you mean runs/export?)")
    assert "prefkit data export" in proc.stderr and "Hub" not in proc.stderr


def test_a_missing_file_and_folder_say_so_and_what_writes_them(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        validate_source(tmp_path / "nope" / "rows.jsonl")
    assert "no such file or folder (its folder" in str(e.value) and "prefkit generate" in str(e.value)
    (tmp_path / "prompts.jsonl").write_text('{"question": "q"}\n')
    with pytest.raises(DataError, match=r"did you mean .*prompts\.jsonl"):
        validate_source(tmp_path / "promts.jsonl")


def test_an_unreachable_hub_id_says_it_is_no_local_path_either(tmp_path: Path) -> None:
    proc = prefkit("data", "validate", "someorg/some-dataset", cwd=tmp_path, env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert proc.returncode == 2
    assert "no such file or folder here, and cannot load Hub dataset 'someorg/some-dataset'" in proc.stderr


# --------------------------------------------------------------------------- other column names


def test_preference_columns_under_other_names_are_a_warning_that_lists_the_formats(tmp_path: Path) -> None:
    path = tmp_path / "prefs.csv"
    path.write_text(PREFERENCE_CSV, encoding="utf-8")
    report = validate_source(path)
    assert report.format == "prompts" and report.n_errors == 0
    [warning] = report.warnings
    assert "columns output_1, output_2, preferred look like preference data" in warning.message
    for needed in ("question, chosen, rejected", "question, a_text, b_text", "instruction, output", "--columns"):
        assert needed in warning.message
    # a plain prompts file is not warned about
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("instruction,category\nq1,math\n", encoding="utf-8")
    assert validate_source(prompts).warnings == []


def test_import_and_export_refuse_such_a_file_with_the_columns_not_line_2(tmp_path: Path) -> None:
    path = tmp_path / "prefs.csv"
    path.write_text(PREFERENCE_CSV, encoding="utf-8")
    for read in (read_pairs, read_preferences):
        with pytest.raises(DataError) as e:
            read(path)
        assert e.value.line is None and "look like preference data" in str(e.value)


def test_columns_map_a_files_names_onto_the_formats(tmp_path: Path) -> None:
    path = tmp_path / "prefs.csv"
    path.write_text(PREFERENCE_CSV, encoding="utf-8")
    pairs = read_pairs(path, columns=parse_mapping("question=instruction,a_text=output_1,b_text=output_2"))
    assert [p.prompt.question for p in pairs][:1] == ["Thủ đô của Pháp là gì?"] and pairs[0].a.text.startswith("Paris")
    rows = read_preferences(path, columns={"question": "instruction", "chosen": "output_1", "rejected": "output_2"})
    assert [(r.chosen, r.rejected) for r in rows][1] == ("Bốn.", "Năm.")
    report = validate_source(path, columns={"question": "instruction", "a_text": "output_1", "b_text": "output_2"})
    assert report.format == "pairs" and report.warnings == [] and report.n_errors == 0

    # on the command line (`--columns`) and in a config file (`columns:`), as LLaMA-Factory's dataset_info
    out = tmp_path / "ds"
    result = runner.invoke(
        app,
        ["data", "export", str(path), str(out), "--language", "vi"]
        + ["--columns", "question=instruction,chosen=output_1,rejected=output_2"],
    )
    assert result.exit_code == 0, result.output
    card = json.loads((out / "prefkit_provenance.json").read_text(encoding="utf-8"))
    assert card["format"] == "vi_alpaca_preference (columns question=instruction, chosen=output_1, rejected=output_2)"
    config = tmp_path / "dedup.yaml"
    config.write_text("columns:\n  question: instruction\n  chosen: output_1\n  rejected: output_2\n")
    kept = tmp_path / "kept.jsonl"
    result = runner.invoke(app, ["data", "dedup", str(path), str(kept), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert json.loads(kept.read_text(encoding="utf-8").splitlines()[0])["question"] == "Thủ đô của Pháp là gì?"
    assert load_config(DedupConfig, None, ["columns=question=instruction"]).columns == {"question": "instruction"}


def test_a_bad_column_mapping_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "prefs.csv"
    path.write_text(PREFERENCE_CSV, encoding="utf-8")
    with pytest.raises(DataError, match=r"unknown name.*qestion"):
        validate_source(path, columns={"qestion": "instruction"})
    with pytest.raises(DataError, match=r"maps column.*outptu_1, which the file does not have"):
        read_pairs(path, columns={"question": "instruction", "a_text": "outptu_1", "b_text": "output_2"})
    with pytest.raises(ConfigError, match="expected NAME=VALUE"):
        parse_mapping("question", "--columns")


# --------------------------------------------------------------------------- an export exported again


def test_exporting_an_export_keeps_every_row_of_every_split(tmp_path: Path) -> None:
    from datasets import load_from_disk

    first, second = tmp_path / "first", tmp_path / "second"
    assert runner.invoke(app, ["data", "export", str(sample_path()), str(first)]).exit_code == 0
    result = runner.invoke(app, ["data", "export", str(first), str(second), "--trl"])
    assert result.exit_code == 0, result.output
    assert f"kept the splits of {first} (train, test)" in " ".join(result.output.split())  # rich wraps lines
    before, after = load_from_disk(str(first)), load_from_disk(str(second))
    assert before["test"].num_rows > 0
    for split in ("train", "test"):
        assert sorted(after[split]["id"]) == sorted(before[split]["id"]), split
    assert "kept as the source's splits (train, test)" in (second / "README.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- docs and configs in a clone


def test_docs_examples_and_configs_name_no_folder_outside_the_clone() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    blocks = [
        (page, block)
        for page in pages
        for block in re.findall(r"^```(?:bash|yaml)\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)
    ]
    assert len(blocks) > 50
    outside = [str(page.relative_to(REPO)) for page, block in blocks if "../shared" in block]
    assert outside == []
    absolute = []
    for config in sorted((REPO / "configs").rglob("*.yaml")):
        for n, line in enumerate(config.read_text(encoding="utf-8").splitlines(), start=1):
            value = line.split("#")[0]
            for path in re.findall(r"(?:^|[\s:\[,{])(/[\w.-]+(?:/[\w.-]+)+)", value):
                if not Path(path).exists():
                    absolute.append(f"{config.relative_to(REPO)}:{n}: {path}")
    assert absolute == []


# --------------------------------------------------------------------------- --set is blamed on --set


def test_a_bad_set_key_is_blamed_on_set_and_a_bad_file_key_on_the_file(tmp_path: Path) -> None:
    config = tmp_path / "dedup.yaml"
    config.write_text("threshold: 0.7\n")
    with pytest.raises(ConfigError) as e:
        load_config(DedupConfig, config, ["thresold=0.5"])
    assert str(e.value).startswith("--set: unknown key(s) thresold")
    with pytest.raises(ConfigError) as e:
        load_config(DedupConfig, config, ["threshold=high"])
    assert str(e.value).startswith("--set: threshold: expected a number")
    config.write_text("thresold: 0.7\n")
    with pytest.raises(ConfigError) as e:
        load_config(DedupConfig, config, ["seed=3"])
    assert str(e.value).startswith(f"{config}: unknown key(s) thresold")
