"""SFT: supervised fine-tuning on question → chosen, with the loss on the assistant turn only.

This is what the DPO recipe runs before DPO. Rows become chat `messages`, so the model's own
chat template is applied; `assistant_only_loss` masks everything but the answer (a template
without `{% generation %}` markers, as Llama 3.x / Qwen / Gemma ship, is trained with a variant
that renders the same text: `prefkit.train.chat_templates`, recorded in the summary). For
summarisation-style sets, `rouge: true` generates answers for test questions and reports
ROUGE-1/2/L F1 against `chosen` (rouge-score: `rouge_tokenizer: standard` is its own tokenizer with
Porter stemming, the usual TL;DR figure; `whitespace` keeps non-ASCII words, e.g. Vietnamese).
"""

from __future__ import annotations

import time
from typing import Any

from prefkit.train.config import SftConfig
from prefkit.train.datasets import load_split, sft_dataset
from prefkit.train.models import load_policy, load_tokenizer, resolve_resume, trainer_kwargs, trainer_peft_config
from prefkit.train.output_dir import claim_output_dir
from prefkit.train.summary import ThroughputCallback, finish_run

CONFIG = SftConfig


def build_trainer(cfg: SftConfig) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The SFTTrainer of a run (data, tokenizer with its training chat template, model), ready to train.

    Returns (trainer, test split as read, throughput callback, what to record: template, system prompt).
    """
    from trl import SFTConfig, SFTTrainer

    from prefkit.train.chat_templates import check_multi_turn, training_chat_template

    train_ds = sft_dataset(load_split(cfg.data, cfg.data.split), cfg.data)
    test_raw = load_split(cfg.data, cfg.data.test_split) if cfg.data.test_split else None
    eval_ds = sft_dataset(test_raw, cfg.data) if test_raw is not None else None
    tokenizer = load_tokenizer(cfg)  # after the data: a bad dataset fails before any model loads
    record: dict[str, Any] = {"system_prompt": cfg.data.system_prompt}
    if cfg.assistant_only_loss:
        choice = training_chat_template(tokenizer)
        check_multi_turn(choice, list(train_ds["messages"]), cfg.data.split)
        if eval_ds is not None and cfg.data.test_split:
            check_multi_turn(choice, list(eval_ds["messages"]), cfg.data.test_split)
        record["chat_template"] = choice.summary()
        if choice.template is not None:
            record["_model_template"] = tokenizer.chat_template  # restored before saving
            tokenizer.chat_template = choice.template
    args = SFTConfig(
        **trainer_kwargs(cfg),
        max_length=cfg.data.max_length,
        assistant_only_loss=cfg.assistant_only_loss,
        packing=cfg.packing,
        neftune_noise_alpha=cfg.neftune_noise_alpha,
    )
    throughput = ThroughputCallback()
    trainer = SFTTrainer(
        model=load_policy(cfg),
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=trainer_peft_config(cfg),
        callbacks=[throughput],
    )
    return trainer, test_raw, throughput, record


def run(cfg: SftConfig) -> dict[str, Any]:
    """Train, evaluate on the test split (loss, ROUGE if asked), save, write summary.json."""
    from prefkit.train.audit_gate import check_audit, log_red_flags

    started = time.perf_counter()
    flags = check_audit(cfg)  # the data audit's red flags: (strict) stop before any work, else logged below
    claim_output_dir(cfg, "sft")
    log_red_flags(flags)
    trainer, test_raw, throughput, record = build_trainer(cfg)
    tokenizer = trainer.processing_class
    result = trainer.train(resume_from_checkpoint=resolve_resume(cfg))
    model_template = record.pop("_model_template", None)
    if model_template is not None:
        tokenizer.chat_template = model_template  # the saved tokenizer keeps the model's own template
    metrics: dict[str, Any] = {"train_loss": result.training_loss, **record}
    metrics["audit_red_flags"] = [f["name"] for f in flags]
    if test_raw is not None:
        ev = trainer.evaluate()
        metrics["eval_loss"] = ev["eval_loss"]
        metrics["eval_mean_token_accuracy"] = ev.get("eval_mean_token_accuracy")
    if cfg.rouge and test_raw is not None:
        metrics.update(rouge(trainer.model, tokenizer, test_raw, cfg))
    return finish_run("sft", cfg, trainer, throughput, metrics, started=started)


class _WhitespaceTokenizer:
    """rouge-score's default tokenizer keeps only [a-z0-9]: it would erase Vietnamese words."""

    def tokenize(self, text: str) -> list[str]:
        return text.lower().split()


def generate_answers(
    model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]], *, max_new_tokens: int, batch_size: int
) -> list[str]:
    """Greedy answers to chat prompts (left-padded batches), decoded without special tokens."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    model.eval()
    answers: list[str] = []
    try:
        for i in range(0, len(prompts), batch_size):
            texts = [
                tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                for p in prompts[i : i + batch_size]
            ]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                out = model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )
            answers += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return [a.strip() for a in answers]


def rouge(model: Any, tokenizer: Any, test_raw: Any, cfg: SftConfig) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 of generated answers vs `chosen` on the first `rouge_samples` test rows."""
    rows = sft_dataset(test_raw.select(range(min(cfg.rouge_samples, len(test_raw)))), cfg.data)
    prompts = [m[:-1] for m in rows["messages"]]
    references = [m[-1]["content"] for m in rows["messages"]]
    answers = generate_answers(
        model,
        tokenizer,
        prompts,
        max_new_tokens=cfg.rouge_max_new_tokens,
        batch_size=cfg.eval_batch_size or cfg.batch_size,
    )
    return rouge_scores(references, answers, tokenizer=cfg.rouge_tokenizer)


def rouge_scores(references: list[str], answers: list[str], *, tokenizer: str = "standard") -> dict[str, float]:
    """Mean ROUGE-1/2/L F1. `standard`: rouge-score's tokenizer with Porter stemming; `whitespace`:
    lower-cased whitespace tokens (keeps Vietnamese words, which the standard one drops)."""
    from rouge_score import rouge_scorer

    if tokenizer == "standard":
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    else:
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_WhitespaceTokenizer())
    scores = [scorer.score(ref, ans) for ref, ans in zip(references, answers, strict=True)]
    return {f"rouge_{k[5:]}": sum(s[k].fmeasure for s in scores) / len(scores) for k in ("rouge1", "rouge2", "rougeL")}
