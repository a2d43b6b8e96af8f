"""PPO anchor: prefkit's PPO against TRL 1.12's experimental `PPOTrainer` on the same task.

TRL 1.13+ ships no PPO, so TRL 1.12 runs in its own virtual environment (`bench/.venv-trl112`,
created here when missing: torch 2.13 CPU first, then `trl==1.12.*`). Both trainers get the
same tiny Llama, the same prompts, the same reward model (trained here with prefkit's reward
stage on marker pairs, saved merged so TRL 1.12 can load it), the same LoRA, batch sizes, PPO
epochs, KL coefficient, clipping and learning rate. Printed: each trainer's mean reward per
rollout (as each computes it: TRL scores the raw generated ids, prefkit the conversation rendered
with the chat template, as the reward stage trained it), rollouts/s with prefkit's speed as a
ratio of TRL's, and one common yardstick: 64 answers from the start and from each final policy,
scored the same way.

    .venv/bin/python bench/ppo_anchor.py                   # tiny model, CPU
    .venv/bin/python bench/ppo_anchor.py --preset 1b       # random-weight ~1B Llama config, bf16 (GPU)

With `--preset 1b` the reward model is the same config with a random score head (speed and
memory only: its rewards mean nothing). Peak GPU memory is printed when there is a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ANCHOR_VENV = HERE / ".venv-trl112"
WORK = REPO / "runs" / "bench-ppo"

PROMPTS = ["Xin chào", "Viết một câu về phở", "Tính tổng 1 đến 10", "Hà Nội mùa thu", "Giải thích quang hợp",
           "Kể về sông Hồng", "Mô tả áo dài", "Nói về trà", "Cảm ơn bạn", "Viết về mùa xuân", "Bánh mì là gì?",
           "Kể một câu chuyện ngắn", "Lúa gạo ở Việt Nam", "Cà phê sữa đá", "Tại sao trời xanh?", "Chào buổi sáng"]
MARKER = "Cảm ơn bạn rất nhiều!"

# The shared PPO settings: 16 prompts per rollout, 2 mini-batches of 8, 4 PPO epochs.
SETTINGS = {"steps": 20, "batch_size": 16, "mini_batch_size": 8, "ppo_epochs": 4, "lr": 3e-3, "kl_coef": 0.05,
            "cliprange": 0.2, "cliprange_value": 0.2, "vf_coef": 0.1, "gamma": 1.0, "lam": 0.95,
            "max_new_tokens": 16, "temperature": 1.0, "lora_r": 8, "lora_alpha": 16, "seed": 0}
LORA_TARGETS = ["q_proj", "v_proj", "up_proj", "down_proj", "lm_head"]


# ------------------------------------------------------------------------------ setup (main venv)


def ensure_anchor_venv() -> Path | None:
    """`bench/.venv-trl112` with torch 2.13 CPU and trl 1.12; None (and why) when it cannot be made."""
    python = ANCHOR_VENV / "bin" / "python"
    if python.exists():
        return python
    steps = [
        [sys.executable, "-m", "venv", str(ANCHOR_VENV)],
        [str(python), "-m", "pip", "install", "-q", "torch==2.13.0"],
        [str(python), "-m", "pip", "install", "-q", "trl==1.12.*", "peft", "accelerate", "datasets"],
    ]
    for cmd in steps:
        print("$", " ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            print(f"could not build the TRL 1.12 venv (step failed: {' '.join(cmd)}); running prefkit only")
            return None
    return python


def build_models(preset: str) -> tuple[Path, Path]:
    """The policy model folder and a merged reward model folder for the preset."""
    from train.tiny_model import build_tiny_model

    policy = WORK / f"{preset}-policy"
    reward = WORK / f"{preset}-reward"
    if preset == "tiny":
        if not policy.exists():
            build_tiny_model(policy)
        if not (reward / "model").exists():
            train_reward(policy, reward)
        return policy, reward / "model"
    if not policy.exists():
        build_1b(policy)
    if not reward.exists():
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        rm = AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1)
        rm.config.pad_token_id = rm.config.pad_token_id or 0
        rm.save_pretrained(reward)
        AutoTokenizer.from_pretrained(policy).save_pretrained(reward)
    return policy, reward


def build_1b(out: Path) -> None:
    """A random-weight Llama with Llama 3.2 1B's shape (vocab from the local tokenizer)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from train.tiny_model import build_tokenizer

    tok = build_tokenizer(vocab_size=512)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=2048,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)


def train_reward(policy: Path, out: Path) -> None:
    """prefkit's reward stage on marker pairs (chosen answers end with MARKER), saved merged."""
    import random

    from data.config import load_config
    from data.export import export_dataset
    from data.schema import PreferenceRow, Strength
    from train import reward
    from train.config import RewardConfig

    rng = random.Random(0)
    rows = []
    for i in range(160):
        body = f"{PROMPTS[i % len(PROMPTS)]} là một chủ đề hay. " + " ".join(rng.sample(["tốt", "đẹp", "ngon", "xanh", "lớn"], 3))
        rows.append(PreferenceRow(question=f"{PROMPTS[i % len(PROMPTS)]} (câu {i})", chosen=f"{body} {MARKER}",
                                  rejected=body, strength=list(Strength)[i % 4]))
    export_dataset(rows, out / "data", test_size=0.2, seed=0)
    cfg = load_config(RewardConfig, None, [f"model.path={policy}", f"data.source={out / 'data'}", f"output_dir={out}",
                                           "max_steps=30", "lr=3e-3", "batch_size=8", "save_steps=1000",
                                           "lora.r=8", "lora.dropout=0", "save=merged"])
    reward.run(cfg)


# ------------------------------------------------------------------------------------ prefkit


def run_prefkit(policy: Path, reward_model: Path, preset: str) -> dict:
    import torch

    from data.schema import Prompt
    from train.config import LoraSection, ModelConfig
    from train.ppo import PpoConfig, PpoTrainer
    from train.scoring import RewardSection

    s = SETTINGS
    cfg = PpoConfig(output_dir=WORK / f"{preset}-prefkit", model=ModelConfig(path=str(policy)),
                    lora=LoraSection(r=s["lora_r"], alpha=s["lora_alpha"], dropout=0.0, target_modules=LORA_TARGETS),
                    reward=RewardSection(model=str(reward_model)), batch_size=s["batch_size"],
                    mini_batch_size=s["mini_batch_size"], ppo_epochs=s["ppo_epochs"], max_steps=s["steps"],
                    lr=s["lr"], lr_scheduler="constant", kl_coef=s["kl_coef"], cliprange=s["cliprange"],
                    cliprange_value=s["cliprange_value"], vf_coef=s["vf_coef"], gamma=s["gamma"], lam=s["lam"],
                    max_new_tokens=s["max_new_tokens"], temperature=s["temperature"], save_steps=0, seed=s["seed"],
                    logging_steps=1000)
    trainer = PpoTrainer(cfg, prompts=[Prompt(p) for p in PROMPTS])
    summary = trainer.train()
    return {"rewards": [h["reward"] for h in summary["log_history"]], "kl": [h["kl"] for h in summary["log_history"]],
            "train_s": summary["durations"]["train_s"], "steps": summary["steps"],
            "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}


def common_score(policy: Path, adapter: Path | None, reward_model: Path, samples: int = 4) -> float:
    """Mean reward of `samples` answers per prompt, sampled through the generate room's engine and
    scored by prefkit's scorer: the same yardstick for the start and for both trained policies."""
    from data.schema import Prompt
    from generate.chat import format_prompt
    from generate.engines.base import Request
    from generate.engines.hf import HFEngine
    from train.scoring import RewardModelScorer

    engine = HFEngine(policy, adapter, batch_size=64)
    prompts = [Prompt(p) for p in PROMPTS]
    try:
        results = engine.generate([Request(format_prompt(engine.tokenizer, p.question), temperature=1.0,
                                           max_tokens=SETTINGS["max_new_tokens"], seed=1000 + i * samples, n=samples)
                                   for i, p in enumerate(prompts)])
    finally:
        engine.close()
    pairs = [(p, c.text) for p, r in zip(prompts, results) for c in r.completions]
    scores = RewardModelScorer(reward_model)([p for p, _ in pairs], [c for _, c in pairs])
    return sum(scores) / len(scores)


# -------------------------------------------------------------------------- TRL 1.12 (own venv)


def run_trl112(policy: str, reward_model: str, out: str) -> None:
    """Runs inside bench/.venv-trl112: TRL 1.12's experimental PPOTrainer on the same task."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    s = SETTINGS
    torch.manual_seed(s["seed"])
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    tok = AutoTokenizer.from_pretrained(policy, padding_side="left")
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in PROMPTS]
    ds = Dataset.from_dict({"input_ids": [tok(t, add_special_tokens=False)["input_ids"] for t in texts]})
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=dtype)
    value = AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1, dtype=dtype)
    reward = AutoModelForSequenceClassification.from_pretrained(reward_model, num_labels=1, dtype=dtype)
    for m in (value, reward):
        m.config.pad_token_id = tok.pad_token_id
    args = PPOConfig(
        # one optimizer step per mini-batch, as prefkit: the whole rollout batch is one device batch
        # split into mini-batches (gradient accumulation here would halve TRL's optimizer steps)
        output_dir=str(Path(out).parent / "trl112-out"), per_device_train_batch_size=s["batch_size"],
        gradient_accumulation_steps=1, num_mini_batches=s["batch_size"] // s["mini_batch_size"],
        num_ppo_epochs=s["ppo_epochs"], total_episodes=s["steps"] * s["batch_size"], learning_rate=s["lr"],
        lr_scheduler_type="constant", kl_coef=s["kl_coef"], cliprange=s["cliprange"], cliprange_value=s["cliprange_value"],
        vf_coef=s["vf_coef"], gamma=s["gamma"], lam=s["lam"], response_length=s["max_new_tokens"],
        temperature=s["temperature"], stop_token="eos", missing_eos_penalty=None, logging_steps=1, save_strategy="no",
        report_to=[], num_sample_generations=0, seed=s["seed"], bf16=cuda, use_cpu=not cuda,
        local_rollout_forward_batch_size=s["batch_size"],
    )
    lora = LoraConfig(r=s["lora_r"], lora_alpha=s["lora_alpha"], lora_dropout=0.0, target_modules=LORA_TARGETS,
                      task_type="CAUSAL_LM")
    trainer = PPOTrainer(args=args, processing_class=tok, model=model, ref_model=None, reward_model=reward,
                         train_dataset=ds, value_model=value, peft_config=lora)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    trainer.save_model(str(Path(out).with_suffix("")) + "-policy")  # the LoRA policy, for the common scoring
    logs = [h for h in trainer.state.log_history if "objective/scores" in h]
    Path(out).write_text(json.dumps({
        "rewards": [h["objective/scores"] for h in logs], "kl": [h["objective/kl"] for h in logs],
        "train_s": train_s, "steps": len(logs),
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }))


# --------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["tiny", "1b"], default="tiny")
    parser.add_argument("--steps", type=int, default=SETTINGS["steps"])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each trainer; the fastest is reported")
    parser.add_argument("--trl112-worker", nargs=3, metavar=("POLICY", "REWARD", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.preset == "1b":
        SETTINGS.update(max_new_tokens=128, lr=1e-5, lora_r=16, lora_alpha=32)
    SETTINGS["steps"] = args.steps
    if args.trl112_worker:
        run_trl112(*args.trl112_worker)
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(REPO))
    WORK.mkdir(parents=True, exist_ok=True)
    policy, reward_model = build_models(args.preset)

    # The machine may be shared: run both `--repeats` times, alternating, and keep each one's fastest
    # run for the speed figures (curves and KL are from the first run; the seeds make runs repeat).
    python = ensure_anchor_venv()
    anchors: list[dict] = []
    runs: list[dict] = []
    for _ in range(args.repeats):
        if python is not None:
            out = WORK / f"{args.preset}-trl112.json"
            cmd = [str(python), __file__, "--preset", args.preset, "--steps", str(args.steps),
                   "--trl112-worker", str(policy), str(reward_model), str(out)]
            print("running TRL 1.12 PPOTrainer ...", flush=True)
            if subprocess.run(cmd).returncode == 0:
                anchors.append(json.loads(out.read_text()))
            else:
                print("TRL 1.12 run failed (see above)")
        print("running prefkit PPO ...", flush=True)
        runs.append(run_prefkit(policy, reward_model, args.preset))
    ours = {**runs[0], "train_s": min(r["train_s"] for r in runs)}
    anchor = {**anchors[0], "train_s": min(a["train_s"] for a in anchors)} if anchors else None
    common = {"start": common_score(policy, None, reward_model),
              "prefkit": common_score(policy, WORK / f"{args.preset}-prefkit" / "model", reward_model)}
    if anchor:
        common["TRL 1.12"] = common_score(policy, WORK / f"{args.preset}-trl112-policy", reward_model)

    print(f"\nPPO anchor, preset {args.preset}: {SETTINGS}")
    print(f"{'rollout':>7}  {'TRL 1.12 reward':>15}  {'prefkit reward':>14}  {'TRL 1.12 KL':>11}  {'prefkit KL':>10}")
    for i in range(max(len(ours["rewards"]), len(anchor["rewards"]) if anchor else 0)):
        a = f"{anchor['rewards'][i]:15.3f}" if anchor and i < len(anchor["rewards"]) else f"{'-':>15}"
        ak = f"{anchor['kl'][i]:11.3f}" if anchor and i < len(anchor["kl"]) else f"{'-':>11}"
        o = f"{ours['rewards'][i]:14.3f}" if i < len(ours["rewards"]) else f"{'-':>14}"
        ok = f"{ours['kl'][i]:10.3f}" if i < len(ours["kl"]) else f"{'-':>10}"
        print(f"{i + 1:>7}  {a}  {o}  {ak}  {ok}")
    ours_rate = ours["steps"] / ours["train_s"]
    print(f"\nfastest of {args.repeats} runs each:")
    print(f"prefkit : {ours_rate:.3f} rollouts/s ({ours['train_s']:.1f} s for {ours['steps']})"
          + (f", peak GPU {ours['peak_gpu_memory_gb']:.2f} GiB" if ours["peak_gpu_memory_gb"] else ""))
    if anchor:
        rate = anchor["steps"] / anchor["train_s"]
        print(f"TRL 1.12: {rate:.3f} rollouts/s ({anchor['train_s']:.1f} s for {anchor['steps']})"
              + (f", peak GPU {anchor['peak_gpu_memory_gb']:.2f} GiB" if anchor["peak_gpu_memory_gb"] else ""))
        print(f"prefkit / TRL 1.12 speed: {ours_rate / rate:.2f}x")
    print("\nsame yardstick (64 answers from the start / each final policy, scored by prefkit's scorer):")
    print("  " + ", ".join(f"{k} {v:.3f}" for k, v in common.items()))


if __name__ == "__main__":
    main()
