"""`prefkit generate`: options, YAML config, `--set`, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from prefkit.cli import app
from prefkit.data.readers import read_pairs

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "generate" / "tiny-cpu.yaml"
PREFKIT = Path(sys.executable).parent / "prefkit"


def test_options_config_and_overrides(tiny_model_path, prompts_file, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "generate",
            str(prompts_file),
            str(out),
            "--model",
            str(tiny_model_path),
            "--temperatures",
            "0.5,1.0",
            "--config",
            str(TINY_CONFIG),
            "--set",
            "max_tokens=6",
            "--set",
            "plan=all_pairs",
            "--limit",
            "3",
            "--system-prompt",
            "Trả lời thật ngắn.",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"3 pairs in 1 shard(s) in {out}" in result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["settings"]["max_tokens"] == 6 and report["settings"]["mode"] == "all_pairs"
    assert report["settings"]["settings"] == [f"{tiny_model_path}@T=0.5,p=0.95", f"{tiny_model_path}@T=1,p=0.95"]
    pairs = read_pairs(out)
    assert {p.prompt.system for p in pairs} == {"Trả lời thật ngắn."}
    assert all(r.n_tokens <= 6 and r.top_p == 0.95 for p in pairs for r in (p.a, p.b))


def test_everything_from_yaml(tiny_model_path, prompts_file, tmp_path):
    config = tmp_path / "run.yaml"
    out = tmp_path / "out"
    config.write_text(
        yaml.safe_dump(
            {
                **yaml.safe_load(TINY_CONFIG.read_text(encoding="utf-8")),
                "prompts": str(prompts_file),
                "out": str(out),
                "plan": "samples",
                "samples": 3,
                "max_tokens": 5,
                "settings": [{"model": str(tiny_model_path), "temperature": 0.9, "top_p": 0.8}],
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["generate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    # The progress bar counts prompts and shows tokens/s beside tqdm's prompt rate.
    assert "4/4" in result.stderr and "prompt" in result.stderr and "tok/s" in result.stderr
    pairs = read_pairs(out)
    # 3 samples of one setting per prompt: 3 pairs each unless some were dropped.
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert len(pairs) + report["dropped"]["count"] == 4 * 3
    assert {(r.temperature, r.top_p) for p in pairs for r in (p.a, p.b)} == {(0.9, 0.8)}
    assert pairs[0].prompt.system.startswith("Bạn là một trợ lý AI")


def run_prefkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PREFKIT), "generate", *args], capture_output=True, text=True, timeout=120)


def test_bad_settings_exit_2_with_one_line(prompts_file, tmp_path):
    hot = run_prefkit(str(prompts_file), str(tmp_path / "a"), "--model", "m", "--temperatures", "0.7,2.5")
    assert hot.returncode == 2
    assert hot.stderr.strip() == (
        "error: temperatures[1]: temperature 2.5 is out of range (0 = greedy, to 2; vLLM refuses more than 2)"
    )
    unknown = run_prefkit(str(prompts_file), str(tmp_path / "b"), "--model", "m", "--set", "temprature=1")
    assert unknown.returncode == 2 and "unknown key(s) temprature" in unknown.stderr
    words = run_prefkit(str(prompts_file), str(tmp_path / "c"), "--model", "m", "--temperatures", "warm")
    assert words.returncode == 2 and "temperatures[0]: expected a number, got 'warm'" in words.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
