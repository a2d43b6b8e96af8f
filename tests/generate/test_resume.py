"""A real `prefkit generate` process is killed mid-way; `--resume` finishes without redoing or duplicating."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data.config import load_config
from data.readers import read_pairs
from generate.config import GenerateConfig
from generate.run import generate_pairs

REPO = Path(__file__).resolve().parents[2]


def manifest_steps(out: Path) -> list[dict]:
    try:
        return json.loads((out / "manifest.json").read_text(encoding="utf-8"))["steps"]
    except (FileNotFoundError, json.JSONDecodeError):
        return []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_run_resumes_without_redoing_or_duplicating(sig, tiny_model_path, questions, make_prompts, tmp_path):
    # 48 prompts, 48 steps of 1, one row per generate call and up to 64 tokens: the signal comes
    # right after the first step, and the rest of the run (~7 s here) is far longer than any pause a
    # busy CI machine gives this polling loop (12 short steps could all finish within one).
    asked = [f"{q} ({i})" for i in range(4) for q in questions]
    n = len(asked)
    prompts = make_prompts(tmp_path / "prompts.jsonl", asked)
    out = tmp_path / "out"
    args = [
        str(prompts), str(out), "--model", str(tiny_model_path), "--temperatures", "0.7,1.1",
        "--config", str(REPO / "configs/generate/tiny-cpu.yaml"), "--plan", "all_pairs",
        "--shard-size", "1", "--max-tokens", "64", "--batch-size", "1", "--no-progress",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefkit.cli", "generate", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 180
    while not manifest_steps(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), stderr

    finished = manifest_steps(out)
    assert 1 <= len(finished) < n, "the run must be stopped mid-way"
    assert not list(out.glob(".*.tmp")) or sig == signal.SIGKILL  # Ctrl-C cleans its temp files
    kept = {s["shard"]: (out / s["shard"]).read_bytes() for s in finished}

    cfg = load_config(
        GenerateConfig, REPO / "configs/generate/tiny-cpu.yaml", [],
        prompts=str(prompts), out=str(out), models=[str(tiny_model_path)], temperatures=[0.7, 1.1],
        plan="all_pairs", shard_size=1, max_tokens=64, batch_size=1, progress=False,
    )
    generate_pairs(cfg, resume=True)

    steps = manifest_steps(out)
    assert steps[: len(finished)] == finished  # finished steps were not redone
    assert {name: (out / name).read_bytes() for name in kept} == kept
    done = [pid for s in steps for pid in s["prompt_ids"]]
    assert len(done) == len(set(done)) == n
    assert not list(out.glob(".*.tmp"))
    pairs = read_pairs(out)
    assert len(pairs) == len({p.pair_id for p in pairs}) == sum(s["pairs"] for s in steps)
    assert {p.prompt.id for p in pairs} <= set(done)
    assert sorted(p.name for p in out.glob("shard-*.parquet")) == [s["shard"] for s in steps]
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["complete"] is True
