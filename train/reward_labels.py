"""The reward model's loss with soft labels from overlap and Llama 3's edit rankings.

`PreferenceRewardTrainer` is TRL's `RewardTrainer` with its loss computation (`compute_loss`)
extended; with hard labels and no ranking it is TRL's own, untouched. TRL's forward and metrics
run as they are (its loss on the batch is computed and replaced), so the two share one forward
of chosen and rejected. With r_c, r_r the rewards of chosen and rejected, m the pair's margin
(Llama 2, eq. 2) and Δ = r_c − r_r − m:

- **soft labels** (`label: soft`): p = the share of the pair's annotators who preferred chosen,
  unsure counting half (`prefkit.train.pair_terms.soft_labels`), is the target probability of the
  Bradley-Terry model: −[p · log σ(Δ) + (1 − p) · log σ(−Δ)]. p = 1 (one annotator, or a unanimous
  pair) is Llama 2's margin loss exactly; m moves the target logit in both terms.
- **rankings** (`edits: rank`): a row with an annotator's edit of chosen ranks three answers,
  edited > chosen > rejected (Llama 3, section 4.2.1). Its loss is InstructGPT's ranking loss (Ouyang
  et al. 2022, eq. 1): the mean over the ranking's C(3, 2) = 3 comparisons of −log σ(r_winner −
  r_loser), one batch element per prompt. The chosen > rejected comparison keeps its margin and label
  as above; the two comparisons with the edit have no margin (Llama 3 drops it). The edited answers
  get one extra forward per batch.

TRL's centring penalty (`center_rewards_coefficient`) is added as TRL adds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from trl import RewardTrainer

if TYPE_CHECKING:
    from datasets import Dataset

EXTRA_COLUMNS = ("soft_label", "edited_ids")


def ranking_loss(r_edited: torch.Tensor, r_chosen: torch.Tensor, r_rejected: torch.Tensor, pair_term: torch.Tensor):
    """InstructGPT's loss over edited > chosen > rejected: the mean of the three comparisons' losses
    (`pair_term` is chosen > rejected's own, with its margin and label)."""
    return (pair_term - F.logsigmoid(r_edited - r_chosen) - F.logsigmoid(r_edited - r_rejected)) / 3


def soft_pair_loss(delta: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """−[p · log σ(Δ) + (1 − p) · log σ(−Δ)] per pair."""
    return -(p * F.logsigmoid(delta) + (1 - p) * F.logsigmoid(-delta))


class _LabelCollator:
    """TRL's reward collator, plus `soft_label` and the edited answers of ranked rows."""

    def __init__(self, inner: Any, pad_token_id: int) -> None:
        self.inner = inner
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = self.inner(examples)
        if "soft_label" in examples[0]:
            out["soft_label"] = torch.tensor([float(e["soft_label"]) for e in examples], dtype=torch.float32)
        ranked = [i for i, e in enumerate(examples) if e.get("edited_ids")]
        if ranked:
            ids = [torch.tensor(examples[i]["edited_ids"]) for i in ranked]
            width = max(len(x) for x in ids)
            input_ids = torch.full((len(ids), width), self.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for j, x in enumerate(ids):  # right padding, as TRL pads chosen and rejected
                input_ids[j, : len(x)] = x
                mask[j, : len(x)] = 1
            out.update(edited_input_ids=input_ids, edited_attention_mask=mask, ranked=torch.tensor(ranked))
        return out


class PreferenceRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer with soft labels and edit rankings (module docstring)."""

    def __init__(self, *args: Any, label: str = "hard", ranking: bool = False, **kwargs: Any) -> None:
        if label not in ("hard", "soft"):
            raise ValueError(f"label must be hard or soft, got {label!r}")
        self.label, self.ranking = label, ranking  # before TRL prepares the datasets (`_prepare_dataset`)
        super().__init__(*args, **kwargs)
        pad = getattr(self.processing_class, "pad_token_id", None)
        self.data_collator = _LabelCollator(self.data_collator, 0 if pad is None else pad)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None:
            self._signature_columns = [*self._signature_columns, *EXTRA_COLUMNS]

    def _prepare_dataset(self, dataset: Dataset, processing_class: Any, args: Any, dataset_name: str) -> Dataset:
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if not self.ranking or "edited_text" not in dataset.column_names:
            return dataset
        from trl.data_utils import _tokenize

        def tokenize(example: dict[str, Any]) -> dict[str, Any]:
            text = example["edited_text"]
            if not text:
                return {"edited_ids": []}
            conversation = example["prompt"] + [{"role": "assistant", "content": text}]
            ids: list[int] = _tokenize(processing_class, conversation, tools=None)["input_ids"]
            # TRL drops pairs longer than max_length; an over-long edit leaves its row a plain pair
            return {"edited_ids": ids if args.max_length is None or len(ids) <= args.max_length else []}

        return dataset.map(tokenize, desc=f"Tokenizing the edits of {dataset_name}")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        soft = inputs.pop("soft_label", None)
        ranked = inputs.pop("ranked", None)
        edited = {k: inputs.pop(k) for k in ("edited_input_ids", "edited_attention_mask") if k in inputs}
        if (soft is None or self.label == "hard") and ranked is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        margin = inputs.get("margin")
        _, outputs = super().compute_loss(model, inputs, return_outputs=True)  # TRL's forward and metrics
        r_chosen, r_rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
        delta = r_chosen - r_rejected - (margin if margin is not None else 0.0)
        p = soft if soft is not None and self.label == "soft" else torch.ones_like(delta)
        per_row = soft_pair_loss(delta, p.to(delta.dtype))
        if ranked is not None:
            r_edited = model(
                input_ids=edited["edited_input_ids"], attention_mask=edited["edited_attention_mask"], use_cache=False
            ).logits.squeeze(-1)
            idx = ranked.long()
            terms = ranking_loss(r_edited, r_chosen[idx], r_rejected[idx], per_row[idx])
            per_row = per_row.index_put((idx,), terms)
            self._metrics["train" if self.model.training else "eval"]["ranked_rows"].append(float(len(idx)))
        loss = per_row.mean()
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean((r_chosen + r_rejected) ** 2)
        return (loss, outputs) if return_outputs else loss


def without_derived(raw: Dataset) -> Dataset:
    """`edits: rank`: the rows the export made from edits (`derived_from`) leave, their comparisons
    being in their judged row's ranking."""
    if "derived_from" not in raw.column_names:
        return raw
    keep = [i for i, d in enumerate(raw["derived_from"]) if not d]
    return raw if len(keep) == len(raw) else raw.select(keep)


def add_label_columns(ds: Dataset, raw: Dataset, cfg: Any) -> Dataset:
    """`ds` (rows of `raw`, in order) with `soft_label` (`label: soft`) and `edited_text` (`edits: rank`)."""
    from prefkit.train.pair_terms import soft_labels

    if cfg.label == "soft":
        ds = ds.add_column("soft_label", soft_labels(raw, cfg.data))
    if cfg.edits == "rank":
        edited = list(raw["edited"]) if "edited" in raw.column_names else [None] * len(raw)
        ds = ds.add_column("edited_text", [e if isinstance(e, str) and e.strip() else "" for e in edited])
    return ds
