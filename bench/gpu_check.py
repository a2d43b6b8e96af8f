"""GPU check of the training room at real shape, in one script (about 5-8 minutes on one H100/H200).

Builds a random-weight Llama-3.2-1B-shaped model (16 layers, hidden 2048, vocab 128,256) with the
Llama 3.2 chat template and a tokenizer trained here (nothing downloaded), synthetic preference
pairs (chosen = rejected with one word swapped for a marker, so equal lengths), and for QLoRA (NF4,
double quantisation, bf16 compute) and for bf16 LoRA runs the chain:

    SFT → reward model (from SFT, Llama 2 margins) → DPO (from SFT) → PPO and GRPO from the DPO
    policy, rewarded by the reward model → best-of-K with the HF engine (DPO policy, reward model)

and asserts that
  - every trained stage's loss moves (SFT's falls);
  - chaining keeps the previous stage: the DPO stage's model, loaded from the SFT adapter, gives the
    SFT model's log-probs (4-bit base + SFT adapter under QLoRA), and DPO's first implicit rewards
    are ~0 (its reference is the SFT model);
  - the saved outputs load back (adapters over a fresh base, the reward model through the scorer,
    a merged DPO save from a fresh full-precision base).
It prints wall time, tokens/s and peak GPU memory per stage and writes them all to one JSON.

    python bench/gpu_check.py                       # GPU: the 1B-shaped check, both modes
    python bench/gpu_check.py --modes qlora         # one mode
    python bench/gpu_check.py --cpu                 # anywhere: tiny model, LoRA only (checks the script)

Needs only torch, transformers, peft, trl, datasets, bitsandbytes (QLoRA) and this project.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

MARKER = "cảm ơn"
WORDS = [
    "phở",
    "cà",
    "phê",
    "Hà",
    "Nội",
    "mùa",
    "thu",
    "quang",
    "hợp",
    "bánh",
    "mì",
    "sông",
    "Hồng",
    "áo",
    "dài",
    "trà",
    "lúa",
    "tốt",
    "đẹp",
    "ngon",
    "xanh",
]


class CheckFailed(AssertionError):
    pass


def check(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)


def build_model(out: Path, cpu: bool) -> Path:
    from prefkit.train.tiny_model import build_tiny_model, build_tokenizer

    if cpu:
        return build_tiny_model(out, family="llama3_2", hidden_size=32, num_layers=1)
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer(vocab_size=512, max_length=4096, family="llama3_2")
    config = LlamaConfig(  # Llama-3.2-1B's shapes, random weights
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        rope_theta=500000.0,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    return out


def build_data(out: Path, n: int, words: int) -> tuple[Path, Path]:
    """Pairs whose chosen answer carries MARKER in place of one word (equal word counts), and a prompts file."""
    from prefkit.data.export import export_dataset
    from prefkit.data.schema import PreferenceRow, Strength

    rng = random.Random(0)
    rows = []
    for i in range(n):
        body = [rng.choice(WORDS) for _ in range(words)]
        pos = rng.randrange(words)
        chosen = body.copy()
        chosen[pos] = MARKER
        rows.append(
            PreferenceRow(
                question=f"Câu {i}: hãy viết về {WORDS[i % len(WORDS)]}.",
                chosen=" ".join(chosen),
                rejected=" ".join(body),
                strength=list(Strength)[i % 4],
            )
        )
    export_dataset(rows, out / "pairs", test_size=0.1, seed=0, margin="small")
    prompts = out / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"question": r.question}, ensure_ascii=False) + "\n" for r in rows[:64]), encoding="utf-8"
    )
    return out / "pairs", prompts


def _logprobs(model: Any, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids.to(model.device)).logits[:, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None].to(logits.device)).squeeze(-1).cpu()


def _free() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Stages:
    """One mode's chain; every stage's figures go into `self.figures`."""

    def __init__(
        self, mode: str, model_dir: Path, pairs: Path, prompts: Path, out: Path, steps: int, cpu: bool
    ) -> None:
        self.mode, self.model_dir, self.pairs, self.prompts, self.out, self.steps, self.cpu = (
            mode,
            model_dir,
            pairs,
            prompts,
            out,
            steps,
            cpu,
        )
        self.figures: dict[str, dict[str, Any]] = {}

    def common(self) -> list[str]:
        sets = [
            f"model.path={self.model_dir}",
            "seed=0",
            "logging_steps=1",
            "save_steps=100000",
            "report_to=none",
            "lora.r=16",
            "lora.alpha=32",
            "lora.dropout=0.0",
            "warmup=0",
        ]
        if self.cpu:
            return sets + ["model.dtype=float32", "bf16=false", "quant.qlora=false"]
        sets += ["model.dtype=bfloat16", "bf16=true", "gradient_checkpointing=true"]
        return sets + (["quant.qlora=true"] if self.mode == "qlora" else ["quant.qlora=false"])

    def timed(self, stage: str, fn: Any, *a: Any, **kw: Any) -> dict[str, Any]:
        _free()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        summary = fn(*a, **kw)
        wall = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        self.figures[stage] = {
            "wall_s": round(wall, 2),
            "tokens_per_s": summary.get("tokens_per_s"),
            "peak_gpu_memory_gb": peak,
            "steps": summary.get("steps"),
        }
        print(
            f"[{self.mode}] {stage:10} {wall:7.1f} s  tokens/s {summary.get('tokens_per_s') or float('nan'):9.0f}  "
            f"peak {peak if peak is not None else float('nan'):6.2f} GiB",
            flush=True,
        )
        return summary

    def run(self) -> dict[str, dict[str, Any]]:
        from prefkit.core.config import load_config
        from prefkit.train import dpo, reward, sft
        from prefkit.train.config import DpoConfig, RewardConfig, SftConfig

        c, data = self.common(), [f"data.source={self.pairs}", "data.max_length=256", "batch_size=8"]
        s = self.timed(
            "sft",
            sft.run,
            load_config(
                SftConfig,
                None,
                [
                    *c,
                    *data,
                    f"output_dir={self.out / 'sft'}",
                    f"max_steps={self.steps}",
                    f"lr={1e-2 if self.cpu else 1e-3}",
                ],
            ),
        )
        losses = s["losses"]
        check(
            losses["final_train_loss"] < losses["first_train_loss"],
            f"sft loss did not fall: {losses['first_train_loss']} -> {losses['final_train_loss']}",
        )
        sft_dir = s["model_dir"]

        dpo_cfg = load_config(
            DpoConfig,
            None,
            [
                *c,
                *data,
                f"output_dir={self.out / 'dpo'}",
                f"model.adapter={sft_dir}",
                f"max_steps={self.steps}",
                "lr=5e-4",
                "beta=0.1",
            ],
        )
        self.figures["chain_logprobs_max_abs_diff"] = self.check_chain(dpo_cfg, sft_dir)

        r = self.timed(
            "reward",
            reward.run,
            load_config(
                RewardConfig,
                None,
                [
                    *c,
                    *data,
                    f"output_dir={self.out / 'reward'}",
                    f"model.adapter={sft_dir}",
                    f"max_steps={self.steps}",
                    "lr=5e-4",
                    "margin=small",
                ],
            ),
        )
        rl = r["losses"]
        check(abs(rl["final_train_loss"] - rl["first_train_loss"]) > 1e-4, "reward loss did not move")
        self.figures["reward"]["test_accuracy"] = r["metrics"].get("test_accuracy")
        self.figures["reward"]["test_accuracy_by_strength"] = r["metrics"].get("test_accuracy_by_strength")
        rm_dir = r["model_dir"]

        d = self.timed("dpo", dpo.run, dpo_cfg)
        first = d["metrics"]["first"]
        check(
            abs(first["rewards/chosen"]) < 0.05 and abs(first["rewards/rejected"]) < 0.05,
            f"DPO's first implicit rewards are not ~0 (reference is not the SFT model): {first}",
        )
        check(abs(d["losses"]["final_train_loss"] - d["losses"]["first_train_loss"]) > 1e-4, "dpo loss did not move")
        self.figures["dpo"]["first_rewards"] = first
        self.figures["dpo"]["eval_rewards/accuracies"] = d["metrics"].get("eval_rewards/accuracies")
        dpo_dir = d["model_dir"]

        self.check_load_back(sft_dir, dpo_dir, rm_dir)
        self.online(c, dpo_dir, rm_dir)
        return self.figures

    def check_chain(self, dpo_cfg: Any, sft_dir: str) -> float:
        """The DPO stage's starting model (SFT adapter continued) = base (as loaded) + SFT adapter."""
        from peft import PeftModel

        from prefkit.train.models import load_policy

        ids = torch.randint(10, 400, (2, 48), generator=torch.Generator().manual_seed(0))
        policy = load_policy(dpo_cfg)
        if not self.cpu and self.mode != "qlora":
            policy.to("cuda")
        got = _logprobs(policy, ids)
        del policy
        _free()
        bare = load_policy(dataclasses.replace(dpo_cfg, model=dataclasses.replace(dpo_cfg.model, adapter=None)))
        want_model = PeftModel.from_pretrained(bare, sft_dir)
        if not self.cpu and self.mode != "qlora":
            want_model.to("cuda")
        want = _logprobs(want_model, ids)
        del want_model, bare
        _free()
        diff = float((got - want).abs().max())
        tol = 1e-4 if self.cpu else 5e-2  # bf16 / 4-bit kernels: same weights, a few ulps apart
        check(diff < tol, f"the stage started from the SFT adapter is not the SFT model: max |Δ log p| = {diff}")
        print(f"[{self.mode}] chain: max |Δ log p| between the DPO start and the SFT model = {diff:.2e}", flush=True)
        return diff

    def check_load_back(self, sft_dir: str, dpo_dir: str, rm_dir: str) -> None:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        from prefkit.core.config import load_config
        from prefkit.train import dpo
        from prefkit.train.config import DpoConfig
        from prefkit.train.reward import load_trained_reward_model, score_conversations

        dtype = torch.float32 if self.cpu else torch.bfloat16
        for folder in (sft_dir, dpo_dir):
            cfg = json.loads((Path(folder) / "adapter_config.json").read_text())
            check(
                Path(cfg["base_model_name_or_path"]) == self.model_dir, f"{folder}: not an adapter over the bare base"
            )
            m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=dtype), folder)
            check(
                all(torch.isfinite(p).all() for n, p in m.named_parameters() if "lora_" in n), f"{folder}: bad weights"
            )
            del m
        model, tok = load_trained_reward_model(rm_dir)
        conv = [[{"role": "user", "content": "Câu 1?"}, {"role": "assistant", "content": f"phở {MARKER}"}]]
        check(all(math.isfinite(x) for x in score_conversations(model, tok, conv)), "reward model scores not finite")
        del model
        _free()
        # a merged save of a (QLoRA) DPO run: made from a fresh full-precision base, loads as a plain model
        merged = dpo.run(
            load_config(
                DpoConfig,
                None,
                [
                    *self.common(),
                    f"data.source={self.pairs}",
                    "data.max_length=256",
                    "batch_size=8",
                    f"output_dir={self.out / 'dpo-merged'}",
                    f"model.adapter={sft_dir}",
                    "max_steps=2",
                    "save=merged",
                ],
            )
        )
        m = AutoModelForCausalLM.from_pretrained(merged["model_dir"])
        check(not (Path(merged["model_dir"]) / "adapter_config.json").exists(), "merged save wrote an adapter")
        check(
            all(p.dtype in (torch.float32, torch.bfloat16) for p in m.parameters()), "merged save is not full precision"
        )
        del m
        _free()
        print(f"[{self.mode}] saved outputs load back (adapters, reward model, merged DPO)", flush=True)

    def online(self, c: list[str], dpo_dir: str, rm_dir: str) -> None:
        from prefkit.core.config import load_config
        from prefkit.train import best_of_k, online, ppo
        from prefkit.train.best_of_k import BestOfKConfig
        from prefkit.train.online import GrpoConfig
        from prefkit.train.ppo import PpoConfig

        prompts = [
            f"data.source={self.prompts}",
            "data.test_split=null",
            f"model.adapter={dpo_dir}",
            f"reward.model={rm_dir}",
        ]
        new_tokens, rollouts = (8, 2) if self.cpu else (48, 4)
        p = self.timed(
            "ppo",
            ppo.run,
            load_config(
                PpoConfig,
                None,
                [
                    *c,
                    *prompts,
                    f"output_dir={self.out / 'ppo'}",
                    f"max_steps={rollouts}",
                    "batch_size=8",
                    "mini_batch_size=4",
                    "ppo_epochs=2",
                    f"max_new_tokens={new_tokens}",
                    "lr=1e-4",
                ],
            ),
        )
        check(
            p["steps"] == rollouts and all(math.isfinite(h["policy_loss"]) for h in p["log_history"]),
            "ppo did not run its rollouts with finite losses",
        )
        g = self.timed(
            "grpo",
            online.run_grpo,
            load_config(
                GrpoConfig,
                None,
                [
                    *c,
                    *prompts,
                    f"output_dir={self.out / 'grpo'}",
                    f"max_steps={rollouts}",
                    "batch_size=8",
                    "num_generations=4",
                    f"max_new_tokens={new_tokens}",
                    "lr=1e-4",
                ],
            ),
        )
        check(g["steps"] == rollouts, "grpo did not run its steps")
        b = self.timed(
            "best_of_k",
            best_of_k.run,
            load_config(
                BestOfKConfig,
                None,
                [
                    f"model.path={self.model_dir}",
                    f"model.adapter={dpo_dir}",
                    f"reward.model={rm_dir}",
                    f"data.source={self.prompts}",
                    f"data.max_rows={8 if self.cpu else 16}",
                    "k=4",
                    f"max_new_tokens={new_tokens}",
                    f"output_dir={self.out / 'bok'}",
                    "engine=hf",
                    f"model.dtype={'float32' if self.cpu else 'bfloat16'}",
                ],
            ),
        )
        check(
            b["metrics"]["samples"] == 4 * (8 if self.cpu else 16)
            and b["metrics"]["mean_best_reward"] >= b["metrics"]["mean_reward"],
            "best-of-K did not sample and keep the best",
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="tiny model, LoRA only, on the CPU (checks the script)")
    ap.add_argument("--modes", default="qlora,lora", help="qlora, lora or both (the CPU path runs lora only)")
    ap.add_argument("--steps", type=int, default=None, help="steps per trained stage (default 30 GPU, 6 CPU)")
    ap.add_argument("--json", type=Path, default=Path("gpu_check.json"), help="where to write the figures")
    args = ap.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run with --cpu to check the script on a CPU")
    modes = ["lora"] if args.cpu else args.modes.split(",")
    steps = args.steps or (6 if args.cpu else 30)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.cpu else "cpu",
        "steps": steps,
        "modes": {},
        "ok": False,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        model_dir = build_model(tmp / "model", args.cpu)
        pairs, prompts = build_data(tmp / "data", n=max(96, steps * 8 + 16), words=24 if args.cpu else 96)
        report["build_s"] = round(time.perf_counter() - t0, 1)
        try:
            for mode in modes:
                report["modes"][mode] = Stages(mode, model_dir, pairs, prompts, tmp / mode, steps, args.cpu).run()
            report["ok"] = True
        except CheckFailed as e:
            report["failed"] = str(e)
        finally:
            report["total_s"] = round(time.perf_counter() - started, 1)
            args.json.write_text(json.dumps(report, indent=2, default=str))
    print(
        json.dumps(
            {
                m: {
                    s: {k: v for k, v in f.items() if k in ("wall_s", "tokens_per_s", "peak_gpu_memory_gb")}
                    for s, f in st.items()
                    if isinstance(f, dict)
                }
                for m, st in report["modes"].items()
            },
            indent=1,
        )
    )
    print(f"total {report['total_s']} s; figures in {args.json}")
    if not report["ok"]:
        sys.exit(f"CHECK FAILED: {report['failed']}")


if __name__ == "__main__":
    main()
