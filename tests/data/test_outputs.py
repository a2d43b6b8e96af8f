"""Nothing lost, every bad input one clear line (issues 13 and 22), through the real `prefkit` command.

`prefkit.cli.main` is run in this process with the real argv (the path the installed command
takes: typer app, then a `PrefkitError` becomes one stderr line and exit code 2), so each case
checks the exit code, that stderr is exactly one line naming the file, and what is on disk after.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "samples" / "vi_preference_sample.jsonl"
BAD = '{"question": "q", "chosen": "", "rejected": "r"}\n'
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
    assert code == 0 and "skipped 4 invalid row(s)" in err and (tmp_path / "ds" / "rejected.jsonl").exists()
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


# === issue 22: --overwrite replaces only what the previous run wrote; all or nothing ==========

# --- what --overwrite may replace -----------------------------------------------------------------


def test_a_note_put_in_an_export_folder_refuses_the_overwrite(prefkit, sample: Path, tmp_path: Path) -> None:
    ok(prefkit("data", "export", "in.jsonl", "ds"))
    (tmp_path / "ds" / "notes.txt").write_text("what I found in this export", encoding="utf-8")
    (tmp_path / "ds" / "train" / "mine").mkdir()
    before = snapshot(tmp_path)
    refused(
        prefkit("data", "export", "in.jsonl", "ds", "--overwrite", "--test-size", "0.5"),
        "ds: OUT holds notes.txt: not written by prefkit data export; --overwrite replaces only what a previous run",
    )
    assert snapshot(tmp_path) == before  # the note and the dataset, untouched
    (tmp_path / "ds" / "notes.txt").unlink()
    refused(
        prefkit("data", "export", "in.jsonl", "ds", "--overwrite"),
        "ds: OUT holds train/mine: a folder prefkit data export did not write",
    )
    (tmp_path / "ds" / "train" / "mine").rmdir()
    ok(prefkit("data", "export", "in.jsonl", "ds", "--overwrite", "--test-size", "0.5"))  # only ours: replaced


def test_a_store_moved_into_an_old_export_folder_is_never_replaced(prefkit, sample: Path, tmp_path: Path) -> None:
    ok(prefkit("data", "export", "in.jsonl", "ds"))
    ok(prefkit("annotate", "import", "in.jsonl", "--project", "p", "--db", "ds/annotations.db"))
    before = snapshot(tmp_path / "ds")
    # the data room's export does not read the store: it is a file it did not write
    line = refused(prefkit("data", "export", "in.jsonl", "ds", "--overwrite"), "ds: OUT holds annotations.db")
    assert "not written by prefkit data export" in line
    # the annotate room's export reads it: an input, never replaced, whatever the marker says
    refused(
        prefkit("annotate", "export", "ds", "--project", "p", "--db", "ds/annotations.db", "--overwrite"),
        "ds: OUT contains the store ds/annotations.db",
    )
    assert snapshot(tmp_path / "ds") == before


def test_the_dedup_report_an_export_reads_is_an_input(prefkit, sample: Path, tmp_path: Path) -> None:
    ok(prefkit("data", "export", "in.jsonl", "ds"))
    ok(prefkit("data", "dedup", "in.jsonl", "ds/kept.jsonl", "--report", "ds/kept.report.json"))
    before = snapshot(tmp_path / "ds")
    refused(
        prefkit("data", "export", "in.jsonl", "ds", "--overwrite", "--dedup-report", "ds/kept.report.json"),
        "ds: OUT contains the input ds/kept.report.json",
    )
    # read from beside SOURCE (the report that wrote it): an input just the same
    refused(prefkit("data", "export", "ds/kept.jsonl", "ds", "--overwrite"), "OUT contains the input")
    assert snapshot(tmp_path / "ds") == before


def test_a_file_output_edited_since_is_not_replaced(prefkit, sample: Path, tmp_path: Path) -> None:
    ok(prefkit("data", "dedup", "in.jsonl", "kept.jsonl"))
    kept = tmp_path / "kept.jsonl"
    text = kept.read_text(encoding="utf-8")
    edited = text.replace("a", "b", 1)  # hand-corrected, the same size: the hash tells
    assert len(edited.encode()) == len(text.encode()) and edited != text
    kept.write_text(edited, encoding="utf-8")
    refused(
        prefkit("data", "dedup", "in.jsonl", "kept.jsonl", "--overwrite"),
        "kept.jsonl: OUT: changed after prefkit data dedup wrote it (its size or SHA-256 differs from the marker)",
    )
    assert kept.read_text(encoding="utf-8") == edited
    # the same inside a folder: a listed file changed in place
    ok(prefkit("data", "export", "in.jsonl", "ds"))
    card = tmp_path / "ds" / "README.md"
    card.write_text(card.read_text(encoding="utf-8") + "\nMy notes on this dataset.\n", encoding="utf-8")
    refused(prefkit("data", "export", "in.jsonl", "ds", "--overwrite"), "ds: OUT holds README.md: changed after")
    assert card.read_text(encoding="utf-8").endswith("My notes on this dataset.\n")


def test_what_the_marker_is_and_is_not(prefkit, sample: Path, tmp_path: Path) -> None:
    """A marker that names only the command (an earlier prefkit's, or one written by hand) lists
    no files: --overwrite refuses. One that lists the true sizes and hashes is taken at its word."""
    from prefkit.core.outputs import MARKER, file_record

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.txt").write_text("mine", encoding="utf-8")
    (mine / MARKER).write_text(json.dumps({"command": "data export"}), encoding="utf-8")
    refused(
        prefkit("data", "export", "in.jsonl", "mine", "--overwrite"),
        "mine: OUT: its marker lists no files (written by an earlier prefkit",
    )
    assert (mine / "data.txt").read_text(encoding="utf-8") == "mine"
    record = {"command": "data export", "format": 2, "files": {"data.txt": file_record(mine / "data.txt")}, "dirs": []}
    (mine / MARKER).write_text(json.dumps(record), encoding="utf-8")
    ok(prefkit("data", "export", "in.jsonl", "mine", "--overwrite"))  # declared replaceable: replaced
    assert not (mine / "data.txt").exists() and (mine / "dataset_dict.json").exists()


def test_dedup_drops_only_its_own_previous_rejected_file(prefkit, sample: Path, tmp_path: Path) -> None:
    with sample.open("a", encoding="utf-8") as f:
        f.write(BAD)
    ok(prefkit("data", "dedup", "in.jsonl", "kept.jsonl", "--skip-invalid"))
    rejected = tmp_path / "kept.rejected.jsonl"
    assert rejected.exists()
    sample.write_text(SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")  # fixed: no bad row now
    ok(prefkit("data", "dedup", "in.jsonl", "kept.jsonl", "--overwrite"))
    assert not rejected.exists()  # a previous run's companion never sits beside the new output
    assert not (tmp_path / ".kept.rejected.jsonl.prefkit-output.json").exists()
    # ...unless it is no longer what prefkit wrote: then it is the user's, and stays
    with sample.open("a", encoding="utf-8") as f:
        f.write(BAD)
    ok(prefkit("data", "dedup", "in.jsonl", "kept.jsonl", "--skip-invalid", "--overwrite"))
    rejected.write_text(rejected.read_text(encoding="utf-8") + '{"note": "mine"}\n', encoding="utf-8")
    sample.write_text(SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    ok(prefkit("data", "dedup", "in.jsonl", "kept.jsonl", "--overwrite"))
    assert rejected.read_text(encoding="utf-8").endswith('{"note": "mine"}\n')


def test_an_output_changed_while_the_command_runs_is_not_replaced(tmp_path: Path) -> None:
    from prefkit.core.atomic import atomic_files, atomic_path
    from prefkit.core.errors import DataError
    from prefkit.core.outputs import check_output, mark_output

    out = tmp_path / "ds"
    with atomic_path(out, directory=True) as d:
        (d / "data.txt").write_text("v1")
        mark_output(d, "data export", folder=True)
    check_output(out, "data export", overwrite=True, folder=True)  # judged: ours alone
    (out / "notes.txt").write_text("written while the export ran")
    with (
        pytest.raises(DataError, match=r"ds: changed while this command ran \(notes.txt appeared or changed\)"),
        atomic_path(out, directory=True) as d,
    ):
        (d / "data.txt").write_text("v2")
    assert (out / "notes.txt").exists() and (out / "data.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # and no temp left behind

    kept = tmp_path / "kept.jsonl"
    check_output(kept, "data dedup")  # judged: missing
    kept.write_text("someone else's file\n")
    with (
        pytest.raises(DataError, match=r"kept.jsonl: changed while this command ran \(it appeared\)"),
        atomic_files([kept], marker="data dedup") as (tmp,),
    ):
        tmp.write_text("rows\n")
    assert kept.read_text() == "someone else's file\n"


# --- nothing valid read: exit 2, nothing created ---------------------------------------------------


def test_nothing_valid_read_is_exit_2_and_nothing_is_created(prefkit, tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text(BAD * 3, encoding="utf-8")
    before = snapshot(tmp_path)
    for args in (
        ["data", "dedup", "bad.jsonl", "kept.jsonl", "--skip-invalid"],
        ["data", "export", "bad.jsonl", "ds", "--skip-invalid"],
    ):
        refused(prefkit(*args), "bad.jsonl: no valid rows: all 3 were bad, so nothing was written", "line 1")
    args = ["annotate", "import", "bad.jsonl", "--project", "p", "--overlap", "3", "--skip-invalid", "--db", "s.db"]
    refused(prefkit(*args), "bad.jsonl: no valid rows: all 3 were bad")
    assert snapshot(tmp_path) == before  # no output, report, rejected file, marker, or store file
    assert sorted(os.listdir(tmp_path)) == ["bad.jsonl"]
    # so the corrected file is then imported with the settings it asks for
    shutil.copy(SAMPLE, tmp_path / "bad.jsonl")
    ok(prefkit("annotate", "import", "bad.jsonl", "--project", "p", "--overlap", "3", "--db", "s.db"))
    from prefkit.annotate.store import Store

    with Store.open(str(tmp_path / "s.db")) as store:
        assert store.get_project("p").overlap == 3


def test_an_import_the_store_refuses_leaves_no_rejected_file(prefkit, sample: Path, tmp_path: Path) -> None:
    ok(prefkit("annotate", "import", "in.jsonl", "--project", "p", "--overlap", "2", "--db", "s.db"))
    with sample.open("a", encoding="utf-8") as f:
        f.write(BAD)
    line = refused(
        prefkit("annotate", "import", "in.jsonl", "--project", "p", "--overlap", "3", "--skip-invalid", "--db", "s.db")
    )
    assert "overlap" in line
    assert not list(tmp_path.glob("*rejected*")) and not list(tmp_path.glob(".*rejected*"))
    ok(prefkit("annotate", "import", "in.jsonl", "--project", "p", "--skip-invalid", "--db", "s.db"))
    assert (tmp_path / "p.rejected.jsonl").read_text(encoding="utf-8").count("\n") == 1


# --- every OS error while writing: one line naming the path, exit 2 -------------------------------


def test_a_dangling_symlink_output_is_one_line(prefkit, sample: Path, tmp_path: Path) -> None:
    (tmp_path / "kept.jsonl").symlink_to(tmp_path / "gone" / "kept.jsonl")
    (tmp_path / "ds").symlink_to(tmp_path / "elsewhere")
    refused(
        prefkit("data", "dedup", "in.jsonl", "kept.jsonl"),
        "kept.jsonl: OUT is a symbolic link (to ",
        "which does not exist); prefkit writes a real file in its place and never replaces a link",
    )
    (tmp_path / "elsewhere").mkdir()
    refused(prefkit("data", "export", "in.jsonl", "ds", "--overwrite"), "ds: OUT is a symbolic link")
    assert (tmp_path / "kept.jsonl").is_symlink() and (tmp_path / "ds").is_symlink()


def _limited(max_bytes: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


@pytest.mark.parametrize(
    "args",
    [
        ["data", "dedup", "in.jsonl", "kept.jsonl"],
        ["data", "dedup", "in.jsonl", "kept.parquet"],
        ["data", "export", "in.jsonl", "ds"],
    ],
)
def test_a_file_too_large_is_one_line_naming_the_output(sample: Path, tmp_path: Path, args: list[str]) -> None:
    """EFBIG (the file-size limit, as `ulimit -f` sets it): one line naming the output, exit 2,
    and no temporary file left behind."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "prefkit.cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=_limited(4096),  # the sample is 30 kB: its output cannot fit
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {args[3]}") and "File too large" in lines[0], lines[0]
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]


def test_os_errors_reaching_the_command_are_one_line(prefkit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last line of defence (prefkit.cli.main): an OS error with a path is exit 2, one line."""
    import errno

    import prefkit.data.stats as stats

    def broken(*_: object, **__: object) -> None:
        raise OSError(errno.EIO, "Input/output error", str(tmp_path / "in.jsonl"))

    monkeypatch.setattr(stats, "compute_stats", broken)
    (tmp_path / "in.jsonl").write_text("{}\n")
    refused(prefkit("data", "stats", "in.jsonl"), "in.jsonl: cannot write or read: Input/output error")


# --- a broken first record -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "why"),
    [
        ('{"question": "q", "chosen": "x"}\n', "field 'rejected': the record has 'chosen' but no 'rejected'"),
        ('{"foo": 1}\n', "unknown format: columns ['foo']"),
        ('{"question": "q", "chosen": \n', "malformed JSON"),
    ],
)
def test_a_broken_first_record_is_counted_by_stats_and_named_by_line(
    prefkit, tmp_path: Path, first: str, why: str
) -> None:
    (tmp_path / "in.jsonl").write_text(first + SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    n = len(SAMPLE.read_text(encoding="utf-8").splitlines())
    figures = json.loads(ok(prefkit("data", "stats", "in.jsonl", "--json")))
    assert figures["format"] == "vi_alpaca_preference" and figures["rows"] == n and figures["bad_rows"] == 1
    line = refused(prefkit("data", "export", "in.jsonl", "ds"), "in.jsonl, line 1", why)
    assert "first record" not in line
    code, _, err = prefkit("data", "validate", "in.jsonl")
    assert code == 2 and "1 bad record(s); first: in.jsonl, line 1" in err and why in err
    assert "first record" not in err
    ok(prefkit("data", "export", "in.jsonl", "ds", "--skip-invalid"))
    rejected = (tmp_path / "ds" / "rejected.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rejected) == 1 and json.loads(rejected[0])["line"] == 1


def test_train_score_never_writes_over_its_input_or_another_file(prefkit, sample: Path, tmp_path: Path) -> None:
    """The guard runs before the reward model loads (here there is none)."""
    before = snapshot(tmp_path)
    refused(prefkit("train", "score", "--model", "rm", "in.jsonl", "in.jsonl"), "in.jsonl: OUT is the input in.jsonl")
    (tmp_path / "scores.jsonl").write_text("my scores\n", encoding="utf-8")
    refused(
        prefkit("train", "score", "--model", "rm", "in.jsonl", "scores.jsonl", "--overwrite"),
        "scores.jsonl: OUT was not written by prefkit train score (no prefkit marker)",
    )
    assert snapshot(tmp_path) == {**before, "scores.jsonl": b"my scores\n"}
