"""`ExportConfig`: the settings of `prefkit data export`, `prefkit annotate export` and
`prefkit.data.export`'s functions, each declared once with its default and its documentation (the
options' help and the config reference read them from here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prefkit.core.config import setting


@dataclass
class ExportConfig:
    """A Vi-Alpaca-style `DatasetDict` (train/test by prompt) with a dataset card (see `prefkit.data.export`)."""

    test_size: float = setting(0.1, "Share of prompts in the test split.")
    seed: int = setting(42, "Seed for the train/test split.")
    margin: Literal["none", "small", "large"] = setting(
        "small", "Margin scheme: none, small or large (Llama 2, Table 28)."
    )
    rule: Literal["mean", "majority"] = setting("mean", "How several judgements become one row: mean or majority.")
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
    push_to_hub: str | None = setting(None, "Also push to the Hub as ORG/NAME.")
    private: bool = setting(False, "Make the pushed Hub dataset private.")
