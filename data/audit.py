"""An audit of preference data before any training: what could teach a model the wrong thing.

`audit_rows` looks at exported rows (per split), `audit_source` at any preference file or export
folder. The report (a dict, written as `audit.json`; `card_section` renders it for the dataset
card, `svg_plot` draws the length figures) holds:

- **Style and length** of chosen vs rejected, overall and per strength level: the share of pairs
  where chosen is the longer answer (in words, or a tokenizer's tokens), the median length ratio,
  the mean number of markdown headers, list items, bold spans and code blocks on each side, and a
  logistic regression of the preference on those features' normalised differences
  (c − r)/(c + r), standardised — Chatbot Arena's style control (Li et al. 2024, "Does style
  matter?") applied to training pairs. Each pair enters in both orientations (chosen first,
  label 1; rejected first, label 0), so there is no intercept to absorb a side; its 5-fold
  cross-validated accuracy says how often style alone tells the preference.
- **Position bias** (from judgements): the share of decided votes for the answer shown on the left,
  overall and per annotator (0.5 is none).
- **The human agreement ceiling** per strength level: on pairs judged by two or more people, the
  mean share who preferred chosen (unsure counting half) — what a model can reach against a random
  annotator's label — beside a reward (or DPO) run's held-out accuracy per level when given.
- **Leakage**: prompts of the test split that are near-duplicates (MinHash, `prefkit.data.dedup`) of
  train prompts; prompts that are near-duplicates of earlier rounds' datasets (`against`); prompts
  sharing a word n-gram with an evaluation set (`decontaminate`; short prompts: the whole prompt).
- **Answers**: identical chosen and rejected, unreadable rows (empty answers …), answers cut off by
  the length limit, and refusals chosen on helpfulness (non-adversarial) prompts.

`red_flags` turns the figures into flags by `AuditConfig`'s thresholds; `prefkit train` reads them
(`prefkit.train.audit_gate`).
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prefkit.core.errors import DataError
from prefkit.data.audit_config import AUDIT_JSON, AuditConfig
from prefkit.data.schema import Judgement, PreferenceRow, Strength
from prefkit.data.shingles import words

FEATURES = ("length", "headers", "lists", "bold", "code_blocks")
LEVELS = [s.value for s in Strength] + ["none"]
AUDIT_SVG = "audit.svg"
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)
_HEADER = re.compile(r"^#{1,6}\s", re.M)
_LIST = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s", re.M)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
# Refusals, English and Vietnamese, looked for at the start of an answer.
_REFUSAL = re.compile(
    r"\b(?:I'?m sorry|I am sorry|I apologi[sz]e|I (?:can ?not|can't|cannot|won't|will not|am unable to|'m unable to|"
    r"am not able to|'m not able to) (?:help|assist|provide|do|answer|comply|give|share|support)|As an AI\b)"
    r"|(?:Xin lỗi,? (?:nhưng )?tôi không thể|Tôi không thể (?:giúp|hỗ trợ|cung cấp|trả lời)|Tôi xin lỗi|"
    r"Là một (?:trợ lý|mô hình) (?:AI|ngôn ngữ))",
    re.I,
)
_REFUSAL_CHARS = 240


# ---------------------------------------------------------------------------------------------
# Style features and the style-control regression
# ---------------------------------------------------------------------------------------------


def style_features(text: str, length: Callable[[str], int]) -> dict[str, int]:
    """Length and markdown counts of one answer (markdown outside fenced code)."""
    prose = _FENCE.sub("", text)
    return {
        "length": length(text),
        "headers": len(_HEADER.findall(prose)),
        "lists": len(_LIST.findall(prose)),
        "bold": len(_BOLD.findall(prose)),
        "code_blocks": text.count("```") // 2,
    }


def _normalised_diff(c: float, r: float) -> float:
    return (c - r) / (c + r) if c + r > 0 else 0.0


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 50) -> np.ndarray:
    """Logistic regression without intercept by Newton's method (L2 `l2` keeps it finite when a
    feature separates the data)."""
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (p - y) / len(y) + l2 * w
        hess = (x.T * (p * (1 - p))) @ x / len(y) + l2 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def style_control(diffs: np.ndarray, folds: int = 5) -> dict[str, Any]:
    """The regression of the preference on the style differences (rows: pairs, chosen − rejected):
    standardised coefficients and the cross-validated share of pairs whose preference style alone
    predicts (a pair the model scores exactly 0 counts half)."""
    n = len(diffs)
    if n < 2:
        return {"coefficients": None, "style_accuracy": None}
    scale = np.sqrt((diffs**2).mean(axis=0))  # the spread of the symmetric data (mean 0): constants count
    used = scale > 0
    if not used.any():
        return {"coefficients": dict.fromkeys(FEATURES, 0.0), "style_accuracy": 0.5}
    x = diffs[:, used] / scale[used]

    def fit(idx: np.ndarray) -> np.ndarray:
        xs = np.vstack([x[idx], -x[idx]])  # both orientations: chosen first (1), rejected first (0)
        return _fit_logistic(xs, np.concatenate([np.ones(len(idx)), np.zeros(len(idx))]))

    w = fit(np.arange(n))
    k = min(folds, n)
    scores = np.empty(n)
    for f in range(k):
        test = np.arange(f, n, k)
        train = np.setdiff1d(np.arange(n), test)
        scores[test] = x[test] @ (fit(train) if len(train) else w)
    accuracy = float(((scores > 0) + 0.5 * (scores == 0)).mean())
    coefficients = dict.fromkeys(FEATURES, 0.0)
    for name, value in zip([f for f, u in zip(FEATURES, used, strict=True) if u], w, strict=True):
        coefficients[name] = round(float(value), 4)
    return {"coefficients": coefficients, "style_accuracy": round(accuracy, 4)}


def _level(row: PreferenceRow) -> str:
    return row.strength.value if row.strength is not None else "none"


def style_report(rows: Sequence[PreferenceRow], length: Callable[[str], int]) -> dict[str, Any]:
    """Length and style of chosen vs rejected, overall ("all") and per strength level."""
    groups: dict[str, list[tuple[dict[str, int], dict[str, int]]]] = defaultdict(list)
    for r in rows:
        pair = (style_features(r.chosen, length), style_features(r.rejected, length))
        groups["all"].append(pair)
        groups[_level(r)].append(pair)
    out: dict[str, Any] = {}
    for name in ["all", *LEVELS]:
        pairs = groups.get(name)
        if not pairs:
            continue
        lc = [c["length"] for c, _ in pairs]
        lr = [r["length"] for _, r in pairs]
        decided = [(a, b) for a, b in zip(lc, lr, strict=True) if a != b]
        diffs = np.array([[_normalised_diff(c[f], r[f]) for f in FEATURES] for c, r in pairs], dtype=float)
        out[name] = {
            "pairs": len(pairs),
            "chosen_longer_share": round(sum(a > b for a, b in decided) / len(decided), 4) if decided else None,
            "equal_length": len(pairs) - len(decided),
            "median_length_ratio": round(statistics.median(a / b for a, b in zip(lc, lr, strict=True) if b), 4)
            if any(lr)
            else None,
            "mean_length": {"chosen": round(sum(lc) / len(lc), 1), "rejected": round(sum(lr) / len(lr), 1)},
            "mean_features": {
                f: {
                    "chosen": round(sum(c[f] for c, _ in pairs) / len(pairs), 3),
                    "rejected": round(sum(r[f] for _, r in pairs) / len(pairs), 3),
                }
                for f in FEATURES[1:]
            },
            **style_control(diffs),
        }
    return out


# ---------------------------------------------------------------------------------------------
# Position bias, agreement, answers
# ---------------------------------------------------------------------------------------------


def position_bias(judgements: Sequence[Judgement]) -> dict[str, Any]:
    """The share of decided votes (unsure left out) for the answer shown on the left."""

    def tally(js: Sequence[Judgement]) -> dict[str, Any]:
        left = sum(1 for j in js if j.preferred is not None and j.shown_order and j.preferred == j.shown_order[0])
        decided = sum(1 for j in js if j.preferred is not None)
        return {"decided": decided, "left": left, "left_share": round(left / decided, 4) if decided else None}

    shown = [j for j in judgements if j.shown_order is not None]
    by: dict[str, list[Judgement]] = defaultdict(list)
    for j in shown:
        by[j.annotator].append(j)
    return {
        "judgements": len(judgements),
        "without_shown_order": len(judgements) - len(shown),
        **tally(shown),
        "by_annotator": {a: tally(js) for a, js in sorted(by.items())},
    }


def agreement_ceiling(rows: Sequence[PreferenceRow]) -> dict[str, Any]:
    """Per strength level, over pairs judged by two or more people: the mean share who preferred
    chosen (unsure half) and the mean `agreement` (unsure against)."""
    by: dict[str, list[PreferenceRow]] = defaultdict(list)
    for r in rows:
        if r.n_annotators >= 2 and r.derived_from is None:
            by["all"].append(r)
            by[_level(r)].append(r)
    return {
        name: {
            "pairs": len(rs),
            "ceiling": round(sum(r.soft_label for r in rs) / len(rs), 4),
            "mean_agreement": round(sum(r.agreement or 0.0 for r in rs) / len(rs), 4),
        }
        for name in ["all", *LEVELS]
        if (rs := by.get(name))
    }


def reward_accuracy(summary_path: str | Path) -> dict[str, Any]:
    """A reward run's held-out accuracy per strength level (or a DPO run's implicit-reward accuracy)."""
    try:
        summary = json.loads(Path(summary_path).read_text(encoding="utf-8"))
        metrics = summary["metrics"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"not a run summary ({type(e).__name__}: {e})", file=summary_path) from None
    for key, overall in (
        ("test_accuracy_by_strength", "test_accuracy"),
        ("eval_implicit_accuracy_by_strength", "eval_implicit_accuracy"),
    ):
        if isinstance(metrics.get(key), dict):
            return {
                "stage": summary.get("stage"),
                "summary": str(summary_path),
                "accuracy": metrics.get(overall),
                "by_strength": metrics[key],
            }
    raise DataError("the summary has no accuracy per strength (a reward or DPO run's)", file=summary_path)


def is_refusal(text: str) -> bool:
    """The answer opens with a refusal (English or Vietnamese)."""
    return bool(_REFUSAL.search(text[:_REFUSAL_CHARS]))


def answers_report(rows: Sequence[PreferenceRow]) -> dict[str, Any]:
    from prefkit.data.edits import same_text

    helpful = [r for r in rows if not r.adversarial]
    adversarial = [r for r in rows if r.adversarial]
    return {
        "identical": sum(1 for r in rows if same_text(r.chosen, r.rejected)),
        "truncated_chosen": sum(1 for r in rows if r.chosen_meta.get("finish_reason") == "length"),
        "truncated_rejected": sum(1 for r in rows if r.rejected_meta.get("finish_reason") == "length"),
        "helpfulness_pairs": len(helpful),
        "refusals_chosen": sum(1 for r in helpful if is_refusal(r.chosen)),
        "refusals_rejected": sum(1 for r in helpful if is_refusal(r.rejected)),
        "adversarial_pairs": len(adversarial),
        "refusals_chosen_adversarial": sum(1 for r in adversarial if is_refusal(r.chosen)),
        "refusals_rejected_adversarial": sum(1 for r in adversarial if is_refusal(r.rejected)),
    }


# ---------------------------------------------------------------------------------------------
# Leakage and contamination
# ---------------------------------------------------------------------------------------------


def _prompt_text(r: PreferenceRow) -> str:
    return "\n".join([*(c for _, c in r.history), r.question])


def near_duplicate_groups(texts: Sequence[str], threshold: float) -> list[int]:
    """A cluster id per text (MinHash near-duplicates share one; `prefkit.data.dedup`)."""
    from prefkit.data.dedup import dedup_records

    if not texts:
        return []
    _, report = dedup_records([{"t": t} for t in texts], ["t"], threshold=threshold)
    group = list(range(len(texts)))
    for removed in report.removed:
        group[removed.row] = removed.duplicate_of
    return group


def leakage(
    splits: Mapping[str, Sequence[PreferenceRow]], against: Mapping[str, Sequence[str]], threshold: float
) -> dict[str, Any]:
    """Test prompts near-duplicating train prompts; this dataset's prompts near-duplicating each of
    `against`'s (earlier rounds)."""
    texts: list[str] = []
    owner: list[str] = []
    for name, rows in splits.items():
        texts += [_prompt_text(r) for r in rows]
        owner += [f"split:{name}"] * len(rows)
    for name, prompts in against.items():
        texts += list(prompts)
        owner += [f"against:{name}"] * len(prompts)
    group = near_duplicate_groups(texts, threshold)
    members: dict[int, set[str]] = defaultdict(set)
    for g, o in zip(group, owner, strict=True):
        members[g].add(o)
    ours = [i for i, o in enumerate(owner) if o.startswith("split:")]
    out: dict[str, Any] = {"threshold": threshold}
    if "train" in splits and "test" in splits:
        leaked = [i for i in ours if owner[i] == "split:test" and "split:train" in members[group[i]]]
        out["train_test"] = {
            "test_prompts": len(splits["test"]),
            "leaked": len(leaked),
            "examples": [texts[i][:120] for i in leaked[:5]],
        }
    out["against"] = {
        name: {
            "prompts": len(ours),
            "near_duplicates": sum(1 for i in ours if f"against:{name}" in members[group[i]]),
        }
        for name in against
    }
    return out


def _grams(text: str, n: int) -> set[tuple[str, ...]]:
    toks = words(text)
    if not toks:
        return set()
    if len(toks) < n:
        return {tuple(toks)}
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def contamination(prompts: Sequence[str], eval_prompts: Sequence[str], n: int, source: str) -> dict[str, Any]:
    """Prompts sharing a word n-gram with the evaluation set (a prompt shorter than n words: itself)."""
    eval_grams: set[tuple[str, ...]] = set()
    for p in eval_prompts:
        eval_grams |= _grams(p, n)
    hits = [p for p in prompts if _grams(p, n) & eval_grams]
    return {
        "file": source,
        "ngram": n,
        "eval_prompts": len(eval_prompts),
        "prompts": len(prompts),
        "overlapping": len(hits),
        "share": round(len(hits) / len(prompts), 4) if prompts else None,
        "examples": [h[:120] for h in hits[:5]],
    }


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def length_function(tokenizer: str | None) -> tuple[Callable[[str], int], str]:
    """Length in a tokenizer's tokens, or in words (`prefkit.data.shingles.words`)."""
    if tokenizer is None:
        return (lambda text: len(words(text))), "words"
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(tokenizer)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot load the tokenizer: {e}", file=tokenizer, field="tokenizer") from None
    return (lambda text: len(tok(text, add_special_tokens=False)["input_ids"])), f"tokens ({tokenizer})"


def audit_rows(
    splits: dict[str, list[PreferenceRow]],
    cfg: AuditConfig | None = None,
    *,
    judgements: Sequence[Judgement] | None = None,
    source: str | None = None,
    unreadable: Sequence[DataError] = (),
) -> dict[str, Any]:
    """The audit report of exported rows (`splits`: split name -> rows)."""
    from prefkit.data.readers import read_preferences, read_prompts

    cfg = cfg or AuditConfig()
    rows = [r for rs in splits.values() for r in rs]
    judged = [r for r in rows if r.derived_from is None]
    length, unit = length_function(cfg.tokenizer)
    report: dict[str, Any] = {
        "source": source,
        "splits": {name: len(rs) for name, rs in splits.items()},
        "rows": len(rows),
        "pairs_from_edits": len(rows) - len(judged),
        "unreadable": len(unreadable),
        "unreadable_examples": [str(e) for e in list(unreadable)[:5]],
        "length_unit": unit,
        "strength": dict(Counter(_level(r) for r in judged)),
        "style": style_report(judged, length),
        "answers": answers_report(judged),
        "agreement": agreement_ceiling(judged),
    }
    if judgements is None and cfg.judgements:
        from prefkit.data.readers import read_judgements

        judgements = read_judgements(cfg.judgements)
    report["position_bias"] = position_bias(judgements) if judgements else None
    report["reward_model"] = reward_accuracy(cfg.reward_summary) if cfg.reward_summary else None
    against = {}
    for other in cfg.against:
        against[str(other)] = [_prompt_text(r) for r in read_preferences(other, errors=[])]
    report["leakage"] = leakage(splits, against, cfg.threshold)
    if cfg.decontaminate:
        eval_prompts = ["\n".join([*(c for _, c in p.history), p.question]) for p in read_prompts(cfg.decontaminate)]
        report["contamination"] = contamination(
            sorted({_prompt_text(r) for r in judged}), eval_prompts, cfg.ngram, cfg.decontaminate
        )
    else:
        report["contamination"] = None
    report["red_flags"] = red_flags(report, cfg)
    return report


def _outside(share: float | None, bound: float) -> bool:
    return share is not None and (share >= bound or share <= 1 - bound)


def red_flags(report: dict[str, Any], cfg: AuditConfig) -> list[dict[str, str]]:
    """The figures that should stop (or at least warn) a training run, by `cfg`'s thresholds."""
    flags: list[dict[str, str]] = []

    def flag(name: str, message: str) -> None:
        flags.append({"name": name, "message": message})

    style = report["style"].get("all")
    if style and style["pairs"] >= cfg.min_pairs and _outside(style["chosen_longer_share"], cfg.length_share):
        flag(
            "length_confound",
            f"chosen is the longer answer in {style['chosen_longer_share']:.0%} of {style['pairs']} pairs "
            f"(median length ratio {style['median_length_ratio']}): a model can learn length instead of quality",
        )
    if style and style["pairs"] >= cfg.min_pairs and (style["style_accuracy"] or 0) >= cfg.style_accuracy:
        flag(
            "style_predicts_preference",
            f"length and markdown alone predict the preference in {style['style_accuracy']:.0%} of pairs "
            "(cross-validated style control)",
        )
    bias = report.get("position_bias")
    if bias:
        if bias["decided"] >= cfg.min_pairs and _outside(bias["left_share"], cfg.position_share):
            flag(
                "position_bias", f"{bias['left_share']:.0%} of {bias['decided']} decided votes went to the left answer"
            )
        biased = [
            f"{a} {t['left_share']:.0%} of {t['decided']}"
            for a, t in bias["by_annotator"].items()
            if t["decided"] >= cfg.min_pairs and _outside(t["left_share"], cfg.position_share)
        ]
        if biased:
            flag("annotator_position_bias", "left-answer share: " + ", ".join(biased))
    leak = report["leakage"]
    if leak.get("train_test", {}).get("leaked"):
        t = leak["train_test"]
        flag("train_test_leakage", f"{t['leaked']} of {t['test_prompts']} test prompts near-duplicate a train prompt")
    for name, a in leak["against"].items():
        if a["near_duplicates"]:
            flag("cross_round_leakage", f"{a['near_duplicates']} prompts near-duplicate prompts of {name}")
    cont = report.get("contamination")
    if cont and cont["overlapping"]:
        flag(
            "contamination",
            f"{cont['overlapping']} prompts share a {cont['ngram']}-word n-gram with the evaluation set {cont['file']}",
        )
    ans = report["answers"]
    if ans["identical"]:
        flag("identical_answers", f"{ans['identical']} pairs have the same chosen and rejected answer")
    if report["unreadable"]:
        flag(
            "unreadable_rows",
            f"{report['unreadable']} rows could not be read (first: {report['unreadable_examples'][0]})",
        )
    truncated = ans["truncated_chosen"] + ans["truncated_rejected"]
    if report["rows"] and truncated / (2 * report["rows"]) >= cfg.truncated_share:
        flag("truncated_answers", f"{truncated} answers were cut off by the length limit (finish_reason length)")
    helpful = ans["helpfulness_pairs"]
    if helpful >= cfg.min_pairs and ans["refusals_chosen"] / helpful >= cfg.refusal_share:
        flag(
            "refusals_on_helpfulness",
            f"{ans['refusals_chosen']} of {helpful} chosen answers to helpfulness prompts are refusals",
        )
    return flags


def _splits_of(source: str | Path) -> list[str | None]:
    info = Path(source) / "dataset_dict.json"
    if info.is_file():
        try:
            return list(json.loads(info.read_text(encoding="utf-8"))["splits"])
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"unreadable dataset_dict.json: {e}", file=info) from None
    return [None]


def audit_source(source: str | Path, cfg: AuditConfig | None = None) -> dict[str, Any]:
    """Read `source` (an export folder: every split, or `cfg.split`; or any preference file) and audit it.
    Unreadable rows (an empty answer, …) are counted, not fatal."""
    from prefkit.data.readers import read_preferences

    cfg = cfg or AuditConfig()
    names = [cfg.split] if cfg.split is not None else _splits_of(source)
    bad: list[DataError] = []
    splits = {name or "train": read_preferences(source, name, errors=bad) for name in names}
    if not any(splits.values()):
        raise DataError("no readable preference rows to audit", file=str(source))
    return audit_rows(splits, cfg, source=str(source), unreadable=bad)


# ---------------------------------------------------------------------------------------------
# Rendering: the card's section, the figure, the files
# ---------------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def card_section(report: dict[str, Any], *, figure: str | None = None) -> str:
    """The dataset card's "Audit" section (markdown)."""
    lines = ["## Audit (`prefkit data audit`)", ""]
    flags = report["red_flags"]
    lines.append(
        "**Red flags**: " + ("none." if not flags else "; ".join(f"`{f['name']}`: {f['message']}" for f in flags) + ".")
    )
    lines += [
        "",
        f"Style and length of chosen vs rejected (lengths in {report['length_unit']}); style-only accuracy: how often "
        "a logistic regression on the differences in length, headers, lists, bold and code blocks predicts the "
        "preference (Chatbot Arena's style control; 5-fold cross-validated, 50% is none).",
        "",
        "| strength | pairs | chosen longer | median length ratio | style-only accuracy | human ceiling (pairs) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    ceiling = report["agreement"]
    for name, s in report["style"].items():
        c = ceiling.get(name)
        lines.append(
            f"| {name.replace('_', ' ')} | {s['pairs']} | {_pct(s['chosen_longer_share'])} | "
            f"{s['median_length_ratio'] if s['median_length_ratio'] is not None else '–'} | "
            f"{_pct(s['style_accuracy'])} | {(_pct(c['ceiling']) + ' (' + str(c['pairs']) + ')') if c else '–'} |"
        )
    rm = report.get("reward_model")
    if rm:
        lines += [
            "",
            f"{rm['stage']} model ({rm['summary']}): held-out accuracy "
            + ", ".join(f"{k.replace('_', ' ')} {_pct(v)}" for k, v in rm["by_strength"].items())
            + " (the human ceiling above is what agreeing with a random annotator would give).",
        ]
    bias = report.get("position_bias")
    if bias:
        lines += [
            "",
            f"Position bias: {_pct(bias['left_share'])} of {bias['decided']} decided votes for the left answer; per "
            "annotator: " + ", ".join(f"{a} {_pct(t['left_share'])}" for a, t in bias["by_annotator"].items()) + ".",
        ]
    leak = report["leakage"]
    tt = leak.get("train_test")
    parts = []
    if tt:
        parts.append(f"{tt['leaked']} of {tt['test_prompts']} test prompts near-duplicate a train prompt")
    parts += [f"{a['near_duplicates']} prompts near-duplicate {n}" for n, a in leak["against"].items()]
    cont = report.get("contamination")
    if cont:
        parts.append(f"{cont['overlapping']} prompts share a {cont['ngram']}-gram with {cont['file']}")
    if parts:
        lines += ["", f"Leakage (MinHash, Jaccard ≥ {leak['threshold']}): " + "; ".join(parts) + "."]
    a = report["answers"]
    lines += [
        "",
        f"Answers: {a['identical']} identical pairs, {report['unreadable']} unreadable rows, "
        f"{a['truncated_chosen'] + a['truncated_rejected']} cut off, {a['refusals_chosen']} refusals chosen and "
        f"{a['refusals_rejected']} rejected on {a['helpfulness_pairs']} helpfulness pairs; on "
        f"{a['adversarial_pairs']} adversarial pairs {a['refusals_chosen_adversarial']} chosen and "
        f"{a['refusals_rejected_adversarial']} rejected answers are refusals.",
    ]
    if figure:
        lines += ["", f"![Chosen vs rejected length]({figure})"]
    return "\n".join(lines) + "\n"


def svg_plot(report: dict[str, Any]) -> str:
    """A bar chart: the share of pairs where chosen is longer, per strength level (0.5: no confound)."""
    bars = [(n, s["chosen_longer_share"]) for n, s in report["style"].items() if s["chosen_longer_share"] is not None]
    width, height, left, top, bar = 120 + 90 * len(bars), 260, 60, 30, 50
    plot_h = height - top - 60

    def y(v: float) -> float:
        return top + plot_h * (1 - v)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<text x="{left}" y="18">Share of pairs where chosen is longer ({report["length_unit"]})</text>',
        f'<line x1="{left}" y1="{y(0)}" x2="{width - 20}" y2="{y(0)}" stroke="#444"/>',
        f'<line x1="{left}" y1="{y(0.5)}" x2="{width - 20}" y2="{y(0.5)}" stroke="#c33" stroke-dasharray="4 3"/>',
        f'<text x="{left - 8}" y="{y(0.5) + 4}" text-anchor="end">50%</text>',
        f'<text x="{left - 8}" y="{y(1) + 4}" text-anchor="end">100%</text>',
    ]
    for i, (name, share) in enumerate(bars):
        x = left + 20 + 90 * i
        out.append(
            f'<rect x="{x}" y="{y(share):.1f}" width="{bar}" height="{plot_h * share:.1f}" fill="#4a78b5"/>'
            f'<text x="{x + bar / 2}" y="{y(share) - 4:.1f}" text-anchor="middle">{share:.0%}</text>'
            f'<text x="{x + bar / 2}" y="{y(0) + 16}" text-anchor="middle">{name.replace("_", " ")[:14]}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_audit(report: dict[str, Any], folder: Path) -> list[Path]:
    """`audit.json` and `audit.svg` in `folder` (the caller's own output folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / AUDIT_JSON, folder / AUDIT_SVG]
    paths[0].write_text(json.dumps(report, ensure_ascii=False, indent=1, default=str) + "\n", encoding="utf-8")
    paths[1].write_text(svg_plot(report), encoding="utf-8")
    return paths
