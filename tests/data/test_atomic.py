"""Write-then-rename: a failed write leaves the old output as it was and no temporary behind."""

from __future__ import annotations

import os
import stat

import pytest

from data.atomic import atomic_path


def test_file_is_replaced_only_on_success(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
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
    with pytest.raises(ValueError):
        with atomic_path(target, directory=True) as d:
            (d / "partial.txt").write_text("v2")
            raise ValueError("bad row")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]

    with atomic_path(target, directory=True) as d:
        (d / "new.txt").write_text("v2")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]
