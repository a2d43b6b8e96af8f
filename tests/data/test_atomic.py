"""Write-then-rename: a failed write leaves the old output as it was and no temporary behind."""

from __future__ import annotations

import os
import stat

import pytest

from prefkit.core.atomic import atomic_path
from prefkit.core.errors import DataError


def test_file_is_replaced_only_on_success(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]

    with atomic_path(target) as tmp:
        tmp.write_text("new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with atomic_path(tmp_path / "d", directory=True) as d:
            (d / "a").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_directory_is_swapped_whole(tmp_path):
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "keep.txt").write_text("v1")
    with pytest.raises(ValueError), atomic_path(target, directory=True) as d:
        (d / "partial.txt").write_text("v2")
        raise ValueError("bad row")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]

    with atomic_path(target, directory=True) as d:
        (d / "new.txt").write_text("v2")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


def test_files_unit_fails_before_any_rename_when_a_companion_cannot_be_written(tmp_path):
    import subprocess

    from prefkit.core.atomic import atomic_files

    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needed to make a folder read-only for root)")
    try:
        out = tmp_path / "out.jsonl"
        out.write_text("previous\n")
        with (
            pytest.raises(DataError, match=r"ro/report.json: cannot write: Operation not permitted"),
            atomic_files([out, ro / "report.json"]) as temps,
        ):
            temps[0].write_text("new\n")
    finally:
        subprocess.run(["chattr", "-i", str(ro)], check=True)
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "ro"]


def test_files_unit_replaces_main_and_companions(tmp_path):
    from prefkit.core.atomic import atomic_files

    main, report = tmp_path / "kept.jsonl", tmp_path / "kept.report.json"
    main.write_text("v1\n")
    report.write_text("r1\n")
    with atomic_files([main, report]) as (t_main, t_report):
        t_main.write_text("v2\n")
        t_report.write_text("r2\n")
    assert (main.read_text(), report.read_text()) == ("v2\n", "r2\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.jsonl", "kept.report.json"]


def test_a_file_that_only_looks_like_a_commit_record_is_left_alone(tmp_path):
    """The commit records of killed runs are settled by the next write beside them; a file that
    merely has such a name (a dead process's pid, a random tag) but is not a record stays."""
    import subprocess
    import sys

    from prefkit.core.atomic import atomic_files

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lookalike = tmp_path / f".kept.jsonl.{dead.pid}.0123abcd.commit"
    lookalike.write_text("my notes\n")
    part = tmp_path / f".kept.jsonl.{dead.pid}.0123abcd.commit.part"
    part.write_text("[1, 2]\n")
    with atomic_files([tmp_path / "kept.jsonl", tmp_path / "kept.report.json"]) as temps:
        for t in temps:
            t.write_text("x\n")
    assert lookalike.read_text() == "my notes\n" and part.read_text() == "[1, 2]\n"
