"""`DedupConfig`: the settings of `prefkit data dedup` and of `prefkit.data.dedup`'s functions, each
declared once with its default and its documentation (the option help and the config reference
read them from here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prefkit.core.config import setting
from prefkit.data.formats import COLUMNS_HELP


@dataclass
class DedupConfig:
    """Exact duplicates first, then MinHash near-duplicates of a key (see `prefkit.data.dedup`)."""

    on: str = setting(
        "auto",
        "Key to compare: prompt, prompt+chosen, prompt+response, chosen, response, … "
        "('auto': prompt for preference data, prompt+response for prompt/response data).",
    )
    threshold: float = setting(0.8, "Jaccard similarity at or above which rows are near-duplicates.")
    num_perm: int = setting(128, "MinHash permutations.")
    ngram: int = setting(0, "Word/syllable n-gram size for shingles (0: chosen from text length).")
    seed: int = setting(1, "MinHash seed.")
    verify: Literal["exact", "estimate"] = setting(
        "exact", "Confirm candidate pairs by 'exact' Jaccard or 'estimate' (from the signatures)."
    )
    workers: int = setting(
        0, "Processes for hashing (0: all cores; with --engine ray and no --address: the local Ray instance's CPUs)."
    )
    engine: Literal["local", "ray"] = setting(
        "local", "local (this machine's cores) or ray (Ray Data; pip install 'prefkit[ray]')."
    )
    address: str | None = setting(
        None, "--engine ray: the cluster to join (e.g. ray://head:10001 or auto); default: start a local Ray instance."
    )
    report: str | None = setting(None, "Report path (default: OUT with .dedup-report.json).")
    columns: dict[str, str] = setting(help=COLUMNS_HELP, factory=dict)
