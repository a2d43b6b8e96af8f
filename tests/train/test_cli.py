"""`prefkit train ...` through the real command: the chain end to end, help, and bad configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from data.errors import DataError
from prefkit.cli import app

REPO = Path(__file__).resolve().parents[2]


def test_train_help_lists_every_stage():
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for stage in ("sft", "reward", "dpo", "chain", "score"):
        assert stage in result.output


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    """The installed command: an unknown key or QLoRA on a CPU is one error line, no traceback."""
    cmd = [sys.executable, "-m", "prefkit.cli", "train", "reward", "--config", str(REPO / "configs/train/reward-tiny.yaml")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    bad_key = subprocess.run([*cmd, "--set", "lora.rnak=8"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert bad_key.returncode == 2
    assert bad_key.stderr.strip().splitlines() == [bad_key.stderr.strip()]
    assert "unknown key(s) rnak" in bad_key.stderr and "Traceback" not in bad_key.stderr

    # in process: the DataError that main() turns into such a line names the missing file
    missing = CliRunner().invoke(app, ["train", "reward", "--config", str(REPO / "configs/train/reward-tiny.yaml"),
                                       "--set", f"data.source={tmp_path / 'nope.jsonl'}"])
    assert isinstance(missing.exception, DataError) and "nope.jsonl: no such file" in str(missing.exception)


@pytest.mark.slow
def test_chain_runs_sft_reward_dpo_from_the_cli(tiny_model_path, marker_dataset, tmp_path):
    out = tmp_path / "chain"
    sets = [f"model.path={tiny_model_path}", f"data.source={marker_dataset}", f"output_dir={out}", "data.max_rows=40"]
    sets += ["reward.save=merged"] + [f"{s}.max_steps=3" for s in ("sft", "reward", "dpo")] + [f"{s}.logging_steps=1" for s in ("sft", "reward", "dpo")]
    args = ["train", "chain", "--config", str(REPO / "configs/train/chain-tiny.yaml")]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "== sft" in result.output and "== reward" in result.output and "== dpo" in result.output

    chain = json.loads((out / "summary.json").read_text())["stages"]
    assert list(chain) == ["sft", "reward", "dpo"]
    sft_model = chain["sft"]["model_dir"]
    # the reward model and DPO both start from (and keep training) the SFT adapter
    assert chain["reward"]["config"]["model"]["adapter"] == sft_model
    assert chain["dpo"]["config"]["model"]["adapter"] == sft_model
    for stage in ("sft", "reward", "dpo"):
        assert chain[stage]["steps"] == 3 and (out / stage / "summary.json").exists()
    assert "test_accuracy_by_strength" in chain["reward"]["metrics"]
    assert "eval_rewards/margins" in chain["dpo"]["metrics"]

    # the merged reward model (LoRA and the trained head folded in) scores a file on its own
    reward_model = Path(chain["reward"]["model_dir"])
    assert not (reward_model / "adapter_config.json").exists()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"question": "Hỏi?", "chosen": "Đáp tốt.", "rejected": "Đáp.", "strength": "better"}) + "\n")
    scored = CliRunner().invoke(app, ["train", "score", "--model", str(reward_model), str(pairs), str(tmp_path / "s.jsonl")])
    assert scored.exit_code == 0, scored.output
    row = json.loads((tmp_path / "s.jsonl").read_text())
    assert isinstance(row["chosen_reward"], float) and isinstance(row["rejected_reward"], float)
