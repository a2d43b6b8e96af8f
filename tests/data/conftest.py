"""Shared fixtures for the data room's tests: small files in every format, the shared data."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
PREFKIT = REPO / ".venv" / "bin" / "prefkit"

VI_ROWS = [
    {
        "question": "Thủ đô của Việt Nam là gì?",
        "chosen": "Hà Nội là thủ đô của Việt Nam.",
        "rejected": "Huế.",
        "strength": "significantly_better",
    },
    {"question": "2 + 2 bằng mấy?", "chosen": "2 + 2 = 4.", "rejected": "5.", "strength": "better"},
    {"question": "Kể tên một loại trái cây.", "chosen": "Xoài.", "rejected": "Cà rốt.", "strength": "slightly_better"},
    {"question": "Chào bạn", "chosen": "Chào bạn! Mình giúp gì được?", "rejected": "Ừ.", "strength": None},
]


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    """Write rows (dicts, or raw strings written as-is) to a JSONL file under tmp_path."""

    def write(rows: Iterable[Any], name: str = "rows.jsonl") -> Path:
        path = tmp_path / name
        with path.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
        return path

    return write


@pytest.fixture
def vi_rows() -> list[dict[str, Any]]:
    return [dict(r) for r in VI_ROWS]


@pytest.fixture
def vi_file(write_jsonl: Callable[..., Path]) -> Path:
    return write_jsonl(VI_ROWS, "vi.jsonl")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not present at {SHARED}")
    return SHARED


@pytest.fixture
def prefkit_bin() -> Path:
    if not PREFKIT.exists():
        pytest.skip(f"the prefkit command is not installed at {PREFKIT}")
    return PREFKIT


@pytest.fixture
def prefkit_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Callable:
    """Run `prefkit ARGS` in this process, in tmp_path, through `prefkit.cli.main` with the real
    argv (the path the installed command takes: a `PrefkitError` becomes one stderr line and exit
    code 2). Returns (exit code, stdout, stderr)."""
    import sys

    from prefkit.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args: Any) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["prefkit", *map(str, args)])
        with pytest.raises(SystemExit) as exited:
            main()
        out, err = capsys.readouterr()
        return exited.value.code or 0, out, err

    return run
