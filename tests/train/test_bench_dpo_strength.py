"""bench/dpo_strength.py: its graded marker pairs tell the answers apart by content only (same token
count), and the script runs end to end in a tiny setting and writes every mode's figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_graded_rows_differ_by_content_only(tiny_model_path):
    from transformers import AutoTokenizer

    sys.path.insert(0, str(REPO / "bench"))
    try:
        import dpo_strength
    finally:
        sys.path.pop(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    rows = dpo_strength.graded_rows(24, tok, seed=3)
    n = lambda t: len(tok(t, add_special_tokens=False)["input_ids"])  # noqa: E731
    for r in rows:
        assert n(r.chosen) == n(r.rejected)  # length tells nothing
        differing = sum(a != b for a, b in zip(r.chosen.split(), r.rejected.split(), strict=False))
        assert differing >= dpo_strength.SLOTS[r.strength.level] > 0


@pytest.mark.slow
def test_the_bench_runs_every_mode_and_writes_its_figures(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    args = ["--seeds", "1", "--steps", "2", "--train", "16", "--test", "8", "--json", str(out)]
    r = subprocess.run(
        [sys.executable, str(REPO / "bench/dpo_strength.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    figures = json.loads(out.read_text())["results"]
    assert set(figures) == {"none", "offset", "weight"}
    for runs in figures.values():
        assert len(runs) == 1 and 0 <= runs[0]["accuracy"] <= 1
        assert set(runs[0]["by_strength"]) == {"significantly_better", "better", "slightly_better", "negligibly_better"}
    assert "| weight |" in r.stdout
