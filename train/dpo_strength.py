"""DPO that uses what people said: a per-pair offset (ODPO) or weight, and the implicit reward's
held-out accuracy per strength level.

`StrengthDPOTrainer` is TRL's `DPOTrainer` with one thing changed: the loss computation
(`_compute_loss`). With `strength: none` it is TRL's own, untouched. With `offset` or `weight` the
per-pair term enters where the pair's loss is formed (`prefkit.train.pair_terms`):

    loss = mean_i  w_i · −log σ(β · Δ_i − m_i),   Δ_i = (log π(c_i) − log π_ref(c_i)) − (log π(r_i) − log π_ref(r_i))

(ODPO: Amini, Vieira, Cotterell 2024, "Direct Preference Optimization with an Offset", eq. 6; m_i = 0
and w_i = 1 is DPO's sigmoid loss). The policy's log-probabilities come from the same fused-head
forward TRL uses, the reference's from TRL's own `compute_ref_log_probs` (the adapter disabled, the
"ref" adapter, or the reference model) or from the precomputed columns; dataset preparation, the
collator, precomputation, evaluation and saving are TRL's. Logged: TRL's reward metrics (same names)
plus `pair/offset` and `pair/weight`.

The per-pair numbers ride along as dataset columns (`pair_offset`, `pair_weight`, and `pair_level`
for the per-level accuracy), kept through TRL's column filter and added to each batch by a wrapper
around TRL's collator.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from trl import DPOTrainer

from prefkit.data.schema import Strength
from prefkit.train import pair_terms
from prefkit.train.config import DpoConfig
from prefkit.train.datasets import margins, strengths

if TYPE_CHECKING:
    from datasets import Dataset

PAIR_COLUMNS = ("pair_offset", "pair_weight", "pair_level")
_NON_MODEL = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", *PAIR_COLUMNS}


def add_pair_columns(ds: Dataset, raw: Dataset, cfg: DpoConfig) -> Dataset:
    """`ds` (rows of `raw`, in order) with `pair_level` and, as `cfg.strength` asks, `pair_offset`
    or `pair_weight`."""
    found = strengths(raw, cfg.data)
    levels = pair_terms.levels(found)
    ds = ds.add_column("pair_level", levels)
    if cfg.strength == "offset":
        ds = ds.add_column("pair_offset", pair_terms.offsets(margins(raw, cfg.data, cfg.margin), cfg.offset_scale))
    elif cfg.strength == "weight":
        n = raw["n_annotators"] if "n_annotators" in raw.column_names else [None] * len(raw)
        ds = ds.add_column(
            "pair_weight",
            pair_terms.weights(
                levels,
                pair_terms.soft_labels(raw, cfg.data),
                n,
                cfg.level_weights,
                agreement=cfg.agreement_weight,
                source=cfg.data.source,
            ),
        )
    return ds


class _PairCollator:
    """TRL's collator, plus the per-pair columns as float tensors."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = self.inner(examples)
        for name in PAIR_COLUMNS:
            if name in examples[0]:
                out[name] = torch.tensor([float(e[name]) for e in examples], dtype=torch.float32)
        return out


class StrengthDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer with the per-pair offset / weight in the loss (module docstring)."""

    def __init__(self, *args: Any, strength: str = "none", **kwargs: Any) -> None:
        if strength not in ("none", "offset", "weight"):
            raise ValueError(f"strength must be none, offset or weight, got {strength!r}")
        self.strength = strength
        super().__init__(*args, **kwargs)
        if strength != "none" and (self.loss_types != ["sigmoid"] or self.f_divergence_type != "reverse_kl"):
            raise ValueError("a per-pair offset or weight is defined for the sigmoid loss with reverse KL only")
        if strength != "none" and (self.ld_alpha is not None or self.use_weighting):
            raise ValueError("a per-pair offset or weight does not combine with ld_alpha or use_weighting")
        self.data_collator = _PairCollator(self.data_collator)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None:
            self._signature_columns = [*self._signature_columns, *PAIR_COLUMNS]

    def _logratios(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        """(chosen, rejected) log-ratios against the reference, and the policy's log-probabilities, as
        TRL's `_compute_loss` forms them (summed over the completion tokens)."""
        completion_mask = inputs["completion_mask"]
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL}
        model_kwargs["use_cache"] = False
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        seq_len = completion_mask.size(1) - 1
        chosen_logps, rejected_logps = outputs.log_probs[:, -seq_len:].sum(dim=1).chunk(2, dim=0)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:  # TRL's own reference pass: adapter disabled / the "ref" adapter / the reference model
            ref_chosen, ref_rejected = self.compute_ref_log_probs(
                self.ref_model if self.ref_model is not None else model,
                {k: v for k, v in inputs.items() if k not in PAIR_COLUMNS},
            )
        return chosen_logps - ref_chosen, rejected_logps - ref_rejected, chosen_logps, rejected_logps

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        if self.strength == "none":
            inputs = {k: v for k, v in inputs.items() if k not in PAIR_COLUMNS}
            return super()._compute_loss(model, inputs, return_outputs)
        mode = "train" if model.training else "eval"
        chosen_lr, rejected_lr, chosen_logps, rejected_logps = self._logratios(model, inputs)
        n, like = chosen_lr.size(0), {"device": chosen_lr.device, "dtype": chosen_lr.dtype}  # TRL's dtype
        offset = inputs.get("pair_offset", torch.zeros(n)).to(**like)
        weight = inputs.get("pair_weight", torch.ones(n)).to(**like)
        logits = self.beta * (chosen_lr - rejected_lr) - offset
        loss = (-F.logsigmoid(logits) * weight).mean()

        gather = self.accelerator.gather
        chosen_rewards = self.beta * chosen_lr.detach()
        rejected_rewards = self.beta * rejected_lr.detach()
        metrics = self._metrics[mode]
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
        if "pair_offset" in inputs:
            metrics["pair/offset"].append(gather(offset).mean().item())
        if "pair_weight" in inputs:
            metrics["pair/weight"].append(gather(weight).mean().item())
        if return_outputs:  # as TRL does for `compute_metrics`: the logits from a plain forward
            with torch.no_grad():
                outputs = model(**{k: v for k, v in inputs.items() if k not in _NON_MODEL}, use_cache=False)
            return loss, outputs
        return loss

    def accuracy_by_strength(self) -> dict[str, Any]:
        """The implicit reward's accuracy (β·Δ > 0) and mean margin β·Δ on the evaluation split,
        overall and per strength level (the reward stage reports the same for its model)."""
        from datasets import Dataset

        policy = self.model
        if not isinstance(self.eval_dataset, Dataset) or "pair_level" not in self.eval_dataset.column_names:
            return {}
        assert policy is not None
        was_training = policy.training
        policy.eval()
        margins_: list[float] = []
        levels: list[int] = []
        with torch.no_grad():
            for batch in self.get_eval_dataloader():
                batch = self._prepare_inputs(batch)
                chosen_lr, rejected_lr, _, _ = self._logratios(policy, batch)
                margin = self.accelerator.gather_for_metrics(self.beta * (chosen_lr - rejected_lr).float())
                margins_ += margin.cpu().tolist()
                levels += self.accelerator.gather_for_metrics(batch["pair_level"]).cpu().long().tolist()
        policy.train(was_training)
        by: dict[str, list[float]] = defaultdict(list)
        for m, lv in zip(margins_, levels, strict=True):
            by[Strength.from_level(lv).value if lv != pair_terms.NO_LEVEL else "none"].append(m)
        order = [s.value for s in Strength] + ["none"]
        return {
            "eval_implicit_accuracy": sum(m > 0 for m in margins_) / len(margins_) if margins_ else None,
            "eval_implicit_accuracy_by_strength": {k: sum(m > 0 for m in by[k]) / len(by[k]) for k in order if by[k]},
            "eval_implicit_margin_by_strength": {k: sum(by[k]) / len(by[k]) for k in order if by[k]},
            "eval_pairs_by_strength": {k: len(by[k]) for k in order if by[k]},
        }
