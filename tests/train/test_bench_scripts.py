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


def test_active_learning_bench_runs_both_arms_through_the_store(tmp_path):
    """bench/active_learning.py on the bundled sample (a few labels, bag-of-words model): both arms
    for each seed, in alternating order, the uncertainty arm's labels chosen by the ranked queue
    (with its random share), the random arm's by the seeded shuffle only; without the data file it
    says why and measures nothing."""
    out = tmp_path / "al.json"
    args = [str(REPO / "bench/active_learning.py"), "--data", str(REPO / "data/samples/vi_preference_sample.jsonl")]
    small = ["--seeds", "2", "--test", "16", "--seed-set", "8", "--batch", "8", "--rounds", "2"]
    r = _run([*args, *small, "--json", str(out), "--svg", str(tmp_path / "al.svg")], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    figures = json.loads(out.read_text())
    curves = figures["curves"]
    assert [(c["seed"], c["arm"]) for c in curves] == [
        (0, "random"),
        (0, "uncertainty"),
        (1, "uncertainty"),
        (1, "random"),
    ]
    for c in curves:
        assert c["labels"] == [8, 16, 24] and all(0.0 <= a <= 1.0 for a in c["accuracy"])
    for c in curves:
        if c["arm"] == "random":
            assert c["selected_by"] == {"random": 24}
        else:  # the seed set (8) and a share of each round were random; the rest by uncertainty
            assert c["selected_by"]["uncertainty"] >= 10 and c["selected_by"]["random"] >= 8
    assert [row["labels"] for row in figures["summary"]] == [8, 16, 24]
    assert (tmp_path / "al.svg").read_text().startswith("<svg")
    missing = _run([args[0], "--data", str(tmp_path / "absent.jsonl.gz")], tmp_path)
    assert missing.returncode == 0 and missing.stdout.startswith("skipped:") and "absent" in missing.stdout
