"""PPO anchor: prefkit's PPO against TRL 1.12's experimental `PPOTrainer`, like for like.

TRL 1.13+ ships no PPO, so TRL 1.12 runs in its own virtual environment, `bench/.venv-trl112`,
built on first run: a venv whose only own package is `trl==1.12.*` (installed `--no-deps`), with the
main venv's site-packages on its path (a `.pth` file), so both sides run the same torch,
transformers, peft and accelerate and differ only in the trainer.

Like for like: both trainers get the same tiny Llama, the same 16 prompts rendered with the same
chat template, the same LoRA on the policy, batch sizes, PPO epochs, KL coefficient (k1 estimator),
clipping and learning rate, and the *same scorer on the same text*: TRL 1.12's `get_reward` on the
reward model is replaced, in the TRL worker, by prefkit's `RewardModelScorer` called on the decoded
prompt and answer, exactly as prefkit's PPO calls it (TRL's own `get_reward` would score the raw
token ids, a different input). Each trainer runs in a fresh subprocess, `--repeats` times,
alternating, so both see the same machine load; figures are medians over repeats. Reported:
rollouts/s (and the ratio), the training reward gain (mean of the last 3 rollouts minus the first 3,
same scorer), the per-answer KL each trainer logs (same estimator), the peak memory of the worker
process (max RSS on the CPU; peak allocated on a GPU), and one yardstick outside both trainers:
answers sampled from the start policy and from each final policy with the same seeds, scored by the
same scorer, with their KL to the start policy computed the same way.

Known difference left in: TRL 1.12 trains a full separate value model (prefkit: a second LoRA
adapter and a linear head on the shared base), which costs it memory and time.

    .venv/bin/python bench/ppo_anchor.py                   # tiny model, CPU
    .venv/bin/python bench/ppo_anchor.py --preset 1b       # random-weight ~1B Llama config, bf16 (GPU)

With `--preset 1b` the reward model is the same config with a random score head (speed and
memory only: its rewards mean nothing).
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

PROMPTS = [
    "Xin chào",
    "Viết một câu về phở",
    "Tính tổng 1 đến 10",
    "Hà Nội mùa thu",
    "Giải thích quang hợp",
    "Kể về sông Hồng",
    "Mô tả áo dài",
    "Nói về trà",
    "Cảm ơn bạn",
    "Viết về mùa xuân",
    "Bánh mì là gì?",
    "Kể một câu chuyện ngắn",
    "Lúa gạo ở Việt Nam",
    "Cà phê sữa đá",
    "Tại sao trời xanh?",
    "Chào buổi sáng",
]
MARKER = "Cảm ơn bạn rất nhiều!"

# The shared PPO settings: 16 prompts per rollout, 2 mini-batches of 8, 4 PPO epochs.
SETTINGS = {
    "steps": 20,
    "batch_size": 16,
    "mini_batch_size": 8,
    "ppo_epochs": 4,
    "lr": 3e-3,
    "kl_coef": 0.05,
    "cliprange": 0.2,
    "cliprange_value": 0.2,
    "vf_coef": 0.1,
    "gamma": 1.0,
    "lam": 0.95,
    "max_new_tokens": 16,
    "temperature": 1.0,
    "lora_r": 8,
    "lora_alpha": 16,
    "seed": 0,
}
LORA_TARGETS = ["q_proj", "v_proj", "up_proj", "down_proj", "lm_head"]


# ------------------------------------------------------------------------------ setup (main venv)


def ensure_anchor_venv() -> Path | None:
    """`bench/.venv-trl112`: trl 1.12 only, over the main venv's packages; None (and why) when it cannot be made."""
    import site
    import sysconfig

    python = ANCHOR_VENV / "bin" / "python"
    if python.exists():
        return python
    print("$", sys.executable, "-m venv", ANCHOR_VENV, flush=True)
    if subprocess.run([sys.executable, "-m", "venv", str(ANCHOR_VENV)]).returncode != 0:
        print("could not create the TRL 1.12 venv; running prefkit only")
        return None
    purelib = Path(sysconfig.get_paths(vars={"base": str(ANCHOR_VENV), "platbase": str(ANCHOR_VENV)})["purelib"])
    purelib.mkdir(parents=True, exist_ok=True)
    (purelib / "main-venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    cmd = [str(python), "-m", "pip", "install", "-q", "--no-deps", "trl==1.12.*"]
    print("$", " ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        print(f"could not install TRL 1.12 (step failed: {' '.join(cmd)}); running prefkit only")
        return None
    return python


def build_models(preset: str) -> tuple[Path, Path]:
    """The policy model folder and a merged reward model folder for the preset."""
    from prefkit.train.tiny_model import build_tiny_model

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

    from prefkit.train.tiny_model import build_tokenizer

    tok = build_tokenizer(vocab_size=512)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)


def train_reward(policy: Path, out: Path) -> None:
    """prefkit's reward stage on marker pairs (chosen answers end with MARKER), saved merged."""
    import random

    from prefkit.core.config import load_config
    from prefkit.data.export import export_dataset
    from prefkit.data.schema import PreferenceRow, Strength
    from prefkit.train import reward
    from prefkit.train.config import RewardConfig

    rng = random.Random(0)
    rows = []
    for i in range(160):
        body = f"{PROMPTS[i % len(PROMPTS)]} là một chủ đề hay. " + " ".join(
            rng.sample(["tốt", "đẹp", "ngon", "xanh", "lớn"], 3)
        )
        rows.append(
            PreferenceRow(
                question=f"{PROMPTS[i % len(PROMPTS)]} (câu {i})",
                chosen=f"{body} {MARKER}",
                rejected=body,
                strength=list(Strength)[i % 4],
            )
        )
    data = out.with_name(f"{out.name}-data")  # beside the run: an output_dir never holds its inputs
    export_dataset(rows, data, test_size=0.2, seed=0)
    cfg = load_config(
        RewardConfig,
        None,
        [
            f"model.path={policy}",
            f"data.source={data}",
            f"output_dir={out}",
            "max_steps=30",
            "lr=3e-3",
            "batch_size=8",
            "save_steps=1000",
            "lora.r=8",
            "lora.dropout=0",
            "save=merged",
        ],
    )
    reward.run(cfg)


# ---------------------------------------------------------------------------------- the workers


def _peak_memory() -> dict:
    import resource

    import torch

    return {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }


def run_prefkit(policy: str, reward_model: str, out: str) -> None:
    """Runs in a fresh process on the main venv: prefkit's PPO, scored by prefkit's RewardModelScorer."""
    import torch

    from prefkit.data.schema import Prompt
    from prefkit.train.config import LoraSection, ModelConfig
    from prefkit.train.ppo import PpoConfig, PpoTrainer
    from prefkit.train.scoring import RewardSection

    s = SETTINGS
    cfg = PpoConfig(
        output_dir=Path(out).with_suffix(""),
        model=ModelConfig(path=policy),
        lora=LoraSection(r=s["lora_r"], alpha=s["lora_alpha"], dropout=0.0, target_modules=LORA_TARGETS),
        reward=RewardSection(model=reward_model),
        batch_size=s["batch_size"],
        mini_batch_size=s["mini_batch_size"],
        ppo_epochs=s["ppo_epochs"],
        max_steps=s["steps"],
        lr=s["lr"],
        lr_scheduler="constant",
        kl_coef=s["kl_coef"],
        cliprange=s["cliprange"],
        cliprange_value=s["cliprange_value"],
        vf_coef=s["vf_coef"],
        gamma=s["gamma"],
        lam=s["lam"],
        max_new_tokens=s["max_new_tokens"],
        temperature=s["temperature"],
        save_steps=0,
        seed=s["seed"],
        logging_steps=1000,
    )
    trainer = PpoTrainer(cfg, prompts=[Prompt(p) for p in PROMPTS])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    summary = trainer.train()
    hist = summary["log_history"]
    Path(out).write_text(
        json.dumps(
            {
                "rewards": [h["reward"] for h in hist],
                "kl": [h["kl"] for h in hist],
                "train_s": summary["durations"]["train_s"],
                "steps": summary["steps"],
                "policy": str(Path(summary["model_dir"])),
                **_peak_memory(),
            }
        )
    )


def run_trl112(policy: str, reward_model: str, out: str) -> None:
    """Runs in bench/.venv-trl112: TRL 1.12's PPOTrainer, its reward call replaced by prefkit's scorer
    on the decoded prompt and answer (the text prefkit's PPO scores)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as trl_ppo

    from prefkit.data.schema import Prompt
    from prefkit.train.scoring import RewardModelScorer

    s = SETTINGS
    torch.manual_seed(s["seed"])
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    tok = AutoTokenizer.from_pretrained(policy, padding_side="left")
    prompts = [Prompt(p) for p in PROMPTS]
    texts = [
        tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in PROMPTS
    ]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    by_ids = {tuple(i): p for i, p in zip(ids, prompts, strict=True)}
    ds = Dataset.from_dict({"input_ids": ids})
    scorer = RewardModelScorer(reward_model)  # prefkit's scorer, as prefkit's PPO loads it
    original_get_reward = trl_ppo.get_reward

    def shared_get_reward(model, query_responses, pad_token_id, context_length):
        if model is not scorer.model and getattr(model, "module", None) is not scorer.model:
            return original_get_reward(model, query_responses, pad_token_id, context_length)  # the value model
        queries = [tuple(t for t in q.tolist() if t != pad_token_id) for q in query_responses[:, :context_length]]
        answers = tok.batch_decode(query_responses[:, context_length:], skip_special_tokens=True)
        scores = torch.tensor(
            scorer([by_ids[q] for q in queries], answers), dtype=torch.float32, device=query_responses.device
        )
        lengths = trl_ppo.first_true_indices(query_responses[:, context_length:] == pad_token_id) - 1 + context_length
        return None, scores, lengths

    trl_ppo.get_reward = shared_get_reward
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=dtype)
    value = AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1, dtype=dtype)
    value.config.pad_token_id = tok.pad_token_id
    args = PPOConfig(
        # one optimizer step per mini-batch, as prefkit: the whole rollout batch is one device batch
        # split into mini-batches (gradient accumulation here would halve TRL's optimizer steps)
        output_dir=str(Path(out).parent / "trl112-out"),
        per_device_train_batch_size=s["batch_size"],
        gradient_accumulation_steps=1,
        num_mini_batches=s["batch_size"] // s["mini_batch_size"],
        num_ppo_epochs=s["ppo_epochs"],
        total_episodes=s["steps"] * s["batch_size"],
        learning_rate=s["lr"],
        lr_scheduler_type="constant",
        kl_coef=s["kl_coef"],
        kl_estimator="k1",
        cliprange=s["cliprange"],
        cliprange_value=s["cliprange_value"],
        vf_coef=s["vf_coef"],
        gamma=s["gamma"],
        lam=s["lam"],
        response_length=s["max_new_tokens"],
        temperature=s["temperature"],
        stop_token="eos",
        missing_eos_penalty=None,
        whiten_rewards=False,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        num_sample_generations=0,
        seed=s["seed"],
        bf16=cuda,
        use_cpu=not cuda,
        local_rollout_forward_batch_size=s["batch_size"],
    )
    lora = LoraConfig(
        r=s["lora_r"], lora_alpha=s["lora_alpha"], lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
    )
    trainer = PPOTrainer(
        args=args,
        processing_class=tok,
        model=model,
        ref_model=None,
        reward_model=scorer.model,
        train_dataset=ds,
        value_model=value,
        peft_config=lora,
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    policy_dir = str(Path(out).with_suffix("")) + "-policy"
    # the LoRA policy, for the yardstick (TRL 1.12's save_model trips over transformers 5.20's Trainer,
    # whose __init__ it does not run: save the policy's adapter directly)
    trainer.accelerator.unwrap_model(trainer.model).policy.save_pretrained(policy_dir)
    logs = [h for h in trainer.state.log_history if "objective/scores" in h]
    Path(out).write_text(
        json.dumps(
            {
                "rewards": [h["objective/scores"] for h in logs],
                "kl": [h["objective/kl"] for h in logs],
                "train_s": train_s,
                "steps": len(logs),
                "policy": policy_dir,
                **_peak_memory(),
            }
        )
    )


# -------------------------------------------------------------------------------- the yardstick


def yardstick(policy: Path, adapter: str | None, reward_model: Path, samples: int = 4) -> dict:
    """`samples` answers per prompt from base (+ adapter), seeded identically for every policy:
    mean score by prefkit's scorer and mean per-answer KL to the start policy (Σ log π − log π_start)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefkit.data.schema import Prompt
    from prefkit.train.scoring import RewardModelScorer

    tok = AutoTokenizer.from_pretrained(policy, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    texts = [
        tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in PROMPTS
    ]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(1000)
    with torch.no_grad():
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=1.0,
            max_new_tokens=SETTINGS["max_new_tokens"],
            num_return_sequences=samples,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            top_k=None,
            top_p=1.0,
        )
        P = enc["input_ids"].shape[1]
        response = out[:, P:]
        is_eos = response == tok.eos_token_id
        first = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full((len(response),), response.shape[1]))
        mask = (torch.arange(response.shape[1])[None] <= first[:, None]).float()
        attn = torch.cat([enc["attention_mask"].repeat_interleave(samples, 0), mask.long()], 1)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)

        def logprobs() -> torch.Tensor:
            logits = model(input_ids=out, attention_mask=attn, position_ids=pos).logits[:, P - 1 : -1].float()
            return torch.log_softmax(logits, -1).gather(-1, response[..., None]).squeeze(-1) * mask

        kl = 0.0
        if adapter:
            lp = logprobs()
            with model.disable_adapter():
                kl = (lp - logprobs()).sum(1).mean().item()
    answers = tok.batch_decode(torch.where(mask.bool(), response, tok.pad_token_id), skip_special_tokens=True)
    prompts = [Prompt(p) for p in PROMPTS for _ in range(samples)]
    scores = RewardModelScorer(reward_model)(prompts, answers)
    return {"score": sum(scores) / len(scores), "kl": kl}


# --------------------------------------------------------------------------------------- main


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def _gain(rewards: list[float]) -> float:
    return sum(rewards[-3:]) / 3 - sum(rewards[:3]) / 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["tiny", "1b"], default="tiny")
    parser.add_argument("--steps", type=int, default=SETTINGS["steps"])
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each trainer; medians reported")
    parser.add_argument("--worker", nargs=4, metavar=("SIDE", "POLICY", "REWARD", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.preset == "1b":
        SETTINGS.update(max_new_tokens=128, lr=1e-5, lora_r=16, lora_alpha=32)
    SETTINGS["steps"] = args.steps
    sys.path.insert(0, str(REPO))
    if args.worker:
        side, *rest = args.worker
        (run_trl112 if side == "trl112" else run_prefkit)(*rest)
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    WORK.mkdir(parents=True, exist_ok=True)
    policy, reward_model = build_models(args.preset)

    anchor_python = ensure_anchor_venv()
    sides = {"prefkit": sys.executable, **({"TRL 1.12": str(anchor_python)} if anchor_python else {})}
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for rep in range(args.repeats):
        order = list(sides) if rep % 2 == 0 else list(reversed(sides))  # alternate who runs first
        for name in order:
            out = WORK / f"{args.preset}-{'trl112' if name == 'TRL 1.12' else 'prefkit'}-{rep}.json"
            cmd = [
                sides[name],
                __file__,
                "--preset",
                args.preset,
                "--steps",
                str(args.steps),
                "--worker",
                "trl112" if name == "TRL 1.12" else "prefkit",
                str(policy),
                str(reward_model),
                str(out),
            ]
            print(f"repeat {rep + 1}/{args.repeats}: {name} ...", flush=True)
            if subprocess.run(cmd, env={**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"}).returncode == 0:
                runs[name].append(json.loads(out.read_text()))
            else:
                print(f"{name} run failed (see above)")
    runs = {k: v for k, v in runs.items() if v}

    print(f"\nPPO anchor, preset {args.preset}, {args.repeats} alternating runs each: {SETTINGS}")
    print("training reward (prefkit's scorer on the same text for both) and per-answer KL, first run of each:")
    names = list(runs)
    print(f"{'rollout':>7}  " + "  ".join(f"{n + ' reward':>16}  {n + ' KL':>12}" for n in names))
    for i in range(max(len(r[0]["rewards"]) for r in runs.values())):
        cells = []
        for n in names:
            r = runs[n][0]
            cells.append(
                f"{r['rewards'][i]:16.3f}  {r['kl'][i]:12.3f}" if i < len(r["rewards"]) else f"{'-':>16}  {'-':>12}"
            )
        print(f"{i + 1:>7}  " + "  ".join(cells))
    print("\nmedian over runs (range):")
    summary = {}
    for n, rs in runs.items():
        rates = [r["steps"] / r["train_s"] for r in rs]
        gains = [_gain(r["rewards"]) for r in rs]
        kls = [sum(r["kl"][-3:]) / 3 for r in rs]
        mem = [r["peak_gpu_memory_gb"] if r["peak_gpu_memory_gb"] is not None else r["peak_rss_mb"] / 1024 for r in rs]
        unit = "GiB GPU" if rs[0]["peak_gpu_memory_gb"] is not None else "GiB RSS"
        summary[n] = _median(rates)
        print(
            f"  {n:<9} {_median(rates):.3f} rollouts/s ({min(rates):.3f}–{max(rates):.3f}); reward gain "
            f"{_median(gains):+.3f} ({min(gains):+.3f}–{max(gains):+.3f}); KL at the end {_median(kls):.2f} "
            f"({min(kls):.2f}–{max(kls):.2f}); peak memory {_median(mem):.2f} {unit}"
        )
    if len(summary) == 2:
        print(f"  prefkit / TRL 1.12 speed: {summary['prefkit'] / summary['TRL 1.12']:.2f}x (medians)")
    print("\nyardstick (64 answers, same seeds, prefkit's scorer; KL to the start policy), first run's policy of each:")
    start = yardstick(policy, None, reward_model)
    print(f"  start     score {start['score']:+.3f}")
    for n, rs in runs.items():
        y = yardstick(policy, rs[0]["policy"], reward_model)
        print(f"  {n:<9} score {y['score']:+.3f} (gain {y['score'] - start['score']:+.3f}), KL {y['kl']:.2f}")


if __name__ == "__main__":
    main()
