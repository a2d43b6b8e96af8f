"""prefkit's reward and DPO stages vs a plain TRL script with identical settings, in one run.

On a GPU: a random-weight Llama-3.2-1B-sized model (bf16 weights, QLoRA 4-bit NF4 base, LoRA
r=16 on all linear layers, gradient checkpointing), synthetic preference pairs whose responses are
about `--tokens` tokens each (measured with the tokenizer; `max_length` is set from the longest
conversation, and a run that would keep 0 rows stops with an error). For each stage plain TRL and
prefkit run alternately, `--repeats` times each (plain first on even repeats, prefkit first on odd);
the script prints the median tokens/s (non-padding tokens seen / train runtime) and the largest peak
GPU memory of each, and the ratios prefkit / plain (target: tokens/s within 3%).

    python bench/train_gpu.py                    # GPU: the 1B-sized QLoRA comparison
    python bench/train_gpu.py --tiny --steps 3 --tokens 32 --repeats 1
        # anywhere: the tiny model, no QLoRA (checks the script)
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch


def build_model(out: Path, tiny: bool) -> Path:
    from prefkit.train.tiny_model import build_tiny_model, build_tokenizer

    if tiny:
        return build_tiny_model(out, family="llama3_2")
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer(vocab_size=512, max_length=4096, family="llama3_2")
    # Llama-3.2-1B's shapes (random weights: only speed and memory are measured)
    config = LlamaConfig(
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
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_data(out: Path, model_dir: Path, n: int, tokens: int) -> tuple[Path, int]:
    """`n` pairs with responses of about `tokens` tokens; returns the folder and the longest
    conversation (prompt + chosen, chat template applied) in tokens: the run's `max_length`."""
    from transformers import AutoTokenizer

    from prefkit.data.export import export_dataset
    from prefkit.data.schema import PreferenceRow, Strength

    tok = AutoTokenizer.from_pretrained(model_dir)
    vocab = [
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
    per_word = len(tok(" ".join(vocab * 4), add_special_tokens=False)["input_ids"]) / (len(vocab) * 4)
    words = max(1, round(tokens / per_word))
    rows = []
    for i in range(n):
        body = " ".join(vocab[(i * 7 + j) % len(vocab)] for j in range(words))
        rows.append(
            PreferenceRow(
                question=f"Câu hỏi số {i}: hãy viết về {vocab[i % len(vocab)]}.",
                chosen=body + " Cảm ơn bạn!",
                rejected=body,
                strength=list(Strength)[i % 4],
            )
        )
    longest = max(
        len(
            tok.apply_chat_template(
                [{"role": "user", "content": r.question}, {"role": "assistant", "content": r.chosen}],
                tokenize=True,
                return_dict=True,
            )["input_ids"]
        )
        for r in rows
    )
    export_dataset(rows, out, test_size=0.05, seed=0)
    return out, longest + 8


def settings(args: argparse.Namespace, max_length: int) -> dict:
    return {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "grad_accum": 1,
        "lr": 1e-4,
        "r": 16,
        "alpha": 32,
        "qlora": not args.tiny,
        "bf16": torch.cuda.is_available(),
        "checkpointing": not args.tiny,
        "max_length": max_length,
        "response_tokens": args.tokens,
    }


def _check_kept(stage: str, side: str, kept: int) -> None:
    if kept <= 0:
        raise SystemExit(f"{side} {stage}: 0 training rows kept (every pair is longer than max_length?)")


def plain_trl(stage: str, model_dir: Path, data_dir: Path, out: Path, s: dict) -> dict:
    """What a researcher would write with TRL, peft and transformers alone."""
    from datasets import load_from_disk
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ds = load_from_disk(str(data_dir))["train"]

    def conv(row):
        return {
            "prompt": [{"role": "user", "content": row["question"]}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
            "margin": row["margin"],
        }

    ds = ds.map(conv, remove_columns=ds.column_names)
    kw = {"dtype": torch.bfloat16 if s["bf16"] else torch.float32}
    if s["qlora"]:
        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_quant_storage=torch.bfloat16,
        )
        kw["device_map"] = {"": 0}
    common = dict(
        output_dir=str(out),
        max_steps=s["steps"],
        per_device_train_batch_size=s["batch_size"],
        gradient_accumulation_steps=s["grad_accum"],
        learning_rate=s["lr"],
        bf16=s["bf16"],
        gradient_checkpointing=s["checkpointing"],
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        include_num_input_tokens_seen="non_padding",
        max_length=s["max_length"],
        seed=42,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    if stage == "reward":
        from peft import prepare_model_for_kbit_training

        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, **kw)
        model.config.pad_token_id = tok.pad_token_id
        if s["qlora"]:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=s["checkpointing"])
        lora = LoraConfig(
            r=s["r"],
            lora_alpha=s["alpha"],
            lora_dropout=0.05,
            target_modules="all-linear",
            modules_to_save=["score"],
            task_type="SEQ_CLS",
        )
        trainer = RewardTrainer(
            model=model, args=RewardConfig(**common), train_dataset=ds, processing_class=tok, peft_config=lora
        )
    else:
        from peft import prepare_model_for_kbit_training

        model = AutoModelForCausalLM.from_pretrained(model_dir, **kw)
        if s["qlora"]:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=s["checkpointing"])
        lora = LoraConfig(
            r=s["r"], lora_alpha=s["alpha"], lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
        )
        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(**common, beta=0.1),
            train_dataset=ds.remove_columns("margin"),
            processing_class=tok,
            peft_config=lora,
        )
    _check_kept(stage, "plain TRL", len(trainer.train_dataset))
    result = trainer.train()
    _check_kept(stage, "plain TRL", trainer.state.num_input_tokens_seen)
    return {"tokens_per_s": trainer.state.num_input_tokens_seen / result.metrics["train_runtime"]}


def prefkit_run(stage: str, model_dir: Path, data_dir: Path, out: Path, s: dict) -> dict:
    from prefkit.core.config import load_config
    from prefkit.train import dpo, reward
    from prefkit.train.config import DpoConfig, RewardConfig

    sets = [
        f"model.path={model_dir}",
        f"data.source={data_dir}",
        "data.test_split=null",
        f"output_dir={out}",
        f"max_steps={s['steps']}",
        f"batch_size={s['batch_size']}",
        f"grad_accum={s['grad_accum']}",
        f"lr={s['lr']}",
        f"lora.r={s['r']}",
        f"lora.alpha={s['alpha']}",
        f"quant.qlora={s['qlora']}",
        f"bf16={s['bf16']}",
        f"gradient_checkpointing={s['checkpointing']}",
        f"data.max_length={s['max_length']}",
        "logging_steps=5",
        "save_steps=100000",
        "seed=42",
    ]
    module, cls = (reward, RewardConfig) if stage == "reward" else (dpo, DpoConfig)
    summary = module.run(load_config(cls, None, sets))
    _check_kept(stage, "prefkit", summary["tokens"])
    runtime = next(h["train_runtime"] for h in reversed(summary["log_history"]) if "train_runtime" in h)
    return {"tokens_per_s": summary["tokens"] / runtime}


def measure(fn, *a) -> dict:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    out = fn(*a)
    out["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return out


def _combine(runs: list[dict]) -> dict:
    """Median tokens/s and largest peak memory over the repeats (each repeat's figures kept)."""
    import statistics

    peaks = [r["peak_gb"] for r in runs if r["peak_gb"] is not None]
    return {
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
        "peak_gb": max(peaks) if peaks else None,
        "runs": runs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny model, no QLoRA (runs on a CPU)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--tokens", type=int, default=256, help="about this many tokens per response")
    p.add_argument("--repeats", type=int, default=2, help="runs of each side per stage, alternating which goes first")
    p.add_argument("--stages", default="reward,dpo")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run with --tiny to check the script on a CPU")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_model(tmp / "model", args.tiny)
        data_dir, max_length = build_data(tmp / "data", model_dir, n=args.steps * args.batch_size, tokens=args.tokens)
        s = settings(args, max_length)
        for stage in args.stages.split(","):
            runs: dict[str, list[dict]] = {"plain": [], "prefkit": []}
            for rep in range(args.repeats):
                order = [("plain", plain_trl), ("prefkit", prefkit_run)]
                for side, fn in order if rep % 2 == 0 else order[::-1]:
                    runs[side].append(measure(fn, stage, model_dir, data_dir, tmp / f"{side}-{stage}-{rep}", s))
            plain, ours = _combine(runs["plain"]), _combine(runs["prefkit"])
            results[stage] = {
                "plain_trl": plain,
                "prefkit": ours,
                "tokens_per_s_ratio": ours["tokens_per_s"] / plain["tokens_per_s"],
                "peak_memory_ratio": (ours["peak_gb"] / plain["peak_gb"]) if plain["peak_gb"] else None,
            }
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"device: {device}; settings: {json.dumps(s)}")
    print(
        f"{'stage':8} {'plain tok/s':>12} {'prefkit tok/s':>14} {'ratio':>6} "
        f"{'plain GiB':>10} {'prefkit GiB':>12} {'ratio':>6}"
    )
    for stage, r in results.items():
        pm, om = r["plain_trl"]["peak_gb"], r["prefkit"]["peak_gb"]
        print(
            f"{stage:8} {r['plain_trl']['tokens_per_s']:12.0f} {r['prefkit']['tokens_per_s']:14.0f} "
            f"{r['tokens_per_s_ratio']:6.3f} {pm if pm is not None else float('nan'):10.2f} "
            f"{om if om is not None else float('nan'):12.2f} {r['peak_memory_ratio'] or float('nan'):6.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"device": device, "settings": s, "results": results}, indent=2))


if __name__ == "__main__":
    main()
