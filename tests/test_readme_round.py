"""The docs' "A whole round on the CPU" runs as written (issue 13), so the docs can never drift
from the product: the fenced commands under that heading are extracted from the page that holds
them (README.md, the front page, or a page under docs/) and run one by one with bash in a fresh
folder, with `.venv` active as the docs ask. The browser step (`prefkit annotate serve`) is
replaced, as the docs say, by a scripted judge that claims and submits every pair through the
store, as the app does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEADING = "A whole round on the CPU"

JUDGE = """
import random
from prefkit.annotate.store import Store
from prefkit.data.schema import Judgement

rng = random.Random(0)
store = Store.open("runs/annotate.db")
n = 0
while (a := store.claim("r1", "alice")) is not None:
    point = rng.choice([-3, -2, -1, 1, 2, 3])
    store.submit(a.id, "alice", Judgement.from_seven_point(a.pair.pair_id, "alice", point, a.shown_order))
    n += 1
store.close()
print(n, "judgements")
"""


def doc_pages() -> list[Path]:
    """README.md first, then every page of the docs site."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def round_block() -> tuple[Path, str]:
    """The first ```bash block inside a section headed HEADING (before the section's next heading)."""
    for page in doc_pages():
        text = page.read_text(encoding="utf-8")
        for heading in re.finditer(rf"^#+ {re.escape(HEADING)}\s*$", text, re.M):
            section = re.split(r"^#+ ", text[heading.end() :], maxsplit=1, flags=re.M)[0]
            block = re.search(r"```bash\n(.*?)```", section, re.S)
            if block is not None:
                return page, block.group(1)
    raise AssertionError(f"no ```bash block in a section headed {HEADING!r} in README.md or docs/")


def readme_round_commands() -> list[str]:
    _, block = round_block()
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_round_block_is_found_and_has_every_room() -> None:
    commands = readme_round_commands()
    for needle in (
        "build_tiny_model",
        "prefkit data dedup",
        "prefkit generate",
        "prefkit annotate import",
        "prefkit annotate serve",
        "prefkit annotate export",
        "prefkit train chain",
    ):
        assert any(needle in c for c in commands), needle


@pytest.mark.slow
def test_readme_cpu_round_runs_as_written(tmp_path: Path) -> None:
    # A fresh folder with what a checkout has at its root for these commands, and `.venv`.
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    shutil.copytree(REPO / "data" / "samples", tmp_path / "data" / "samples")
    venv = Path(sys.prefix)
    (tmp_path / ".venv").symlink_to(venv, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFKIT_DB", "PYTHONHOME")}
    # what `source .venv/bin/activate` does, plus this checkout's code first on the import path
    env.update(
        PATH=f"{tmp_path / '.venv' / 'bin'}:{env.get('PATH', '')}",
        VIRTUAL_ENV=str(tmp_path / ".venv"),
        PYTHONPATH=str(REPO),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
    )

    for command in readme_round_commands():
        if "prefkit annotate serve" in command:
            command = f"python - <<'EOF'\n{JUDGE}\nEOF"
        proc = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, f"docs command failed: {command}\n{proc.stdout}\n{proc.stderr}"
        if "alice" in command and "users add" in command:
            assert proc.stdout.strip()  # the token, printed once
        if "python - <<" in command:
            assert int(proc.stdout.split()[0]) > 0  # pairs were judged

    kept = (tmp_path / "runs" / "prompts.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(kept) == 61  # the docs' "66 -> 61 prompts"
    summary = json.loads((tmp_path / "runs" / "chain-tiny" / "summary.json").read_text(encoding="utf-8"))
    assert set(summary["stages"]) == {"sft", "reward", "dpo"}  # the chain ran every stage
    from datasets import load_from_disk

    assert load_from_disk(str(tmp_path / "runs" / "export"))["train"].num_rows > 0
