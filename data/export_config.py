"""`ExportConfig`: the settings of `prefkit data export`, `prefkit annotate export` and
`prefkit.data.export`'s functions, each declared once with its default and its documentation (the
options' help and the config reference read them from here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prefkit.core.config import setting
from prefkit.data.formats import COLUMNS_HELP


@dataclass
class ExportConfig:
    """A Vi-Alpaca-style `DatasetDict` (train/test by prompt) with a dataset card (see `prefkit.data.export`)."""

    test_size: float = setting(0.1, "Share of prompts in the test split.")
    seed: int = setting(42, "Seed for the train/test split.")
    margin: Literal["none", "small", "large"] = setting(
        "small", "Margin scheme: none, small or large (Llama 2, Table 27)."
    )
    rule: Literal["mean", "majority", "ability"] = setting(
        "mean",
        "How several judgements become one row: mean, majority, or ability (each annotator's vote weighted by "
        "their reliability, estimated from the overlap with Dawid and Skene's EM).",
    )
    parquet: bool = setting(False, "Also write Parquet files per split.")
    jsonl: bool = setting(False, "Also write JSONL files per split.")
    trl: bool = setting(
        False,
        "Also write TRL's conversational columns (prompt/chosen/rejected as messages; the flat answers "
        "move to chosen_text/rejected_text).",
    )
    sets: str | None = setting(
        None, "Write Llama 2's sets under OUT: helpfulness, safety, or both ('helpfulness,safety')."
    )
    name: str | None = setting(None, "Dataset name for the card (default: OUT's name).")
    license: str = setting("other", "Licence id for the card's metadata (e.g. apache-2.0, cc-by-4.0).")
    language: str | None = setting(
        None, "Language code for the card's metadata (default: detected; required when the text is unclear)."
    )
    dedup_report: str | None = setting(
        None,
        "The `data dedup` report of SOURCE (default: found beside it); named in the card, its clusters "
        "kept on one side of the split.",
    )
    adversarial: bool = setting(
        False, "Tag every prompt of SOURCE adversarial (red-teaming), so all its pairs go to the safety set."
    )
    edit_pairs: Literal["off", "two", "three"] = setting(
        "off",
        "Pairs made from annotators' edits (Llama 3's edited > chosen > rejected), beside each judged pair: off, "
        "two (adds edited > chosen) or three (also edited > rejected); the `edited` column is exported either way.",
    )
    edit_strength: Literal["significantly_better", "better", "slightly_better", "negligibly_better"] = setting(
        "better", "Strength of the pairs made from edits (edited > rejected is never weaker than the judged pair)."
    )
    audit: bool = setting(
        True,
        "Audit what is exported (`prefkit data audit`: length/style confounds, leakage, bad answers, position bias "
        "from the judgements): OUT/audit.json, OUT/audit.svg and a section of the card; `prefkit train` reads it.",
    )
    push_to_hub: str | None = setting(None, "Also push to the Hub as ORG/NAME.")
    private: bool = setting(False, "Make the pushed Hub dataset private.")
    columns: dict[str, str] = setting(help=COLUMNS_HELP, factory=dict)
