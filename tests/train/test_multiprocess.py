"""Training beyond one process: SFT, reward and DPO run data-parallel under `accelerate launch` with 2
CPU processes (gloo) and end with the metrics of one process at the same global batch; the
DeepSpeed ZeRO-2/3 and FSDP configs pass accelerate's own config loader and plugin checks.

On CPUs, `accelerate launch --num_processes 2 --cpu` starts ONE process (its simple launcher; many
CPU processes need mpirun there): the torchrun launcher is `--multi_gpu`, and our TrainingArguments
say `use_cpu`, so the processes join a gloo group on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data.config import load_config
from data.export import export_dataset

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "accelerate"


# --- accelerate configs ---------------------------------------------------------------------------


def _launch_env(path: Path) -> tuple[object, dict[str, str]]:
    """What `accelerate launch --config_file PATH` makes of the file: its args and the environment
    its launcher hands the processes (the plugins read their settings from it)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(path), "train.py"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:  # as `launch_command` does before its DeepSpeed launcher
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return args, prepare_deepspeed_cmd_env(args)[1]
    return args, prepare_multi_gpu_env(args)


@pytest.mark.parametrize(
    "name, kind, stage",
    [("zero2.yaml", "DEEPSPEED", 2), ("zero3.yaml", "DEEPSPEED", 3), ("fsdp.yaml", "FSDP", None)],
)
def test_accelerate_configs_pass_accelerates_own_loader(name, kind, stage, monkeypatch):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin

    cfg = load_config_from_file(str(CONFIGS / name))  # unknown keys or values raise here
    assert cfg.distributed_type.value == kind and cfg.mixed_precision == "bf16"
    args, env = _launch_env(CONFIGS / name)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if kind == "DEEPSPEED":
        assert args.use_deepspeed and cfg.deepspeed_config["zero_stage"] == stage
        plugin = DeepSpeedPlugin()  # built from the launcher's environment, as in each process
        assert plugin.zero_stage == stage
        if stage == 3:
            assert plugin.zero3_init_flag and plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    else:
        assert args.use_fsdp
        plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == 2 and plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
        assert plugin.state_dict_type.name == "FULL_STATE_DICT"


def test_a_config_with_an_unknown_key_is_refused_by_the_loader(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "zero2.yaml").read_text() + "zero_stagee: 2\n")
    with pytest.raises(ValueError, match="zero_stagee"):
        load_config_from_file(str(bad))


# --- data-parallel training -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def marker_export(make_marker_rows, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mp") / "ds"
    export_dataset(make_marker_rows(64, seed=3), out, test_size=0.25, seed=1, margin="small")
    return out


def _overrides(model: Path, data: Path, out: Path, batch_size: int) -> list[str]:
    return [f"model.path={model}", f"data.source={data}", f"output_dir={out}", "max_steps=6", "lr=5e-3",
            "logging_steps=1", "report_to=none", "model.dtype=float32", "lora.dropout=0",
            f"batch_size={batch_size}"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Stage -> the final metrics compared (the learning itself is each stage's own test).
COMPARED = {
    "sft": ["train_loss", "eval_loss", "eval_mean_token_accuracy"],
    "reward": ["train_loss", "eval_loss", "eval_accuracy", "eval_reward_margin", "test_accuracy"],
    "dpo": ["train_loss", "eval_loss", "eval_rewards/margins", "eval_rewards/accuracies"],
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["sft", "reward", "dpo"])
def test_two_cpu_processes_end_where_one_process_does(stage, tiny_model_path, marker_export, tmp_path):
    import importlib

    # One process, global batch 8.
    module = importlib.import_module(f"train.{stage}")
    one = module.run(load_config(module.CONFIG, None, _overrides(tiny_model_path, marker_export, tmp_path / "one", 8)))

    # Two processes, 4 rows each: the same 8 rows per step, gradients all-reduced.
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "prefkit.cli", "train", stage]
    for o in _overrides(tiny_model_path, marker_export, tmp_path / "two", 4):
        cmd += ["--set", o]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "summary.json").read_text(encoding="utf-8"))

    assert two["steps"] == one["steps"] == 6
    # Twice the rows per step as each process alone would see: the tokens counted are all ranks'.
    assert two["tokens"] == one["tokens"] > 0
    flat_one = {**one["metrics"], **one["metrics"].get("last", {})}
    flat_two = {**two["metrics"], **two["metrics"].get("last", {})}
    for key in COMPARED[stage]:
        assert flat_two[key] == pytest.approx(flat_one[key], rel=1e-3, abs=1e-4), key
    assert [s["loss"] for s in two["losses"]["train"]] == pytest.approx([s["loss"] for s in one["losses"]["train"]], rel=1e-3)
    # One saved model, written by rank 0.
    assert (Path(two["model_dir"]) / "adapter_config.json").exists()
