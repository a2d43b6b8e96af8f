"""Reward model with Llama 2's margin loss, accuracy per strength level, and scoring files.

Training is TRL's `RewardTrainer`: given a `margin` column it uses
`-log σ(r_chosen − r_rejected − margin)` (Llama 2, eq. 2). Each pair's margin comes from its
annotated strength under the configured scheme (none / small / large, Llama 2 Table 27), or from
the dataset's margin column as exported. Held-out accuracy is reported overall and per strength
level, as Llama 2 reports it (the model should be surest on "significantly better" pairs), and
per safety bin where the data has one (`data.set: safety`, Llama 2's safety reward model).

`label: soft` trains on the share of annotators who preferred chosen instead of a hard label, and
`edits: rank` on Llama 3's edit rankings (edited > chosen > rejected): `prefkit.train.reward_labels`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefkit.core.errors import ConfigError, DataError
from prefkit.data.schema import Strength
from prefkit.train.config import ModelConfig, RewardConfig, RunConfig, ScoreConfig
from prefkit.train.datasets import load_split, preference_dataset
from prefkit.train.models import load_reward_model, load_tokenizer, resolve_resume, trainer_kwargs, trainer_peft_config
from prefkit.train.output_dir import claim_output_dir
from prefkit.train.summary import ThroughputCallback, finish_run

CONFIG = RewardConfig


def run(cfg: RewardConfig) -> dict[str, Any]:
    """Train the reward model, evaluate (loss, accuracy, accuracy per strength), save, summarise."""
    from trl import RewardConfig as TrlRewardConfig

    from prefkit.train.audit_gate import check_audit, log_red_flags
    from prefkit.train.reward_labels import PreferenceRewardTrainer, add_label_columns, without_derived

    started = time.perf_counter()
    flags = check_audit(cfg)  # the data audit's red flags: (strict) stop before any work, else logged below
    claim_output_dir(cfg, "reward")
    log_red_flags(flags)

    def split(name: str) -> Any:  # soft labels / edit rankings ride along as columns
        raw = load_split(cfg.data, name)
        raw = without_derived(raw) if cfg.edits == "rank" else raw
        return add_label_columns(preference_dataset(raw, cfg.data, margin_scheme=cfg.margin), raw, cfg)

    train_ds = split(cfg.data.split)
    test_ds = split(cfg.data.test_split) if cfg.data.test_split else None
    tokenizer = load_tokenizer(cfg)  # after the data: a bad dataset fails before any model loads
    args = TrlRewardConfig(
        **trainer_kwargs(cfg),
        max_length=cfg.data.max_length,
        center_rewards_coefficient=cfg.center_rewards_coefficient,
    )
    throughput = ThroughputCallback()
    # The new `score` head is drawn from torch's global generator: seed it, so that a run is
    # reproducible and one process and N data-parallel processes start from the same head.
    from transformers import set_seed

    set_seed(cfg.seed)
    trainer = PreferenceRewardTrainer(
        label=cfg.label,
        ranking=cfg.edits == "rank",
        model=load_reward_model(cfg, pad_token_id=tokenizer.pad_token_id),
        args=args,
        train_dataset=train_ds,
        eval_dataset=test_ds,
        processing_class=tokenizer,
        # a causal-LM checkpoint has no reward head: "score" is new and must train with the adapter
        peft_config=trainer_peft_config(cfg, task_type="SEQ_CLS", modules_to_save=["score"]),
        callbacks=[throughput],
    )
    result = trainer.train(resume_from_checkpoint=resolve_resume(cfg))
    metrics: dict[str, Any] = {"train_loss": result.training_loss, "margin_scheme": cfg.margin}
    metrics.update(label=cfg.label, edits=cfg.edits, audit_red_flags=[f["name"] for f in flags])
    if test_ds is not None:
        ev = trainer.evaluate()
        metrics.update(
            eval_loss=ev["eval_loss"], eval_accuracy=ev.get("eval_accuracy"), eval_reward_margin=ev.get("eval_margin")
        )
        chosen = score_conversations(
            trainer.model,
            tokenizer,
            [p + c for p, c in zip(test_ds["prompt"], test_ds["chosen"], strict=True)],
            max_length=cfg.data.max_length,
        )
        rejected = score_conversations(
            trainer.model,
            tokenizer,
            [p + r for p, r in zip(test_ds["prompt"], test_ds["rejected"], strict=True)],
            max_length=cfg.data.max_length,
        )
        metrics.update(
            pair_metrics(
                chosen,
                rejected,
                test_ds["strength"],
                prefix="test_",
                safety_bins=test_ds["safety_bin"] if "safety_bin" in test_ds.column_names else None,
            )
        )
        metrics["data_set"] = cfg.data.set
    return finish_run("reward", cfg, trainer, throughput, metrics, started=started)


def score_conversations(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[dict[str, str]]],
    *,
    batch_size: int = 16,
    max_length: int = 1024,
) -> list[float]:
    """The reward of each full conversation (prompt + answer), tokenized as the trainer does.

    Over-long conversations keep their last `max_length` tokens: the head reads the last token.
    """
    import torch

    model.eval()
    scores: list[float] = []
    for i in range(0, len(conversations), batch_size):
        ids = [
            tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"][-max_length:]
            for c in conversations[i : i + batch_size]
        ]
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for j, x in enumerate(ids):  # right padding: the head finds the last non-pad token
            input_ids[j, : len(x)] = torch.tensor(x)
            mask[j, : len(x)] = 1
        with torch.no_grad():
            logits = model(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device)).logits
        scores += logits.squeeze(-1).float().cpu().tolist()
    return scores


def pair_metrics(
    chosen: Sequence[float],
    rejected: Sequence[float],
    strengths: Sequence[str | None],
    *,
    prefix: str = "",
    safety_bins: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """Accuracy (chosen scored above rejected) and mean reward margin, overall, per strength and,
    when `safety_bins` has any, per Llama 2 safety bin."""
    if not chosen:
        return {}
    right = [c > r for c, r in zip(chosen, rejected, strict=True)]
    by: dict[str, list[bool]] = defaultdict(list)
    for ok, s in zip(right, strengths, strict=True):
        by[Strength.parse(s).value if s is not None else "none"].append(ok)
    order = [s.value for s in Strength] + ["none"]
    out = {
        f"{prefix}accuracy": sum(right) / len(right),
        f"{prefix}reward_margin": sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(chosen),
        f"{prefix}accuracy_by_strength": {k: sum(by[k]) / len(by[k]) for k in order if by.get(k)},
        f"{prefix}pairs_by_strength": {k: len(by[k]) for k in order if by.get(k)},
        f"{prefix}pairs": len(chosen),
    }
    if safety_bins is not None and any(b is not None for b in safety_bins):
        from prefkit.data.schema import SafetyBin

        bins: dict[str, list[bool]] = defaultdict(list)
        for ok, b in zip(right, safety_bins, strict=True):
            bins[b if b is not None else "unknown"].append(ok)
        names = [b.value for b in SafetyBin] + ["unknown"]
        out[f"{prefix}accuracy_by_safety_bin"] = {k: sum(bins[k]) / len(bins[k]) for k in names if bins.get(k)}
        out[f"{prefix}pairs_by_safety_bin"] = {k: len(bins[k]) for k in names if bins.get(k)}
    return out


def _strengths(records: list[dict[str, Any]], source: str) -> list[str | None]:
    out: list[str | None] = []
    for i, rec in enumerate(records):
        value = rec.get("strength")
        try:
            out.append(Strength.parse(value).value if value is not None else None)
        except ValueError as e:
            raise DataError(str(e), file=source, row=i, field="strength") from None
    return out


def _history(rec: dict[str, Any], source: str, row: int) -> tuple[tuple[str, str], ...]:
    """A row's earlier turns (the export's `history` column), so multi-turn rows score whole."""
    from prefkit.data.schema import parse_turns

    try:
        return parse_turns(rec.get("history"))
    except (ValueError, TypeError) as e:
        raise DataError(f"not a list of user/assistant messages: {e}", file=source, row=row, field="history") from None


def load_trained_reward_model(
    model_dir: str | Path, base_model: str | None = None, *, trust_remote_code: bool = False
) -> tuple[Any, Any]:
    """A saved reward model (merged folder, or adapter + its base) and its tokenizer, for scoring.

    Loaded the way every stage loads (`prefkit.train.models`): bf16 on a GPU that supports it, else fp32,
    on the GPU when there is one; a missing or broken model is a `ConfigError`.
    """
    import json

    from prefkit.train.models import has_cuda, load_reward_model, load_tokenizer

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigError(f"--model {model_dir}: no such folder")
    adapter_cfg = model_dir / "adapter_config.json"
    is_adapter = adapter_cfg.exists()
    base = (
        (base_model or json.loads(adapter_cfg.read_text())["base_model_name_or_path"]) if is_adapter else str(model_dir)
    )
    tokenizer = load_tokenizer(RunConfig(model=ModelConfig(path=str(model_dir), trust_remote_code=trust_remote_code)))
    model = load_reward_model(
        RunConfig(model=ModelConfig(path=base, trust_remote_code=trust_remote_code)),
        pad_token_id=tokenizer.pad_token_id,
    )
    if is_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, model_dir).merge_and_unload()
    if has_cuda():
        # the current device: each process's own GPU under accelerate (transformers' decorator on
        # `to` hides the bound self from mypy, which then reads "cuda" as the model)
        model.to("cuda")  # type: ignore[arg-type]
    return model, tokenizer


_S = ScoreConfig()  # score_command's defaults: `prefkit.train.config.ScoreConfig`, also the command's options


def score_command(
    model_dir: Path,
    source: str,
    out: Path,
    *,
    question_column: str = _S.question_column,
    response_column: str = _S.response_column,
    base_model: str | None = _S.base_model,
    batch_size: int = _S.batch_size,
    max_length: int = _S.max_length,
    overwrite: bool = False,
) -> dict[str, Any]:
    """`prefkit train score`: add `reward` (or `chosen_reward` / `rejected_reward` for pairs) to each row.

    For pairs, returns accuracy overall and per strength (the command prints it). Both kinds also get
    the quantiles of sigmoid(score) and, where rows carry unsafe flags (`chosen_unsafe` /
    `rejected_unsafe`, or `unsafe` for responses), the precision and recall of "sigmoid(score) < t" per
    threshold: how to pick the combined reward's `safety_threshold` on a safety model's test set.
    For pairs, returns accuracy overall and per strength (the command prints it). OUT goes through
    the output guard first (`prefkit.core.outputs`): never SOURCE or the model, and an existing one
    only with `overwrite` and only a previous `train score` output, unchanged.
    """
    from prefkit.core.outputs import check_output
    from prefkit.core.writers import output_suffix, write_rows
    from prefkit.data.sources import read_rows
    from prefkit.train.scoring import threshold_report, unsafe_flags

    output_suffix(out)
    check_output(out, "train score", inputs=[source, model_dir], overwrite=overwrite)

    records = [rec for _, rec in read_rows(source)]
    if not records:
        raise DataError("no rows to score", file=source)
    is_pairs = "chosen" in records[0] and "rejected" in records[0]
    columns = [question_column, *(("chosen", "rejected") if is_pairs else (response_column,))]
    for i, rec in enumerate(records):
        for col in columns:
            if not isinstance(rec.get(col), str) or not rec[col].strip():
                raise DataError("missing or empty", file=source, row=i, field=col)
    strengths = _strengths(records, source) if is_pairs else []
    flags = unsafe_flags(records, ["chosen_unsafe", "rejected_unsafe"] if is_pairs else ["unsafe"], source)
    model, tokenizer = load_trained_reward_model(model_dir, base_model)

    def conversations(col: str) -> list[list[dict[str, str]]]:
        out_: list[list[dict[str, str]]] = []
        for rec in records:
            system = rec.get("system")
            msgs = [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []
            msgs += [{"role": r, "content": c} for r, c in _history(rec, source, len(out_))]  # earlier turns
            out_.append(
                msgs + [{"role": "user", "content": rec[question_column]}, {"role": "assistant", "content": rec[col]}]
            )
        return out_

    result: dict[str, Any] = {"rows": len(records)}
    if is_pairs:
        chosen = score_conversations(
            model, tokenizer, conversations("chosen"), batch_size=batch_size, max_length=max_length
        )
        rejected = score_conversations(
            model, tokenizer, conversations("rejected"), batch_size=batch_size, max_length=max_length
        )
        for rec, c, r in zip(records, chosen, rejected, strict=True):
            rec["chosen_reward"], rec["rejected_reward"] = c, r
        result.update(pair_metrics(chosen, rejected, strengths, safety_bins=[rec.get("safety_bin") for rec in records]))
        result.update(threshold_report(chosen + rejected, flags))
    else:
        rewards = score_conversations(
            model, tokenizer, conversations(response_column), batch_size=batch_size, max_length=max_length
        )
        for rec, s in zip(records, rewards, strict=True):
            rec["reward"] = s
        result["mean_reward"] = sum(rewards) / len(rewards)
        result.update(threshold_report(rewards, flags))
    write_rows(records, out, marker="train score")
    return result
