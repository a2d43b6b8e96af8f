"""`AuditConfig`: the settings of `prefkit data audit` (and of the audit `prefkit data export` writes),
each declared once with its default and its documentation."""

from __future__ import annotations

from dataclasses import dataclass

from prefkit.core.config import setting

# Beside an export: what `data audit` and `data export --audit` write, and `train`'s gate reads.
AUDIT_JSON = "audit.json"


@dataclass
class AuditConfig:
    """What the audit reads besides the dataset, and when a figure becomes a red flag (`prefkit.data.audit`)."""

    split: str | None = setting(None, "Audit one split of a DatasetDict (default: every split, and train vs test).")
    judgements: str | None = setting(None, "A judgement table (position bias overall and per annotator).")
    reward_summary: str | None = setting(
        None, "A reward (or DPO) run's summary.json: its held-out accuracy per strength beside the human ceiling."
    )
    against: list[str] = setting(
        help="Earlier rounds' datasets: prompts of this dataset that are near-duplicates of theirs.",
        factory=list,
    )
    decontaminate: str | None = setting(
        None, "An evaluation set (any prompt format): prompts sharing a word n-gram with it."
    )
    ngram: int = setting(13, "Words per n-gram for --decontaminate (GPT-3's contamination check used 13).")
    threshold: float = setting(0.8, "Jaccard at or above which two prompts are near-duplicates (MinHash).")
    tokenizer: str | None = setting(None, "A tokenizer folder or Hub id: lengths in its tokens (default: words).")
    length_share: float = setting(
        0.6, "Red flag when chosen is the longer answer in at least this share of pairs (or at most 1 − it)."
    )
    style_accuracy: float = setting(
        0.65, "Red flag when style alone (length, headers, lists, bold, code) predicts the preference this often."
    )
    position_share: float = setting(
        0.6, "Red flag when an annotator (or all) prefer the left answer in this share of decided votes (or 1 − it)."
    )
    truncated_share: float = setting(0.05, "Red flag when at least this share of answers was cut off (finish: length).")
    refusal_share: float = setting(
        0.02, "Red flag when at least this share of chosen answers to helpfulness prompts are refusals."
    )
    min_pairs: int = setting(20, "A share over fewer pairs (or votes) than this raises no flag.")
