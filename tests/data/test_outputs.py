"""Nothing lost, every bad input one clear line (issue 13), through the real `prefkit` command.

`prefkit.cli.main` is run in this process with the real argv (the path the installed command
takes: typer app, then a `PrefkitError` becomes one stderr line and exit code 2), so each case
checks the exit code, that stderr is exactly one line naming the file, and what is on disk after.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "samples" / "vi_preference_sample.jsonl"
HH_TEST = "hh_rlhf_harmless_test.jsonl.gz"


@pytest.fixture
def prefkit(prefkit_main: Callable) -> Callable:
    return prefkit_main


def refused(result: tuple[int, str, str], *needles: str) -> str:
    code, out, err = result
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, out, err)
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, (out, err)
    return out


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return Path(shutil.copy(SAMPLE, tmp_path / "in.jsonl"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- data loss: outputs never destroy inputs, the store, or what another command wrote ---------


@pytest.mark.parametrize(
    "args",
    [
        ["data", "dedup", "in.jsonl", "in.jsonl"],
        ["data", "dedup", "in.jsonl", "x.jsonl", "--report", "in.jsonl"],
        ["data", "export", "in.jsonl", "in.jsonl"],
        ["data", "export", "in.jsonl", "."],
        ["data", "dedup", "in.jsonl", "x.jsonl", "--overwrite", "--report", "in.jsonl"],
        ["data", "export", "in.jsonl", "in.jsonl", "--overwrite"],
    ],
)
def test_an_output_that_is_or_holds_the_input_is_refused(prefkit, sample: Path, tmp_path: Path, args) -> None:
    before = snapshot(tmp_path)
    line = refused(prefkit(*args), "the input in.jsonl")
    assert "is the input" in line or "contains the input" in line
    assert snapshot(tmp_path) == before  # nothing written, the input intact


def test_export_into_the_folder_holding_the_input_is_refused(prefkit, sample: Path, tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    shutil.move(sample, tmp_path / "proj" / "in.jsonl")
    before = snapshot(tmp_path)
    refused(prefkit("data", "export", "proj/in.jsonl", "proj", "--overwrite"), "proj: OUT contains the input")
    refused(prefkit("data", "dedup", "proj/in.jsonl", "proj"), "proj: unknown output type")
    assert snapshot(tmp_path) == before


def test_annotate_export_never_replaces_the_store(prefkit, sample: Path, tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    ok(prefkit("annotate", "import", "in.jsonl", "--project", "p", "--db", "work/annotations.db"))
    before = snapshot(tmp_path / "work")
    for extra in ([], ["--overwrite"]):
        refused(
            prefkit("annotate", "export", "work", "--project", "p", "--db", "work/annotations.db", *extra),
            "work: OUT contains the store work/annotations.db",
        )
    refused(
        prefkit("annotate", "export", "work/annotations.db", "--project", "p", "--db", "work/annotations.db"),
        "is the store",
    )
    assert snapshot(tmp_path / "work") == before


def test_existing_output_needs_overwrite_and_the_same_command(prefkit, sample: Path, tmp_path: Path) -> None:
    ok(prefkit("data", "dedup", "in.jsonl", "kept.jsonl"))
    first = (tmp_path / "kept.jsonl").read_bytes()
    refused(
        prefkit("data", "dedup", "in.jsonl", "kept.jsonl", "--threshold", "0.5"),
        "kept.jsonl: OUT already exists (written by prefkit data dedup); pass --overwrite",
    )
    assert (tmp_path / "kept.jsonl").read_bytes() == first
    ok(prefkit("data", "dedup", "in.jsonl", "kept.jsonl", "--threshold", "0.5", "--overwrite"))
    assert len((tmp_path / "kept.jsonl").read_bytes()) < len(first)  # replaced by the stricter run
    report = json.loads((tmp_path / "kept.dedup-report.json").read_text(encoding="utf-8"))
    assert report["threshold"] == 0.5

    # a file no prefkit command wrote, and another command's output: never replaced
    (tmp_path / "mine.jsonl").write_text("my notes\n", encoding="utf-8")
    refused(
        prefkit("data", "dedup", "in.jsonl", "mine.jsonl", "--overwrite"),
        "mine.jsonl: OUT was not written by prefkit data dedup (no prefkit marker)",
    )
    assert (tmp_path / "mine.jsonl").read_text(encoding="utf-8") == "my notes\n"
    ok(prefkit("data", "export", "in.jsonl", "ds"))
    refused(prefkit("data", "export", "in.jsonl", "ds"), "ds: OUT already exists (written by prefkit data export)")
    refused(
        prefkit("annotate", "export", "ds", "--project", "p", "--db", "s.db", "--overwrite"),
        "ds: OUT was not written by prefkit annotate export (written by prefkit data export)",
    )
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me", encoding="utf-8")
    refused(prefkit("data", "export", "in.jsonl", "notes", "--overwrite"), "no prefkit marker")
    assert (tmp_path / "notes" / "todo.txt").read_text(encoding="utf-8") == "keep me"
    ok(prefkit("data", "export", "in.jsonl", "ds", "--overwrite", "--test-size", "0.5"))
    from datasets import load_from_disk

    assert load_from_disk(str(tmp_path / "ds"))["test"].num_rows > 20
    # an empty folder or file is not an output to protect
    (tmp_path / "empty").mkdir()
    ok(prefkit("data", "export", "in.jsonl", "empty"))


def test_dedup_with_an_unwritable_report_writes_nothing(prefkit, sample: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needed to make a folder read-only for root)")
    try:
        refused(
            prefkit("data", "dedup", "in.jsonl", "kept.jsonl", "--report", "ro/r.json"),
            "ro/r.json: cannot write into ro",
        )
        assert not (tmp_path / "kept.jsonl").exists()
        refused(prefkit("data", "dedup", "in.jsonl", "ro/kept.jsonl"), "ro/kept.jsonl: cannot write into ro")
        refused(prefkit("data", "export", "in.jsonl", "ro/ds"), "ro/ds: cannot write into ro")
        refused(prefkit("annotate", "export", "ro/ds", "--project", "p", "--db", "s.db"), "cannot write into ro")
        refused(
            prefkit("generate", "in.jsonl", "ro/gen", "--model", "m", "--temperatures", "0.5,1"),
            "ro/gen: cannot write into ro",
        )
    finally:
        subprocess.run(["chattr", "-i", str(ro)], check=True)
    assert list(ro.iterdir()) == []


def test_an_output_path_that_is_a_folder_is_one_line(prefkit, sample: Path, tmp_path: Path) -> None:
    (tmp_path / "existing_dir" / "out.jsonl").mkdir(parents=True)
    refused(prefkit("data", "dedup", "in.jsonl", "existing_dir/out.jsonl"), "existing_dir/out.jsonl: OUT is a folder")
    refused(prefkit("data", "export", "in.jsonl", "in.jsonl/x"), "lies inside the input in.jsonl")
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    refused(prefkit("data", "export", "in.jsonl", "file.txt"), "file.txt: OUT is a file; the output must be a folder")
    refused(prefkit("data", "dedup", "in.jsonl", "file.txt/kept.jsonl"), "is not a folder")


# --- real files with a few bad rows: --skip-invalid --------------------------------------------


def test_skip_invalid_on_the_real_hh_rlhf_test_file(prefkit, shared_data: Path, tmp_path: Path) -> None:
    hh = shared_data / HH_TEST
    # strict by default: the first bad row stops each command, nothing written
    for args in (
        ["data", "dedup", hh, "kept.jsonl"],
        ["data", "export", hh, "ds"],
        ["annotate", "import", hh, "--project", "hh", "--db", "s.db"],
    ):
        refused(prefkit(*args), f"{hh}, line 87, field 'chosen': empty answer")
    assert not (tmp_path / "kept.jsonl").exists() and not (tmp_path / "ds").exists()

    code, out, err = prefkit("data", "validate", hh)
    assert code == 2 and "pass --skip-invalid" in " ".join(out.split())

    code, out, err = prefkit("data", "dedup", hh, "kept.jsonl", "--skip-invalid")
    assert code == 0, err
    assert err.startswith("skipped 4 invalid row(s) (all with reasons in kept.rejected.jsonl): ")
    assert f"{hh}, line 87, field 'chosen': empty answer" in err and "1 more" in err
    rejected = [json.loads(x) for x in (tmp_path / "kept.rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rejected] == [87, 517, 926, rejected[3]["line"]] and len(rejected) == 4
    assert all(r["reason"] == "empty answer" and r["field"] in ("chosen", "rejected") for r in rejected)
    with gzip.open(hh, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert rejected[0]["record"] == json.loads(lines[86])  # the bad row itself, as read
    report = json.loads((tmp_path / "kept.dedup-report.json").read_text(encoding="utf-8"))
    assert report["rows_in"] == 2308 and report["invalid_skipped"] == 4
    kept = (tmp_path / "kept.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(kept) == report["rows_out"] and json.loads(kept[0]) == json.loads(lines[0])

    code, out, err = prefkit("data", "export", hh, "ds", "--skip-invalid")
    assert code == 0 and "skipped 4 invalid row(s)" in err and (tmp_path / "ds.rejected.jsonl").exists()
    from datasets import load_from_disk

    ds = load_from_disk(str(tmp_path / "ds"))
    assert ds["train"].num_rows + ds["test"].num_rows == 2308

    code, out, err = prefkit("annotate", "import", hh, "--project", "hh", "--db", "s.db", "--skip-invalid")
    assert code == 0 and "added 2308 pairs" in out and "skipped 4 invalid row(s)" in err
    assert len((tmp_path / "hh.rejected.jsonl").read_text(encoding="utf-8").splitlines()) == 4
    # the same import again replaces its own rejected log; a file it did not write is refused
    assert prefkit("annotate", "import", hh, "--project", "hh", "--db", "s.db", "--skip-invalid")[0] == 0
    (tmp_path / "notes.jsonl").write_text('{"mine": 1}\n', encoding="utf-8")
    refused(
        prefkit(
            "annotate", "import", hh, "--project", "hh", "--db", "s.db", "--skip-invalid", "--rejected", "notes.jsonl"
        ),
        "notes.jsonl: the rejected file already exists and was not written by prefkit annotate import",
    )
    assert (tmp_path / "notes.jsonl").read_text(encoding="utf-8") == '{"mine": 1}\n'


def test_skip_invalid_keeps_malformed_and_non_utf8_lines_out(prefkit, sample: Path, tmp_path: Path) -> None:
    good = sample.read_bytes().splitlines(keepends=True)
    (tmp_path / "mixed.jsonl").write_bytes(
        good[0] + b'{"question": "caf\xe9", "chosen": "a", "rejected": "b"}\n' + good[1] + b"{not json\n" + good[2]
    )
    refused(
        prefkit("data", "dedup", "mixed.jsonl", "kept.jsonl"),
        "mixed.jsonl, line 2: not UTF-8 text: invalid continuation byte",
    )
    code, _out, err = prefkit("data", "dedup", "mixed.jsonl", "kept.jsonl", "--skip-invalid")
    assert code == 0 and err.startswith("skipped 2 invalid row(s)")
    assert len((tmp_path / "kept.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    reasons = [json.loads(x) for x in (tmp_path / "kept.rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["reason"].split(":")[0]) for r in reasons] == [(2, "not UTF-8 text"), (4, "malformed JSON")]
    assert reasons[1]["record"] == "{not json"


# --- tracebacks that became one line -----------------------------------------------------------


@pytest.fixture
def corrupt_parquet(tmp_path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(x) for x in SAMPLE.read_text(encoding="utf-8").splitlines()]
    rows = [{k: r[k] for k in ("question", "chosen", "rejected")} for r in rows] * 5
    path = tmp_path / "corrupt.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, compression="none")
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 400] = b"\xff" * 400  # inside the data pages, footer intact
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["data", "validate", "corrupt.parquet"],
        ["data", "stats", "corrupt.parquet"],
        ["data", "dedup", "corrupt.parquet", "kept.jsonl", "--skip-invalid"],
        ["data", "export", "corrupt.parquet", "ds"],
        ["annotate", "import", "corrupt.parquet", "--project", "p", "--db", "s.db"],
        ["generate", "corrupt.parquet", "gen", "--model", "m", "--temperatures", "0.5,1"],
    ],
)
def test_parquet_with_corrupt_data_pages_is_one_line(prefkit, corrupt_parquet: Path, tmp_path: Path, args) -> None:
    refused(prefkit(*args), "corrupt.parquet, row ", "corrupt Parquet data")
    assert not any((tmp_path / name).exists() for name in ("kept.jsonl", "ds", "gen"))


def test_more_tracebacks_are_one_line(prefkit, sample: Path, tmp_path: Path) -> None:
    (tmp_path / "fake.parquet").write_text("not parquet at all\n", encoding="utf-8")
    refused(prefkit("data", "validate", "fake.parquet"), "fake.parquet: not a readable Parquet file")
    (tmp_path / "deep.jsonl").write_text("[" * 200_000 + "]" * 200_000 + "\n", encoding="utf-8")
    refused(prefkit("data", "validate", "deep.jsonl"), "deep.jsonl, line 1: JSON nested too deep")
    refused(prefkit("data", "dedup", "deep.jsonl", "kept.jsonl"), "deep.jsonl, line 1: JSON nested too deep")
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000 + "\n", encoding="utf-8")
    refused(prefkit("data", "validate", "deep.json"), "deep.json: JSON nested too deep")
    (tmp_path / "guide.md").write_bytes("# Hướng dẫn\nđúng\n".encode() + b"\xff\xfe sai\n")
    refused(
        prefkit("annotate", "import", "in.jsonl", "--project", "p", "--db", "s.db", "--guidelines", "guide.md"),
        "guide.md, line 3, field 'guidelines': not UTF-8 text",
    )
    assert not (tmp_path / "s.db").exists()  # refused before the store was opened
    (tmp_path / "latin.jsonl").write_bytes(
        sample.read_bytes().splitlines(keepends=True)[0] * 3
        + '{"question": "é", "chosen": "a", "rejected": "b"}\n'.encode("latin-1")
    )
    refused(prefkit("data", "validate", "latin.jsonl"), "latin.jsonl, line 4: not UTF-8 text")
    (tmp_path / "latin.json").write_bytes(b'[\n{"question": "a"},\n{"question": "\xe9"}\n]\n')
    refused(prefkit("data", "validate", "latin.json"), "latin.json, line 3: not UTF-8 text")


@pytest.mark.parametrize(
    "first",
    [
        {"question": "Thủ đô?", "chosen": "Hà Nội."},
        {"prompt": "Thủ đô?", "rejected": "Huế."},
    ],
)
def test_a_broken_first_preference_row_is_not_read_as_prompts(prefkit, sample: Path, tmp_path: Path, first) -> None:
    path = tmp_path / "half.jsonl"
    path.write_text(json.dumps(first, ensure_ascii=False) + "\n" + sample.read_text(encoding="utf-8"), encoding="utf-8")
    line = refused(prefkit("data", "validate", "half.jsonl"), "half.jsonl", "looks like a broken preference row")
    assert "field 'rejected'" in line or "field 'chosen'" in line


def test_a_plain_prompts_file_still_reads_as_prompts(prefkit, tmp_path: Path) -> None:
    (tmp_path / "prompts.jsonl").write_text(
        '{"question": "Thủ đô?"}\n{"question": "Hai cộng hai?"}\n', encoding="utf-8"
    )
    assert "prompts" in ok(prefkit("data", "validate", "prompts.jsonl"))


def test_best_of_k_never_writes_over_its_prompts(prefkit, tmp_path: Path) -> None:
    (tmp_path / "bok").mkdir()
    prompts = tmp_path / "bok" / "samples.jsonl"
    prompts.write_text('{"question": "Xin chào"}\n', encoding="utf-8")
    (tmp_path / "rm").mkdir()  # a reward section that passes its own check, so the output check is reached
    refused(
        prefkit(
            "train",
            "best-of-k",
            "--config",
            REPO / "configs" / "train" / "best-of-k-tiny.yaml",
            "--set",
            "output_dir=bok",
            "--set",
            "data.source=bok/samples.jsonl",
            "--set",
            "reward.model=rm",
        ),
        "bok: output_dir contains the input bok/samples.jsonl",
    )
    assert prompts.read_text(encoding="utf-8") == '{"question": "Xin chào"}\n'
