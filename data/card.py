"""The dataset card (README.md): YAML metadata the Hub reads, then prose on how the data was made."""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml

from prefkit.data.schema import MARGINS, MarginScheme, Strength

# Where the Hub keeps each split's Parquet files after `push_to_hub`; local `--parquet` output
# uses the same layout so the card's `configs` hold for both.
DATA_FILES = "data/{split}-*"
# Without `--parquet` the card points at the save_to_disk Arrow files, so `load_dataset(OUT)`
# works on every export (`prefkit.core.hub` points the pushed card at the Hub's Parquet files).
ARROW_FILES = "{split}/data-*.arrow"


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def card_metadata(dsdict: Any, *, name: str, provenance: dict[str, Any], parquet: bool = True) -> dict[str, Any]:
    language = provenance.get("language")
    files = DATA_FILES if parquet else ARROW_FILES
    splits = [{"name": s, "num_bytes": int(ds.data.nbytes), "num_examples": ds.num_rows} for s, ds in dsdict.items()]
    meta: dict[str, Any] = {"pretty_name": name, "license": provenance.get("license") or "other"}
    if language:  # detected or given; never guessed
        meta["language"] = [language] if isinstance(language, str) else list(language)
    return {
        **meta,
        "task_categories": ["text-generation"],
        "tags": ["preference", "rlhf", "dpo", "reward-modeling", "prefkit"],
        "size_categories": [_size_category(sum(ds.num_rows for ds in dsdict.values()))],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": files.format(split=s)} for s in dsdict],
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


def hub_card(card: str) -> str:
    """The card as pushed: `push_to_hub` stores each split as Parquet under data/, so the
    `configs` point there whatever the local export held."""
    front, sep, body = card.partition("\n---\n")
    if not card.startswith("---\n") or not sep:
        return card
    meta = yaml.safe_load(front[4:]) or {}
    for config in meta.get("configs", []):
        for entry in config.get("data_files", []):
            entry["path"] = DATA_FILES.format(split=entry["split"])
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n" + body


_SAFETY_BINS = {
    "safe_vs_unsafe": "chosen safe, rejected unsafe",
    "both_safe": "both safe",
    "both_unsafe": "both unsafe",
    "unsafe_vs_safe": "chosen unsafe, rejected safe",
}


def render_card(
    dsdict: Any,
    *,
    name: str,
    margin: str,
    test_size: float,
    seed: int,
    provenance: dict[str, Any],
    parquet: bool = True,
    trl: bool = False,
) -> str:
    """README.md text: YAML front matter plus how the dataset was made."""
    meta = card_metadata(dsdict, name=name, provenance=provenance, parquet=parquet)
    scheme = MarginScheme(margin)
    counts = {s: ds.num_rows for s, ds in dsdict.items()}
    strengths: Counter[str] = Counter()
    for ds in dsdict.values():
        strengths.update(v if v is not None else "none" for v in ds["strength"])
    prompts = {s: len(set(ds["question"])) for s, ds in dsdict.items()}
    bins: Counter[str] = Counter()
    adversarial = multi_turn = 0
    for ds in dsdict.values():
        bins.update(v if v is not None else "unknown" for v in ds["safety_bin"])
        adversarial += sum(bool(v) for v in ds["adversarial"])
        multi_turn += sum(bool(v) for v in ds["history"])
    fmt = provenance.get("format")
    language = meta.get("language")

    body = [
        f"# {name}",
        "",
        "Human-preference pairs in the Vi-Alpaca-Preference layout (`question`, `chosen`, `rejected`), "
        "built with prefkit for reward modelling and DPO.",
        "",
        "## How it was made",
        "",
        f"- **Source**: `{provenance.get('source', 'unknown')}`" + (f" (format `{fmt}`)." if fmt else "."),
    ]
    if provenance.get("set"):
        body.append(
            f"- **Set**: Llama 2's {provenance['set']} set ({provenance.get('set_rows', '')} pairs): "
            + (
                "every pair."
                if provenance["set"] == "helpfulness"
                else "pairs on adversarial prompts or with a response flagged unsafe, without the pairs whose chosen "
                "response is unsafe and the other safe (Llama 2 leaves those out)."
            )
        )
    if provenance.get("judgements"):
        agg = provenance.get("aggregate", {})
        body += [
            f"- **Judgements**: `{provenance['judgements']}`, aggregated per pair with the "
            f"`{agg.get('rule', provenance.get('rule', 'mean'))}` rule: winner -> `chosen`, loser -> `rejected`. "
            "A side marked negligibly better is a winner (margin 0); pairs with no winner (ties, all unsure) are "
            "dropped, as in Llama 2; pairs whose chosen response "
            "at least half the annotators flagged unsafe while the other was not flagged are dropped.",
        ]
        if agg:  # counts only when the aggregation reported them (prefkit.data.export.export_judged does)
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
                + (
                    " (left out: only complete pairs were exported)."
                    if comp.get("complete_only")
                    else " (included; their `n_annotators` says how many judged them, and a single judgement "
                    "has agreement 1.0 by definition)."
                )
            )
    if provenance.get("dedup"):
        body.append(f"- **Deduplication**: {provenance['dedup']}")
    body += [
        f"- **Split**: by prompt (no question is in two splits), test share {test_size:g}, seed {seed}.",
        "- **Rows**: " + ", ".join(f"{s} {n} ({prompts[s]} prompts)" for s, n in counts.items()) + ".",
        "- **Strength** (Llama 2's four levels): " + ", ".join(f"{k} {v}" for k, v in sorted(strengths.items())) + ".",
        "- **Safety bin** (Llama 2): "
        + ", ".join(f"{_SAFETY_BINS.get(k, k)} {v}" for k, v in sorted(bins.items()))
        + f"; {adversarial} pairs on adversarial prompts.",
        f"- **Conversations**: {multi_turn} rows have earlier turns (`history`); the rest are one-turn prompts.",
        "- **Language**: "
        + (
            ", ".join(language) + (" (detected from the text)" if provenance.get("language_detected") else "")
            if language
            else "not given and not detected"
        )
        + ".",
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
        *(
            [
                "- `prompt`, `chosen`, `rejected`: TRL's conversational preference format — `prompt` is the "
                "message list (system?, user, assistant, …, user), `chosen` / `rejected` one assistant message "
                "each. TRL's DPO and reward trainers read these three columns as they are.",
                "- `question`, `system`, `chosen_text`, `rejected_text`: the same in the flat Vi-Alpaca layout "
                "(`question` is the last user turn, `history` the turns before it).",
            ]
            if trl
            else [
                "- `question`, `system`: the prompt (`question` is the last user turn); `chosen`, `rejected`: the "
                "preferred and the other answer."
            ]
        ),
        "- `history`: the earlier turns of a multi-turn prompt as JSON text "
        '(`[{"role": "user", "content": …}, {"role": "assistant", …}, …]`), null for one-turn prompts.',
        "- `adversarial`: the prompt is red-teaming / potentially unsafe.",
        "- `chosen_unsafe`, `rejected_unsafe`, `safety_bin`: whether annotators flagged each answer unsafe (null: "
        "not known), and Llama 2's bin for the pair (`safe_vs_unsafe`, `both_safe`, `both_unsafe`).",
        "- `strength`, `margin`: how much better `chosen` is, and the margin from it.",
        "- `n_annotators`, `agreement`: how many annotators judged the pair, and the share who chose `chosen`.",
        "- `chosen_*`, `rejected_*`: how each answer was generated (model, adapter, temperature, top_p, seed, "
        "finish reason, token count).",
        "",
        "## Use",
        "",
        "```python",
        "from datasets import load_dataset, load_from_disk",
        "ds = load_from_disk(PATH)  # or load_dataset(PATH) here, load_dataset(REPO_ID) once pushed",
        "```",
        "",
    ]
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n" + "\n".join(body)
