"""`prefkit train ...` through the real command: the chain end to end, help, and bad configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefkit.cli import app
from prefkit.core.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def test_train_help_lists_every_stage():
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for stage in ("sft", "reward", "dpo", "chain", "score"):
        assert stage in result.output


def test_bad_config_is_one_line_and_exit_2(tmp_path, monkeypatch):
    """The installed command: an unknown key or QLoRA on a CPU is one error line, no traceback."""
    monkeypatch.chdir(tmp_path)  # the config's relative output_dir is created (and marked) here
    cmd = [
        sys.executable,
        "-m",
        "prefkit.cli",
        "train",
        "reward",
        "--config",
        str(REPO / "configs/train/reward-tiny.yaml"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    bad_key = subprocess.run([*cmd, "--set", "lora.rnak=8"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert bad_key.returncode == 2
    assert bad_key.stderr.strip().splitlines() == [bad_key.stderr.strip()]
    assert "unknown key(s) rnak" in bad_key.stderr and "Traceback" not in bad_key.stderr

    # in process: the DataError that main() turns into such a line names the missing file
    missing = CliRunner().invoke(
        app,
        [
            "train",
            "reward",
            "--config",
            str(REPO / "configs/train/reward-tiny.yaml"),
            "--set",
            f"data.source={tmp_path / 'nope.jsonl'}",
        ],
    )
    assert isinstance(missing.exception, DataError) and "nope.jsonl: no such file" in str(missing.exception)


@pytest.mark.slow
def test_chain_runs_sft_reward_dpo_from_the_cli(tiny_model_path, marker_dataset, tmp_path):
    out = tmp_path / "chain"
    sets = [f"model.path={tiny_model_path}", f"data.source={marker_dataset}", f"output_dir={out}", "data.max_rows=40"]
    sets += (
        ["reward.save=merged"]
        + [f"{s}.max_steps=3" for s in ("sft", "reward", "dpo")]
        + [f"{s}.logging_steps=1" for s in ("sft", "reward", "dpo")]
    )
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
    pairs.write_text(
        json.dumps({"question": "Hỏi?", "chosen": "Đáp tốt.", "rejected": "Đáp.", "strength": "better"}) + "\n"
    )
    scored = CliRunner().invoke(
        app, ["train", "score", "--model", str(reward_model), str(pairs), str(tmp_path / "s.jsonl")]
    )
    assert scored.exit_code == 0, scored.output
    row = json.loads((tmp_path / "s.jsonl").read_text())
    assert isinstance(row["chosen_reward"], float) and isinstance(row["rejected_reward"], float)


def _train(stage: str, *sets: str):
    args = ["train", stage, "--config", str(REPO / f"configs/train/{stage}-tiny.yaml")]
    for s in sets:
        args += ["--set", s]
    return CliRunner().invoke(app, args)


def test_output_dir_that_is_or_holds_an_input_is_refused(tiny_model_copy, marker_dataset, tmp_path):
    """output_dir is never the dataset, nor a folder holding the model: one line, exit 2, nothing written."""
    before = sorted(p.name for p in marker_dataset.iterdir())
    cmd = [
        sys.executable,
        "-m",
        "prefkit.cli",
        "train",
        "sft",
        "--config",
        str(REPO / "configs/train/sft-tiny.yaml"),
        "--set",
        f"model.path={tiny_model_copy}",
        "--set",
        f"data.source={marker_dataset}",
        "--set",
        f"output_dir={marker_dataset}",
    ]
    same = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert same.returncode == 2 and same.stderr.strip().splitlines() == [same.stderr.strip()], same.stderr
    assert "output_dir is the input" in same.stderr and str(marker_dataset) in same.stderr
    assert sorted(p.name for p in marker_dataset.iterdir()) == before  # no marker, nothing else

    # the model folder lies inside output_dir (tmp_path holds tiny-model/)
    holds = _train("dpo", f"model.path={tiny_model_copy}", f"data.source={marker_dataset}", f"output_dir={tmp_path}")
    assert isinstance(holds.exception, DataError), holds.output
    assert "output_dir contains the input" in str(holds.exception) and str(tiny_model_copy) in str(holds.exception)
    # and output_dir inside the reward model of a PPO run
    inside = _train(
        "ppo",
        f"model.path={tiny_model_copy}",
        f"reward.model={tiny_model_copy}",
        f"output_dir={tiny_model_copy / 'ppo'}",
    )
    assert isinstance(inside.exception, DataError) and "lies inside the input" in str(inside.exception)
    assert not (tiny_model_copy / "ppo").exists() and not (tmp_path / ".prefkit-output.json").exists()


def test_output_dir_of_someone_else_is_refused_and_left_untouched(tiny_model_path, marker_dataset, tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine\n")
    refused = _train("reward", f"model.path={tiny_model_path}", f"data.source={marker_dataset}", f"output_dir={theirs}")
    assert isinstance(refused.exception, DataError), refused.output
    assert "output_dir already holds files that prefkit did not write" in str(refused.exception)
    assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt"] and (theirs / "notes.txt").read_text() == "mine\n"

    # a folder another stage wrote is not this stage's either
    sft_out = tmp_path / "sft"
    sft_out.mkdir()
    (sft_out / ".prefkit-output.json").write_text(json.dumps({"command": "train sft"}) + "\n")
    (sft_out / "summary.json").write_text("{}\n")
    other = _train("dpo", f"model.path={tiny_model_path}", f"data.source={marker_dataset}", f"output_dir={sft_out}")
    assert isinstance(other.exception, DataError) and "written by prefkit train sft" in str(other.exception)
    assert (sft_out / "summary.json").read_text() == "{}\n"


def test_a_stage_resumes_in_its_own_output_dir(tiny_model_path, marker_dataset, tmp_path):
    """A previous run of the same stage is accepted: resume_from_checkpoint: latest continues it."""
    out = tmp_path / "sft"
    common = [
        f"model.path={tiny_model_path}",
        f"data.source={marker_dataset}",
        f"output_dir={out}",
        "data.max_rows=16",
        "data.test_split=null",
        "logging_steps=1",
        "save_steps=1",
    ]
    first = _train("sft", *common, "max_steps=1")
    assert first.exit_code == 0, first.output
    # written into over time, never replaced: the marker names the stage and lists no files
    marker = json.loads((out / ".prefkit-output.json").read_text())
    assert marker == {"command": "train sft", "format": 2, "files": None}
    assert (out / "checkpoint-1").is_dir() and (out / "model").is_dir()

    again = _train("sft", *common, "max_steps=2", "resume_from_checkpoint=latest")
    assert again.exit_code == 0, again.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and [h["step"] for h in summary["losses"]["train"]] == [1, 2]
    assert (out / "checkpoint-2").is_dir()
