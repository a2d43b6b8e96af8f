"""The dataset card (README.md): YAML metadata the Hub reads, then prose on how the data was made."""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml

from data.schema import MARGINS, MarginScheme, Strength

# Where the Hub keeps each split's Parquet files after `push_to_hub`; local `--parquet` output
# uses the same layout so the card's `configs` hold for both.
DATA_FILES = "data/{split}-*"


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def card_metadata(dsdict: Any, *, name: str, provenance: dict[str, Any]) -> dict[str, Any]:
    language = provenance.get("language") or ["vi"]
    splits = [
        {"name": s, "num_bytes": int(ds.data.nbytes), "num_examples": ds.num_rows} for s, ds in dsdict.items()
    ]
    return {
        "pretty_name": name,
        "license": provenance.get("license") or "other",
        "language": [language] if isinstance(language, str) else list(language),
        "task_categories": ["text-generation"],
        "tags": ["preference", "rlhf", "dpo", "reward-modeling", "prefkit"],
        "size_categories": [_size_category(sum(ds.num_rows for ds in dsdict.values()))],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": DATA_FILES.format(split=s)} for s in dsdict],
            }
        ],
        "dataset_info": {
            "features": next(iter(dsdict.values())).features._to_yaml_list(),
            "splits": splits,
            "dataset_size": sum(s["num_bytes"] for s in splits),
        },
    }


def _margin_table(scheme: MarginScheme) -> str:
    lines = ["| strength | margin |", "| --- | --- |"]
    lines += [f"| {s.label} | {MARGINS[scheme][s]:.3g} |" for s in Strength]
    return "\n".join(lines)


def render_card(dsdict: Any, *, name: str, margin: str, test_size: float, seed: int, provenance: dict[str, Any]) -> str:
    """README.md text: YAML front matter plus how the dataset was made."""
    meta = card_metadata(dsdict, name=name, provenance=provenance)
    scheme = MarginScheme(margin)
    counts = {s: ds.num_rows for s, ds in dsdict.items()}
    strengths: Counter[str] = Counter()
    for ds in dsdict.values():
        strengths.update(v if v is not None else "none" for v in ds["strength"])
    prompts = {s: len(set(ds["question"])) for s, ds in dsdict.items()}

    body = [
        f"# {name}",
        "",
        "Human-preference pairs in the Vi-Alpaca-Preference layout (`question`, `chosen`, `rejected`), "
        "built with prefkit for reward modelling and DPO.",
        "",
        "## How it was made",
        "",
        f"- **Source**: `{provenance.get('source', 'unknown')}` (format `{provenance.get('format', 'unknown')}`).",
    ]
    if provenance.get("judgements"):
        agg = provenance.get("aggregate", {})
        body += [
            f"- **Judgements**: `{provenance['judgements']}`, aggregated per pair with the "
            f"`{agg.get('rule', provenance.get('rule', 'mean'))}` rule: winner -> `chosen`, loser -> `rejected`. "
            "A side marked negligibly better is a winner (margin 0); pairs with no winner (ties, all unsure) are "
            "dropped, as in Llama 2; pairs whose chosen response "
            "at least half the annotators flagged unsafe while the other was not flagged are dropped.",
        ]
        if agg:  # counts only when the aggregation reported them (data.export.export_judged does)
            body.append(
                f"- **Aggregation counts**: {agg['pairs']} pairs, {agg['judgements']} judgements, "
                f"{agg['exported']} exported, {agg['ties_dropped']} ties dropped, "
                f"{agg['unsafe_chosen_dropped']} dropped as unsafe-chosen, "
                f"{agg['unjudged_pairs']} pairs not yet judged."
            )
        comp = provenance.get("completeness")
        if comp:  # the annotation store knows each pair's overlap
            body.append(
                f"- **Completeness**: {comp['complete_pairs']} judged pairs have all the judgements their overlap "
                f"asks for, {comp['below_overlap_pairs']} have fewer"
                + (" (left out: only complete pairs were exported)." if comp.get("complete_only")
                   else " (included; their `n_annotators` says how many judged them, and a single judgement "
                        "has agreement 1.0 by definition).")
            )
    if provenance.get("dedup"):
        body.append(f"- **Deduplication**: {provenance['dedup']}")
    body += [
        f"- **Split**: by prompt (no question is in two splits), test share {test_size:g}, seed {seed}.",
        "- **Rows**: " + ", ".join(f"{s} {n} ({prompts[s]} prompts)" for s, n in counts.items()) + ".",
        "- **Strength** (Llama 2's four levels): "
        + ", ".join(f"{k} {v}" for k, v in sorted(strengths.items())) + ".",
        "",
        f"## Margin (`{scheme.value}` scheme, Llama 2 Table 28)",
        "",
        "`margin` is the m(r) in the reward loss -log σ(r_chosen − r_rejected − m(r)).",
        "",
        _margin_table(scheme),
        "",
        "## Columns",
        "",
        "- `id`: stable row id (the pair id when built from judgements).",
        "- `question`, `system`: the prompt; `chosen`, `rejected`: the preferred and the other answer.",
        "- `strength`, `margin`: how much better `chosen` is, and the margin from it.",
        "- `n_annotators`, `agreement`: how many annotators judged the pair, and the share who chose `chosen`.",
        "- `chosen_*`, `rejected_*`: how each answer was generated (model, adapter, temperature, top_p, seed, "
        "finish reason, token count).",
        "",
        "## Use",
        "",
        "```python",
        "from datasets import load_from_disk  # a local export; load_dataset(REPO_ID) once pushed",
        "ds = load_from_disk(PATH)",
        "```",
        "",
    ]
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n" + "\n".join(body)
