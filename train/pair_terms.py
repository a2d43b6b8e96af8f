"""What people said about each pair, as numbers the losses use: DPO's per-pair offset and weight,
the reward model's soft label. Pure functions of the exported columns (no torch), so that they can
be checked by hand.

- **Offset** (ODPO, Amini et al. 2024, "Direct Preference Optimization with an Offset", eq. 6):
  DPO's loss becomes -log σ(β·Δ − m), Δ the policy's log-ratio gap between chosen and rejected
  (against the reference). The offset m is `offset_scale` (ODPO's α) times the pair's margin from
  its strength under the same schemes as the reward model (Llama 2, Table 27: small / large), or
  the dataset's `margin` column: a pair annotated "significantly better" must be won by more.
- **Weight**: the pair's loss is multiplied by a weight from its strength level
  (`level_weights`, negligibly … significantly better) and, on pairs judged by two or more
  people, by 2p − 1 (floored at 0), p the soft label below: the ratio of the gradient a soft-label
  loss gives at Δ = 0 to a hard label's, so a unanimous pair counts in full, a 2-to-1 pair a third,
  an even split not at all. Weights are divided by their mean over the split, so the mean weight
  is 1 and the learning rate keeps its meaning.
- **Soft label** p: the share of the pair's annotators who preferred the exported chosen answer,
  unsure votes counting half (`prefkit.data.schema.soft_label`); 1.0 without votes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prefkit.core.errors import DataError
from prefkit.data.schema import Strength, soft_label
from prefkit.train.config import DataConfig

if TYPE_CHECKING:
    from datasets import Dataset

NO_LEVEL = -1  # a pair without a strength (e.g. hh-rlhf)


def _column(ds: Dataset, name: str) -> list[Any]:
    return list(ds[name]) if name in ds.column_names else [None] * len(ds)


def soft_labels(ds: Dataset, cfg: DataConfig) -> list[float]:
    """Each row's soft label from its `n_annotators` / `votes_chosen` / `votes_rejected` /
    `agreement` columns (1.0 where the row has no votes)."""
    n, vc, vr, agree = (_column(ds, c) for c in ("n_annotators", "votes_chosen", "votes_rejected", "agreement"))
    out = []
    for i in range(len(ds)):
        for name, value in (("n_annotators", n[i]), ("votes_chosen", vc[i]), ("votes_rejected", vr[i])):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise DataError(f"not a count: {value!r}", file=cfg.source, row=i, field=name)
        p = soft_label(
            int(n[i]) if n[i] is not None and n[i] == n[i] else 0,
            int(vc[i]) if vc[i] is not None and vc[i] == vc[i] else None,
            int(vr[i]) if vr[i] is not None and vr[i] == vr[i] else None,
            agree[i],
        )
        if not 0.0 <= p <= 1.0:
            raise DataError(f"soft label {p:g} is not a share (votes exceed n_annotators?)", file=cfg.source, row=i)
        out.append(p)
    return out


def levels(strengths: Sequence[Strength | None]) -> list[int]:
    """Each pair's level 0..3 (negligibly … significantly better), `NO_LEVEL` without a strength."""
    return [s.level if s is not None else NO_LEVEL for s in strengths]


def offsets(margins: Sequence[float], scale: float) -> list[float]:
    """ODPO's offset m = α · margin per pair."""
    return [scale * m for m in margins]


def weights(
    pair_levels: Sequence[int],
    labels: Sequence[float],
    n_annotators: Sequence[int | None],
    level_weights: Sequence[float],
    *,
    agreement: bool = True,
    source: str | None = None,
) -> list[float]:
    """Per-pair weights, mean 1 (module docstring). A pair without a level gets the mean of
    `level_weights`; with `agreement`, pairs of two or more judgements are scaled by max(0, 2p − 1)."""
    if len(level_weights) != 4 or any(w < 0 for w in level_weights):
        raise DataError("level_weights needs four weights ≥ 0 (negligibly, slightly, better, significantly)")
    fallback = sum(level_weights) / 4
    raw = []
    for level, p, n in zip(pair_levels, labels, n_annotators, strict=True):
        w = level_weights[level] if level != NO_LEVEL else fallback
        if agreement and (n or 0) >= 2:
            w *= max(0.0, 2.0 * p - 1.0)
        raw.append(w)
    total = sum(raw)
    if not raw:
        return []
    if total <= 0:
        raise DataError("every pair has weight 0 (level_weights, or no pair with a clear majority)", file=source)
    mean = total / len(raw)
    return [w / mean for w in raw]
