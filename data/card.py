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
    audit: dict[str, Any] | None = None,
) -> str:
    """README.md text: YAML front matter plus how the dataset was made (and its audit, when given:
    `prefkit.data.audit.card_section`)."""
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
        mix = provenance.get("annotators")
        if mix:
            people = agg.get("judgements", 0) - agg.get("model_judgements", 0) if agg else None
            models = agg.get("model_judgements", 0) if agg else None
            body.append(
                f"- **Annotators**: {mix}"
                + (f" ({people} judgements by people, {models} by AI judges)" if agg else "")
                + (
                    "; `n_model_annotators` says how many of a row's annotators were AI judges."
                    if mix != "human-only"
                    else "; no AI judge's judgement is in this dataset."
                )
            )
        decided = agg.get("decided_by") or {}
        rule = agg.get("rule", provenance.get("rule", "mean"))
        if decided.get("review") or decided.get("gold") or agg.get("decided_unsure_dropped"):
            parts = [f"{decided.get(rule, 0)} by the `{rule}` rule"]
            if decided.get("review") or agg.get("decided_unsure_dropped"):
                parts.append(f"{decided.get('review', 0)} by a reviewer who settled a disagreement")
            if decided.get("gold"):
                parts.append(f"{decided['gold']} gold pairs by their expected answer")
            unsure = agg.get("decided_unsure_dropped", 0)
            body.append(
                "- **Decided by** (column `decided_by`): "
                + ", ".join(parts)
                + (f"; {unsure} left out because the reviewer was unsure." if unsure else ".")
            )
        if agg.get("reliability"):
            rel = agg["reliability"].values()
            body.append(
                f"- **Annotator reliability** (`ability` rule, Dawid and Skene 1979): estimated for {len(rel)} "
                f"annotators from the overlap, from {min(rel):.2f} to {max(rel):.2f} (the probability that an "
                "annotator's answer is the true side); each vote weighs by it."
            )
        gold = provenance.get("gold")
        if gold:
            body.append(f"- **Gold pairs**: {gold}")
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
    calibration = _calibration(provenance.get("calibration"))
    edits = provenance.get("edits")
    if edits:
        made = {"off": "none (the edits are in the `edited` column)", "two": "edited > chosen"}.get(
            edits["edit_pairs"], "edited > chosen and edited > rejected"
        )
        body.append(
            f"- **Edits** (Llama 3's edit-and-rank): {edits['edited_pairs']} judged pairs carry an annotator's edit "
            f"of the chosen answer; pairs added from them: {made}"
            + (f", strength {edits['edit_strength']}." if edits["edit_pairs"] != "off" else ".")
        )
    body += [
        (
            f"- **Split**: {provenance['splits']}."
            if provenance.get("splits")
            else f"- **Split**: by prompt (no question is in two splits), test share {test_size:g}, seed {seed}."
        ),
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
        f"## Margin (`{scheme.value}` scheme, Llama 2 Table 27)",
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
        "- `n_annotators`, `agreement`: how many annotators judged the pair, and the share who chose `chosen` "
        "(unsure counts as not choosing it); 0 and null for rows that came without judgements.",
        "- `n_model_annotators`: how many of those annotators were AI judges (0 unless model judgements were "
        "included).",
        "- `decided_by`: what picked `chosen`: the aggregation rule (`mean`, `majority`, `ability`), a reviewer "
        "(`review`) or a gold pair's expected answer (`gold`); null for rows read labelled.",
        "- `votes_chosen`, `votes_rejected`: how many of them preferred `chosen` / `rejected` (the rest were "
        "unsure); null without judgements. The reward model's soft label is "
        "(votes_chosen + ½ · unsure) / n_annotators.",
        "- `edited`: an annotator's edit of `chosen` (Llama 3's edit-and-rank: edited > chosen > rejected), null "
        "when nobody edited it; `derived_from`: for a pair made from an edit, the `id` of the judged row it "
        "came from (null for judged rows).",
        "- `chosen_*`, `rejected_*`: how each answer was generated (model, adapter, temperature, top_p, seed, "
        "finish reason, token count).",
        "- `selected_by`: how the annotation queue chose the pair for labelling: `calibration` (the calibration "
        "share), `random` (the seeded shuffle or the queue's random share, chosen independently of any model) or "
        "`uncertainty` (a reward model's priority); null when the rows did not come from the annotation store. "
        "Only the `random` rows (with `calibration`, also a seeded draw) are an unbiased sample of the pairs.",
        "",
        *calibration,
        "## Use",
        "",
        "```python",
        "from datasets import load_dataset, load_from_disk",
        "ds = load_from_disk(PATH)  # or load_dataset(PATH) here, load_dataset(REPO_ID) once pushed",
        "```",
        "",
    ]
    if audit is not None:
        from prefkit.data.audit import AUDIT_SVG, card_section

        body += [card_section(audit, figure=AUDIT_SVG)]
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n" + "\n".join(body)


def _calibration(figures: Any) -> list[str]:
    """The card's section on each AI judge's agreement with people on the pairs both judged
    (`prefkit.annotate.calibration`): Cohen's kappa on the winner and agreement per level."""
    if not figures:
        return []
    lines = [
        "## AI judges against people",
        "",
        "On the pairs people judged too: the share of human judgements whose side the judge also chose, per "
        "level the person gave, and Cohen's kappa on the winner (a / unsure / b).",
        "",
        "| judge | pairs | judgements | kappa (winner) | significantly | better | slightly | negligibly | unsure |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, f in figures.items():
        cells = []
        for level in ("significantly better", "better", "slightly better", "negligibly better", "unsure"):
            cell = f.get("per_level", {}).get(level) or {}
            share, n = cell.get("agreement"), cell.get("n", 0)
            cells.append(f"{share:.2f} (n={n})" if share is not None else f"– (n={n})")
        kappa = f.get("kappa")
        lines.append(
            f"| `{name}` | {f.get('pairs', 0)} | {f.get('judgements', 0)} | "
            + (f"{kappa:.3f}" if kappa is not None else "–")
            + " | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "For unsure, the share is how often the judge was unsure too.", ""]
    for name, f in figures.items():
        confusion = f.get("confusion") or {}
        if not confusion:
            continue
        columns = sorted({c for row in confusion.values() for c in row}, key=_signed_order)
        lines += [
            f"Confusion matrix of `{name}` (rows: people's choices, columns: the judge's; a and b in the pair's own "
            "order):",
            "",
            "| person / judge | " + " | ".join(columns) + " |",
            "| --- | " + " | ".join("---" for _ in columns) + " |",
            *(
                f"| {person} | " + " | ".join(str(row.get(c, 0)) for c in columns) + " |"
                for person, row in sorted(confusion.items(), key=lambda kv: _signed_order(kv[0]))
            ),
            "",
        ]
    return lines


def _signed_order(label: str) -> int:
    """Sort key of "a significantly better" … "unsure" … "b significantly better"."""
    if label == "unsure":
        return 0
    side, _, level = label.partition(" ")
    rank = {"significantly better": 4, "better": 3, "slightly better": 2, "negligibly better": 1}.get(level, 0)
    return -rank if side == "a" else rank
