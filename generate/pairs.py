"""Pairs from a prompt's responses, and the filter that drops pairs useless to annotate.

Dropped: a pair with an empty response, two identical responses (after the data room's text
normalisation), or two near-identical ones (Jaccard of the data room's shingles at or above the
threshold — what its MinHash estimates; with only two texts the exact value is as cheap).
Truncated responses (finish reason "length") are kept and counted, since an annotator can still
judge them, unless the run asks to drop them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prefkit.data.schema import Pair, Prompt, Response
from prefkit.data.shingles import jaccard, normalize


@dataclass(frozen=True)
class Dropped:
    """A pair left out of the output, and why (`reason` is a short key, `detail` says more)."""

    prompt_id: str
    a: str  # the setting labels of the two responses
    b: str
    reason: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"prompt_id": self.prompt_id, "a": self.a, "b": self.b, "reason": self.reason, "detail": self.detail}


def drop_reason(pair: Pair, *, near_duplicate_threshold: float, drop_truncated: bool) -> tuple[str, str] | None:
    """(reason, detail) when the pair should not go to annotators, else None."""
    for side, r in (("a", pair.a), ("b", pair.b)):
        if not r.text.strip():
            return "empty_response", f"response {side} is empty (finish reason {r.finish_reason})"
    if normalize(pair.a.text) == normalize(pair.b.text):
        return "identical", "both responses are the same text"
    similarity = jaccard(pair.a.text, pair.b.text)
    if similarity >= near_duplicate_threshold:
        return "near_identical", f"Jaccard similarity {similarity:.3f} >= {near_duplicate_threshold}"
    if drop_truncated and (pair.a.truncated or pair.b.truncated):
        return "truncated", "a response hit max_tokens (finish reason 'length')"
    return None


def build_pairs(
    prompt: Prompt,
    responses: Sequence[Response],
    labels: Sequence[str],
    index_pairs: Sequence[tuple[int, int]],
    *,
    near_duplicate_threshold: float,
    drop_truncated: bool = False,
) -> tuple[list[Pair], list[Dropped]]:
    """The kept pairs (generation order: `a` is the first index) and the dropped ones."""
    kept: list[Pair] = []
    dropped: list[Dropped] = []
    for i, j in index_pairs:
        pair = Pair(prompt=prompt, a=responses[i], b=responses[j])
        why = drop_reason(pair, near_duplicate_threshold=near_duplicate_threshold, drop_truncated=drop_truncated)
        if why is None:
            kept.append(pair)
        else:
            dropped.append(Dropped(prompt.id, labels[i], labels[j], *why))
    return kept, dropped
