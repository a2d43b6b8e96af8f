"""bench/train_gpu.py and bench/gpu_check.py run end to end in their CPU modes (tiny model), so the
scripts left for a GPU are known to work up to the GPU-only parts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_train_gpu_bench_tiny_mode_alternates_and_reports_ratios(tmp_path):
    out = tmp_path / "bench.json"
    r = _run(
        [
            str(REPO / "bench/train_gpu.py"),
            "--tiny",
            "--steps",
            "2",
            "--tokens",
            "16",
            "--repeats",
            "2",
            "--json",
            str(out),
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    figures = json.loads(out.read_text())
    for stage in ("reward", "dpo"):
        res = figures["results"][stage]
        assert len(res["plain_trl"]["runs"]) == len(res["prefkit"]["runs"]) == 2
        assert res["tokens_per_s_ratio"] > 0 and res["prefkit"]["tokens_per_s"] > 0
    assert "tokens/s" in r.stdout or "tok/s" in r.stdout


def test_train_gpu_bench_fails_loudly_when_no_row_fits(tmp_path):
    """Responses far longer than any max_length the script could keep: it must stop, not report 0 tok/s."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import train_gpu
    finally:
        sys.path.pop(0)
    with pytest.raises(SystemExit, match="0 training rows kept"):
        train_gpu._check_kept("reward", "plain TRL", 0)


@pytest.mark.slow
def test_gpu_check_cpu_path_runs_the_whole_chain_and_writes_its_figures(tmp_path):
    out = tmp_path / "check.json"
    r = _run([str(REPO / "bench/gpu_check.py"), "--cpu", "--steps", "6", "--json", str(out)], tmp_path)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    report = json.loads(out.read_text())
    assert report["ok"] is True
    stages = report["modes"]["lora"]
    assert {"sft", "reward", "dpo", "ppo", "grpo", "best_of_k"} <= set(stages)
    assert stages["chain_logprobs_max_abs_diff"] < 1e-4
    assert all(stages[s]["wall_s"] > 0 for s in ("sft", "reward", "dpo", "ppo", "grpo", "best_of_k"))
