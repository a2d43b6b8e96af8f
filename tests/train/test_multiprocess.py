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

from prefkit.core.config import load_config
from prefkit.data.export import export_dataset

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
            assert (
                plugin.zero3_init_flag
                and plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
            )
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
    return [
        f"model.path={model}",
        f"data.source={data}",
        f"output_dir={out}",
        "max_steps=6",
        "lr=5e-3",
        "logging_steps=1",
        "report_to=none",
        "model.dtype=float32",
        "lora.dropout=0",
        f"batch_size={batch_size}",
    ]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_two(stage: str, overrides: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`accelerate launch --multi_gpu --num_processes 2 -m prefkit.cli train STAGE --set ...` on the CPU
    (gloo); this folder is on the processes' path, so a test's function can be a `reward.function`."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(Path(__file__).parent)]),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "prefkit.cli",
        "train",
        stage,
    ]
    for o in overrides:
        cmd += ["--set", o]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=cwd)


REWARD_RANGE = ("min_reward", "max_reward", "eval_min_reward", "eval_max_reward")  # what RewardTrainer logs
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
    done = _launch_two(stage, _overrides(tiny_model_path, marker_export, tmp_path / "two", 4), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "summary.json").read_text(encoding="utf-8"))

    assert two["steps"] == one["steps"] == 6
    # Twice the rows per step as each process alone would see: the tokens counted are all ranks'.
    assert two["tokens"] == one["tokens"] > 0
    flat_one = {**one["metrics"], **one["metrics"].get("last", {})}
    flat_two = {**two["metrics"], **two["metrics"].get("last", {})}
    losses_one, losses_two = ([s["loss"] for s in r["losses"]["train"]] for r in (one, two))
    if stage == "reward":
        # Tolerance from float32 rounding of the rewards themselves. The runs differ only in summation
        # order (rows padded to 4 or 8 rows' width, gradients summed as two halves): each reward agrees to
        # n·u relative (u = 2⁻²⁴, n < 2,000 terms in the longest sums, as in the PPO test below), so to
        # ε = n·u·R absolute, R the largest |reward| either run logged. The loss −log σ(r_c − r_r − m) has
        # slope σ(·) ≤ 1 in the difference, so a loss or a mean reward margin moves by at most 2ε,
        # however small the loss gets (a relative bound fails there: the margin-free loss nears 0).
        rewards = [abs(h[k]) for r in (one, two) for h in r["log_history"] for k in REWARD_RANGE if k in h]
        tol = 2 * 2_000 * 2.0**-24 * max(rewards)
        for key in ("train_loss", "eval_loss", "eval_reward_margin"):
            assert flat_two[key] == pytest.approx(flat_one[key], rel=0, abs=tol), (key, tol)
        for key in ("eval_accuracy", "test_accuracy"):  # a pair flips only on a tie within 2ε
            assert flat_two[key] == flat_one[key], key
        assert losses_two == pytest.approx(losses_one, rel=0, abs=tol)
    else:
        for key in COMPARED[stage]:
            assert flat_two[key] == pytest.approx(flat_one[key], rel=1e-3, abs=1e-4), key
        assert losses_two == pytest.approx(losses_one, rel=1e-3)
    # One saved model, written by rank 0.
    assert (Path(two["model_dir"]) / "adapter_config.json").exists()


# --- data-parallel PPO ----------------------------------------------------------------------------

PPO_PROMPTS = [
    "Xin chào",
    "Viết một câu",
    "Tính tổng",
    "Giải thích",
    "Hà Nội",
    "mùa thu",
    "phở bò",
    "cảm ơn",
    "Dịch câu này",
    "Kể chuyện",
    "Bài thơ",
    "Công thức",
    "Ăn gì",
    "Đi đâu",
    "Mấy giờ",
    "Tạm biệt",
]
_calls = {"n": 0}


def count_a(prompts, completions):
    """Rule-based reward (a `reward.function`): how many times the letter 'a' appears in the answer."""
    return [float(c.count("a")) for c in completions]


def count_a_until_the_third_call(prompts, completions):
    """`count_a`, but the judge goes away on a process's third call (its third rollout)."""
    _calls["n"] += 1
    if _calls["n"] == 3:
        raise RuntimeError("judge went away")
    return count_a(prompts, completions)


def _ppo_overrides(model: Path, prompts: Path, out: Path, batch_size: int, reward: str) -> list[str]:
    # one mini-batch per rollout (the whole batch, trained twice): the update sees the same rows whichever
    # process holds them; lm_head in the targets, as in test_ppo (the random model sharpens through it)
    return [
        f"model.path={model}",
        f"data.source={prompts}",
        f"output_dir={out}",
        "max_steps=4",
        "save_steps=2",
        "save_total_limit=null",
        f"batch_size={batch_size}",
        f"mini_batch_size={batch_size}",
        "ppo_epochs=2",
        "max_new_tokens=8",
        "lr=1e-2",
        "kl_coef=0.05",
        "seed=0",
        "report_to=none",
        "model.dtype=float32",
        "lora.r=8",
        "lora.alpha=16",
        "lora.dropout=0",
        "lora.target_modules=[q_proj,v_proj,up_proj,down_proj,lm_head]",
        f"reward.function=test_multiprocess:{reward}",
    ]


@pytest.mark.slow
def test_ppo_on_two_cpu_processes_ends_where_one_process_does_and_resumes(tiny_model_path, tmp_path, monkeypatch):
    """2 processes × 8 prompts against 1 process × 16, interrupted after its checkpoint and resumed.

    Each process samples its own 8 rows of every step's 16; a row's answer depends on (seed, step, row)
    only (prefkit.train.seeded_sampling), the whitening and the token shares of the losses are the whole batch's,
    and the gradients are summed across processes: both runs compute the same thing, and differ only by
    float32 rounding (see the tolerance below)."""
    import torch
    from peft import load_peft_weights

    from prefkit.train import ppo

    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # reward.function=test_multiprocess:count_a, as launched
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": p}, ensure_ascii=False) + "\n" for p in PPO_PROMPTS), encoding="utf-8"
    )
    one = ppo.run(
        load_config(ppo.PpoConfig, None, _ppo_overrides(tiny_model_path, prompts, tmp_path / "one", 16, "count_a"))
    )

    out = tmp_path / "two"
    crashed = _launch_two(
        "ppo", _ppo_overrides(tiny_model_path, prompts, out, 8, "count_a_until_the_third_call"), tmp_path
    )
    assert crashed.returncode != 0 and "judge went away" in crashed.stderr, crashed.stderr[-3000:]
    assert (out / "checkpoint-2").is_dir() and not (out / "model").exists() and not (out / "summary.json").exists()
    resumed = _launch_two(
        "ppo",
        _ppo_overrides(tiny_model_path, prompts, out, 8, "count_a_until_the_third_call")
        + ["resume_from_checkpoint=latest"],
        tmp_path,
    )  # steps 3 and 4: calls 1 and 2 here
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    two = json.loads((out / "summary.json").read_text(encoding="utf-8"))

    assert two["steps"] == one["steps"] == 4 and two["metrics"]["resumed_from_step"] == 2
    assert [h["step"] for h in two["log_history"]] == [1, 2, 3, 4]
    # both processes' rollouts were used: 2 × 8 rows per step, as the one process's 16
    assert two["data_parallel"]["world_size"] == 2 and two["data_parallel"]["rollouts_per_process"] == 8
    assert [h["rollouts"] for h in two["log_history"]] == [h["rollouts"] for h in one["log_history"]] == [16.0] * 4
    # the two copies of the weights ended identical (bit for bit: the same summed gradients, the same steps)
    digests = two["data_parallel"]["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
    # one saved model, one checkpoint, written once
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "checkpoint-2",
        "model",
        "summary.json",
    ]
    assert (out / "model" / "adapter_config.json").exists()

    # Tolerance: the runs differ only in float32 summation order (prompts padded to 8 or 16 rows' width, a
    # whole-batch sum taken as two halves). A float32 sum of n terms is exact to n·u (u = 2⁻²⁴ ≈ 6e-8); the
    # longest sums here are the softmax normaliser over the tiny vocabulary and the hidden-size dot
    # products, n < 2,000, so each quantity agrees to < 2,000 · 6e-8 ≈ 1.2e-4 relative, and Adam's
    # normalised steps carry a relative gradient error into the weights at the same relative size.
    # The sampled tokens are then the same, so the rewards are equal (a Gumbel argmax flips only on a
    # tie within ~1e-4, which the test would show as a reward off by a whole letter).
    rel = 2_000 * 2.0**-24
    for h1, h2 in zip(one["log_history"], two["log_history"], strict=True):
        assert h2["reward"] == h1["reward"] and h2["response_length"] == h1["response_length"], (h1, h2)
        for key in ("kl", "entropy", "policy_loss", "value_loss", "approx_kl"):
            assert h2[key] == pytest.approx(h1[key], rel=rel, abs=rel), (key, h1["step"], h1[key], h2[key])
    # all processes' tokens are counted: steps 1-2 (in the checkpoint) and this session's 3-4 are the one process's
    at_checkpoint = torch.load(out / "checkpoint-2" / "trainer_state.pt", weights_only=False)["tokens"]
    assert 0 < at_checkpoint < one["tokens"] and at_checkpoint + two["tokens"] == one["tokens"]
    w1, w2 = load_peft_weights(str(Path(one["model_dir"]))), load_peft_weights(str(out / "model"))
    assert set(w1) == set(w2)
    for k in w1:
        assert torch.allclose(w2[k], w1[k], rtol=rel, atol=rel * w1[k].abs().max().item()), k
