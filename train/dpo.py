"""DPO with TRL on the exported pairs.

With LoRA (the default) the reference model is the same weights with the adapter disabled, so
no second copy sits in memory. Started from an SFT adapter (`model.adapter`), DPO keeps training
that adapter (over the bare, possibly 4-bit, base) and TRL keeps a frozen copy of it named "ref"
as the reference: the reference is exactly the SFT model, as in the usual recipe. Without LoRA a
second copy of the starting model is loaded as the reference (TRL would otherwise reload
`model.path`, losing a merged adapter).

`strength: offset | weight` puts the annotated strength (and agreement) into the loss per pair
(`prefkit.train.dpo_strength`, ODPO's offset or a weight); `none` is TRL's loss as it is. Every run
reports the implicit reward's held-out accuracy per strength level.
"""

from __future__ import annotations

import time
from typing import Any

from prefkit.train.config import DpoConfig
from prefkit.train.datasets import load_split, preference_dataset
from prefkit.train.models import load_policy, load_tokenizer, resolve_resume, trainer_kwargs, trainer_peft_config
from prefkit.train.output_dir import claim_output_dir
from prefkit.train.summary import ThroughputCallback, finish_run

CONFIG = DpoConfig

# What DPO is judged by: implicit rewards β·log(π/π_ref) of chosen and rejected, their margin,
# and how often chosen beats rejected.
REPORTED = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


def run(cfg: DpoConfig) -> dict[str, Any]:
    """Train, evaluate on the test split, save, write summary.json; returns the summary."""
    from prefkit.train.audit_gate import check_audit, log_red_flags

    started = time.perf_counter()
    flags = check_audit(cfg)  # the data audit's red flags: (strict) stop before any work, else logged below
    from trl import DPOConfig

    from prefkit.train.dpo_strength import StrengthDPOTrainer, add_pair_columns

    claim_output_dir(cfg, "dpo")
    log_red_flags(flags)
    train_raw = load_split(cfg.data, cfg.data.split)
    train_ds = preference_dataset(train_raw, cfg.data).remove_columns("strength")
    train_ds = add_pair_columns(train_ds, train_raw, cfg)  # per-pair offset / weight / level
    eval_ds = None
    if cfg.data.test_split:
        eval_raw = load_split(cfg.data, cfg.data.test_split)
        eval_ds = add_pair_columns(preference_dataset(eval_raw, cfg.data).remove_columns("strength"), eval_raw, cfg)
    tokenizer = load_tokenizer(cfg)  # after the data: a bad dataset fails before any model loads
    args = DPOConfig(
        **trainer_kwargs(cfg),
        max_length=cfg.data.max_length,
        beta=cfg.beta,
        loss_type=[cfg.loss_type],
        label_smoothing=cfg.label_smoothing,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
    )
    throughput = ThroughputCallback()
    trainer = StrengthDPOTrainer(
        strength=cfg.strength,
        model=load_policy(cfg),
        # LoRA: no second copy (a new adapter: disabled = the start model; a continued `model.adapter`:
        # TRL's frozen "ref" copy of it). Full fine-tuning: a second copy of the start model.
        ref_model=None if cfg.lora.enabled else load_policy(cfg),
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=trainer_peft_config(cfg),
        callbacks=[throughput],
    )
    result = trainer.train(resume_from_checkpoint=resolve_resume(cfg))
    metrics: dict[str, Any] = {"train_loss": result.training_loss}
    train_logs = [h for h in trainer.state.log_history if "rewards/margins" in h]
    if train_logs:  # first and last logged training values: what DPO moved
        metrics["first"] = {k: train_logs[0][k] for k in REPORTED}
        metrics["last"] = {k: train_logs[-1][k] for k in REPORTED}
    if eval_ds is not None:
        ev = trainer.evaluate()
        metrics["eval_loss"] = ev["eval_loss"]
        metrics.update({f"eval_{k}": ev.get(f"eval_{k}") for k in REPORTED})
        metrics.update(trainer.accuracy_by_strength())
    metrics["strength"] = cfg.strength
    metrics["audit_red_flags"] = [f["name"] for f in flags]
    return finish_run("dpo", cfg, trainer, throughput, metrics, started=started)
