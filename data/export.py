"""Export preference rows as a Vi-Alpaca-style `DatasetDict`: train/test split by prompt,
explicit features, `save_to_disk` (+ Parquet / JSONL per split), a dataset card, Hub push.

- The split keeps every variant of one prompt on one side: rows are grouped by the normalised
  conversation (NFC, case, punctuation and whitespace folded) and, when a dedup report says
  which rows are near-duplicates of each other, by its clusters.
- `trl=True` adds TRL's conversational preference columns: `prompt` (the message list: system?,
  user, assistant, …, user) and `chosen` / `rejected` as one assistant message each; the flat
  answer texts move to `chosen_text` / `rejected_text` (`question`, `system`, `history` stay), so
  `load_from_disk(OUT)` feeds TRL's DPO and reward trainers as it is.
- `export_sets` writes Llama 2's helpfulness and safety sets side by side.

The whole output folder is built in a temporary folder and renamed into place, so a failed
export leaves no half-written dataset (and an earlier export at `out` survives).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefkit.core.atomic import atomic_path
from prefkit.core.errors import DataError
from prefkit.data.export_config import ExportConfig
from prefkit.data.schema import Judgement, MarginScheme, Pair, PreferenceRow, in_safety_set

SETS = ("helpfulness", "safety")
_E = ExportConfig()  # every default below is its field's (one place: `prefkit.data.export_config`)
log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from datasets import DatasetDict, Features

    from prefkit.data.aggregate import AggregateReport, Decision


def export_features(trl: bool = False) -> Features:
    """Explicit features of the exported columns (nullable metadata keeps its type); with `trl`,
    `prompt`/`chosen`/`rejected` are message lists and the answer texts `chosen_text`/`rejected_text`."""
    from datasets import Features, List, Value

    from prefkit.data.writers import export_schema

    features = Features.from_arrow_schema(export_schema())
    if not trl:
        return features
    message = {"role": Value("string"), "content": Value("string")}
    out: dict[str, Any] = {}
    for name, feature in features.items():
        if name == "question":
            out["prompt"] = List(message)
        if name in ("chosen", "rejected"):
            out[name] = List(message)
            out[f"{name}_text"] = feature
        else:
            out[name] = feature
    return Features(out)


def trl_record(row: PreferenceRow) -> dict[str, Any]:
    """`row.to_record()` with TRL's conversational columns (see the module docstring)."""
    rec = row.to_record()
    out: dict[str, Any] = {}
    for name, value in rec.items():
        if name == "question":
            out["prompt"] = row.prompt.messages()
        if name in ("chosen", "rejected"):
            out[name] = [{"role": "assistant", "content": value}]
            out[f"{name}_text"] = value
        else:
            out[name] = value
    return out


_PUNCT_OR_SPACE = re.compile(r"[\W_]+", re.UNICODE)


def normalise_text(text: str) -> str:
    """NFC, case folded, punctuation and runs of whitespace folded to one space: the variants of
    one prompt (NFC/NFD, "Why?" / "why", spacing) give the same key."""
    text = unicodedata.normalize("NFC", text).casefold()
    return " ".join(_PUNCT_OR_SPACE.sub(" ", text).split())


def prompt_key(row: PreferenceRow) -> str:
    """The normalised conversation (system, earlier turns, question) the split groups rows by."""
    parts = [row.system or "", *(f"{r}:{c}" for r, c in row.history), row.question]
    return "\x1f".join(normalise_text(p) for p in parts)


def split_groups(rows: list[PreferenceRow], links: Sequence[tuple[int, int]] = ()) -> list[int]:
    """A group number per row: rows with one normalised prompt share a group, and so do rows
    linked by `links` (row index pairs, e.g. a dedup report's near-duplicate clusters)."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        j = first.setdefault(prompt_key(r), i)
        parent[find(i)] = find(j)
    for i, j in links:
        if 0 <= i < len(rows) and 0 <= j < len(rows):
            parent[find(i)] = find(j)
    return [find(i) for i in range(len(rows))]


def split_by_prompt(
    rows: list[PreferenceRow], test_size: float, seed: int, links: Sequence[tuple[int, int]] = ()
) -> dict[str, list[PreferenceRow]]:
    """Seeded train/test split over prompt groups (`split_groups`), so no prompt, nor a variant
    of it, nor a near-duplicate the dedup report links to it, lands in both splits.

    The test split gets round(test_size × groups) groups, at least one when test_size > 0 and
    there are two or more; train always keeps at least one.
    """
    if not 0 <= test_size < 1:
        raise DataError(f"test_size must be in [0, 1), got {test_size}", field="test_size")
    groups = split_groups(rows, links)
    # a group is named by its smallest prompt id, so the split does not depend on row order
    name: dict[int, str] = {}
    for g, r in zip(groups, rows, strict=True):
        name[g] = min(name.get(g, r.prompt_id), r.prompt_id)
    names = sorted(set(name.values()))
    random.Random(seed).shuffle(names)
    n_test = min(round(test_size * len(names)), len(names) - 1)
    if test_size > 0 and len(names) > 1:
        n_test = max(n_test, 1)
    test_names = set(names[:n_test])
    splits: dict[str, list[PreferenceRow]] = {"train": [], "test": []}
    for g, r in zip(groups, rows, strict=True):
        splits["test" if name[g] in test_names else "train"].append(r)
    return splits


# ---------------------------------------------------------------------------------------------
# Language (for the card): detected from the text, or given
# ---------------------------------------------------------------------------------------------

_VI_LETTERS = set("ăâđêôơưạảãàáấầẩẫậắằẳẵặẹẻẽèéếềểễệỉĩìíịọỏõòóốồổỗộớờởỡợụủũùúứừửữựỳỵỷỹý")


def detect_language(rows: list[PreferenceRow], sample: int = 400) -> str | None:
    """'vi' or 'en' when the text clearly is, else None (then the caller must be told the language)."""
    letters = vi = ascii_ = 0
    for r in rows[:sample]:
        for ch in unicodedata.normalize("NFC", f"{r.question} {r.chosen}").lower():
            if ch.isalpha():
                letters += 1
                vi += ch in _VI_LETTERS
                ascii_ += ch.isascii()
    if letters < 20:
        return None
    if vi / letters > 0.03:
        return "vi"
    if ascii_ / letters > 0.98 and vi / letters < 0.002:
        return "en"
    return None


def dedup_links(report: dict[str, Any]) -> list[tuple[int, int]]:
    """Row pairs a dedup report's `removed` entries link (each removed row to its kept row)."""
    return [(int(r["row"]), int(r["duplicate_of"])) for r in report.get("removed", [])]


def dedup_summary(report: dict[str, Any]) -> str:
    return (
        f"`prefkit data dedup` on {'+'.join(report.get('key_fields', []))} (MinHash, Jaccard ≥ "
        f"{report.get('threshold')}): {report.get('rows_in')} rows in, {report.get('rows_out')} kept, "
        f"{report.get('exact_removed')} exact and {report.get('near_removed')} near-duplicates removed."
    )


def find_dedup_report(source: str | Path) -> tuple[dict[str, Any], str] | None:
    """The dedup report that wrote `source` (beside it, as `prefkit data dedup` leaves it) or took
    `source` as its input: (report, "output" or "input"); None when there is none."""
    found = _find_dedup_report(source)
    return None if found is None else found[:2]


def _find_dedup_report(source: str | Path) -> tuple[dict[str, Any], str, Path] | None:
    """`find_dedup_report`, with the report's path. A report that wrote `source` is used only when
    the two are still the unit `prefkit data dedup` committed (their markers list each other with
    the sizes and hashes they have): a report from an interrupted run, or beside a file changed
    since, describes other rows and is passed over with a warning."""
    path = Path(source)
    if not path.is_file():
        return None
    name = path.name
    for suffix in (".jsonl.gz", ".jsonl", ".json", ".parquet", ".csv", ".tsv", ".csv.gz", ".tsv.gz"):
        if name.lower().endswith(suffix):
            name = name[: len(name) - len(suffix)]
            break
    candidates = [path.with_name(name + ".dedup-report.json")]
    candidates += sorted(p for p in path.parent.glob("*.dedup-report.json") if p not in candidates)
    for cand in candidates:
        try:
            report = json.loads(cand.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict):
            continue
        for role, key in (("output", "output"), ("input", "source")):
            if report.get(key) and Path(report[key]).resolve() == path.resolve():
                if role == "output" and not _same_unit(path, cand):
                    log.warning(
                        "%s: not used: it and %s are not the files one `prefkit data dedup` run wrote "
                        "(an interrupted run, or a file changed since); run the dedup again to get its report",
                        cand,
                        path,
                    )
                    continue
                return report, role, cand
    return None


def _same_unit(output: Path, report: Path) -> bool:
    """Whether `output` and its dedup `report` are one committed unit: true when `output` has no
    marker (written by an earlier prefkit), else when both markers list the unit and both files
    match them."""
    from prefkit.core.outputs import foreign_entry, read_marker

    mark = read_marker(output, folder=False)
    if mark is None or mark.get("files") is None:
        return True
    unit = mark.get("unit") or []
    if report.name not in unit and str(report.absolute()) not in unit:
        return False
    return foreign_entry(output, folder=False) is None and foreign_entry(report, folder=False) is None


def export_dataset(
    rows: list[PreferenceRow],
    out: str | Path,
    *,
    test_size: float = _E.test_size,
    seed: int = _E.seed,
    margin: MarginScheme | str = _E.margin,
    parquet: bool = _E.parquet,
    jsonl: bool = _E.jsonl,
    name: str | None = _E.name,
    provenance: dict[str, Any] | None = None,
    trl: bool = _E.trl,
    links: Sequence[tuple[int, int]] = (),
    language_required: bool = False,
    marker: str | None = None,
    split_of: Sequence[str] | None = None,
    edit_pairs: str = _E.edit_pairs,
    edit_strength: str = _E.edit_strength,
    audit: bool = _E.audit,
    judgements: Sequence[Judgement] | None = None,
    rejected: Sequence[DataError] | None = None,
) -> DatasetDict:
    """Write `out/` (save_to_disk layout, README.md card, optional data/*.parquet, jsonl/*.jsonl,
    and with `rejected` the rows `--skip-invalid` left out, in `rejected.jsonl`).

    `audit` writes `prefkit.data.audit`'s report of the exported splits (with the position bias of
    `judgements` when given) as `audit.json` / `audit.svg` and the card's Audit section.

    `edit_pairs` (two / three) adds the pairs annotators' edits make (`prefkit.data.edits`), of
    strength `edit_strength`, after the judged rows (so `links`' row indices still hold).

    `trl` adds TRL's conversational columns; `links` are row-index pairs that must stay in one
    split (a dedup report's clusters, `dedup_links`). `split_of` (one split name per row) keeps
    the splits the rows came in (an earlier export read again) instead of splitting by prompt. The card's language is
    `provenance["language"]`, else detected (`detect_language`); when it cannot be told,
    `language_required` raises, else the card names none. `marker` (a command's name) marks the
    folder as that command's output (`prefkit.core.outputs`). Everything, marker included, is
    written into a temporary folder swapped into place at the end: all of it or none of it."""
    import datasets
    from datasets import Dataset, DatasetDict

    from prefkit.core.writers import write_rows
    from prefkit.data.card import DATA_FILES, render_card

    if not rows:
        raise DataError("nothing to export: no preference rows", file=str(out))
    try:
        scheme = MarginScheme(margin)
    except ValueError:
        raise DataError(f"unknown margin scheme {margin!r} (expected none, small or large)", field="margin") from None
    out = Path(out)
    provenance = dict(provenance or {})
    if not provenance.get("language"):
        detected = detect_language(rows)
        if detected:
            provenance["language"] = [detected]
            provenance.setdefault("language_detected", True)
        elif language_required:
            raise DataError(
                "cannot tell the language of the rows (neither clearly Vietnamese nor English): pass --language CODE",
                file=str(provenance.get("source", out)),
                field="language",
            )
    from prefkit.data.edits import edited_rows, expand_edits

    n_edited = len(edited_rows(rows))
    judged, rows = rows, expand_edits(rows, edit_pairs, edit_strength)
    if split_of is not None and len(rows) > len(judged):  # a new pair goes where its judged row is
        split_by_id = {r.id: name for r, name in zip(judged, split_of, strict=True)}
        split_of = [*split_of, *(split_by_id[r.derived_from] for r in rows[len(judged) :] if r.derived_from)]
    if n_edited:
        provenance["edits"] = {"edited_pairs": n_edited, "edit_pairs": edit_pairs, "edit_strength": edit_strength}
    features = export_features(trl)
    record = trl_record if trl else PreferenceRow.to_record
    if split_of is not None:
        splits: dict[str, list[PreferenceRow]] = {name: [] for name in dict.fromkeys(split_of)}
        for r, name in zip(rows, split_of, strict=True):
            splits[name].append(r.with_margin(scheme))
    else:
        splits = split_by_prompt([r.with_margin(scheme) for r in rows], test_size, seed, links)
    dsdict = DatasetDict(
        {
            s: Dataset.from_list([record(r) for r in split_rows], features=features)
            for s, split_rows in splits.items()
            if split_rows or s == "train"
        }
    )
    report = None
    if audit:
        from prefkit.data.audit import audit_rows

        # named by its input, not by OUT: the same rows exported twice give the same audit.json
        source = str(provenance["source"]) if provenance.get("source") else None
        report = audit_rows({s: r for s, r in splits.items() if r}, judgements=judgements, source=source)
    card = render_card(
        dsdict,
        name=name or out.name,
        margin=scheme.value,
        test_size=test_size,
        seed=seed,
        provenance=provenance,
        parquet=parquet,
        trl=trl,
        audit=report,
    )
    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # a handful of bars per small export is noise, not progress
    try:
        with atomic_path(out, directory=True) as tmp:
            dsdict.save_to_disk(str(tmp))
            for split, ds in dsdict.items():
                if parquet:
                    target = tmp / DATA_FILES.format(split=split).replace("*", "00000-of-00001.parquet")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    ds.to_parquet(str(target))
                if jsonl:
                    write_rows(ds, tmp / "jsonl" / f"{split}.jsonl")
            (tmp / "README.md").write_text(card, encoding="utf-8")
            if report is not None:
                from prefkit.data.audit import write_audit

                write_audit(report, tmp)
            (tmp / "prefkit_provenance.json").write_text(
                json.dumps(provenance, ensure_ascii=False, indent=1, default=str) + "\n", encoding="utf-8"
            )
            _write_rejected_into(tmp, rejected)
            if marker is not None:
                from prefkit.core.outputs import mark_output

                mark_output(tmp, marker, folder=True)
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    return dsdict


def safety_set(rows: list[PreferenceRow]) -> list[PreferenceRow]:
    """Llama 2's safety set: pairs on adversarial prompts or with a response flagged unsafe,
    without the pairs whose chosen response is unsafe and the other safe."""
    return [r for r in rows if in_safety_set(r.adversarial, r.chosen_unsafe, r.rejected_unsafe)]


def parse_sets(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    bad = [n for n in names if n not in SETS]
    if bad or not names:
        raise DataError(f"unknown set {', '.join(bad) or value!r} (expected helpfulness, safety or both)", field="sets")
    return names


def export_sets(
    rows: list[PreferenceRow],
    out: str | Path,
    sets: tuple[str, ...] = SETS,
    *,
    links: Sequence[tuple[int, int]] = (),
    provenance: dict[str, Any] | None = None,
    name: str | None = None,
    marker: str | None = None,
    split_of: Sequence[str] | None = None,
    rejected: Sequence[DataError] | None = None,
    **kw: Any,
) -> dict[str, DatasetDict]:
    """Llama 2's two datasets, `out/helpfulness` (all pairs) and `out/safety` (`safety_set`), each
    a full export with its own card, written together (a failure leaves neither)."""
    out = Path(out)
    picked = {"helpfulness": rows, "safety": safety_set(rows)}
    result: dict[str, DatasetDict] = {}
    with atomic_path(out, directory=True) as tmp:
        for set_name in sets:
            set_rows = picked[set_name]
            if not set_rows:
                raise DataError(
                    f"the {set_name} set is empty: no pair is on an adversarial prompt or has a response "
                    "flagged unsafe (tag prompts with `adversarial`, or pass --adversarial)",
                    field="sets",
                )
            index = {id(r): i for i, r in enumerate(set_rows)}
            pos = {id(r): i for i, r in enumerate(rows)}
            back = {pos[k]: v for k, v in index.items()}
            set_links = [(back[i], back[j]) for i, j in links if i in back and j in back]
            if split_of is not None:
                kw["split_of"] = [split_of[pos[id(r)]] for r in set_rows]
            result[set_name] = export_dataset(
                set_rows,
                tmp / set_name,
                links=set_links,
                name=f"{name or out.name} ({set_name})",
                provenance={**(provenance or {}), "set": set_name, "set_rows": f"{len(set_rows)} of {len(rows)}"},
                **kw,
            )
        (tmp / "README.md").write_text(
            f"# {name or out.name}\n\nLlama 2's preference sets, each a `load_from_disk` folder with its own card:\n\n"
            + "".join(f"- `{s}/`: {sum(d.num_rows for d in result[s].values())} pairs\n" for s in sets),
            encoding="utf-8",
        )
        _write_rejected_into(tmp, rejected)
        if marker is not None:
            from prefkit.core.outputs import mark_output

            mark_output(tmp, marker, folder=True)
    return result


def annotator_mix(human: int, model: int) -> str:
    """What a dataset's judgements came from: `human-only`, `AI-only` or `mixed`."""
    if model and human:
        return "mixed"
    return "AI-only" if model else "human-only"


REJECTED_NAME = "rejected.jsonl"  # in the export folder: the rows --skip-invalid left out


def _write_rejected_into(folder: Path, rejected: Sequence[DataError] | None) -> None:
    """The rows `--skip-invalid` left out, inside the export's folder: swapped in with the dataset."""
    if rejected is not None:
        from prefkit.core.rejects import rejected_rows
        from prefkit.core.writers import write_rows_to

        write_rows_to(rejected_rows(rejected), folder / REJECTED_NAME, ".jsonl")


def export_judged(
    pairs: list[Pair],
    judgements: list[Judgement],
    out: str | Path,
    *,
    rule: str = _E.rule,
    margin: MarginScheme | str = _E.margin,
    test_size: float = _E.test_size,
    seed: int = _E.seed,
    parquet: bool = _E.parquet,
    jsonl: bool = _E.jsonl,
    name: str | None = _E.name,
    provenance: dict[str, Any] | None = None,
    trl: bool = _E.trl,
    sets: tuple[str, ...] = (),
    language_required: bool = False,
    marker: str | None = None,
    decisions: Mapping[str, Decision] | None = None,
    edit_pairs: str = _E.edit_pairs,
    edit_strength: str = _E.edit_strength,
    audit: bool = _E.audit,
    rejected: Sequence[DataError] | None = None,
    selected_by: Mapping[str, str] | None = None,
) -> tuple[DatasetDict, AggregateReport]:
    """Aggregate several annotators' judgements per pair (`prefkit.data.aggregate`) and export the rows.
    `decisions` (reviewers', gold pairs' answers) win over the rule where given.

    The one path behind `prefkit data export --judgements`, `prefkit annotate export` and a
    round's export step: the card's provenance always gets the rule and the aggregation counts
    from here, so no caller can describe them differently. With `sets`, writes Llama 2's
    helpfulness / safety sets under `out` (`export_sets`) and returns the first. `selected_by`
    (pair_id -> calibration, random or uncertainty: how the annotation store chose each pair)
    fills the rows' `selected_by` column; without it, the judgements' own `selected_by` (the
    store's judgement table carries it) does.
    """
    from prefkit.data.aggregate import aggregate

    rows, report = aggregate(pairs, judgements, rule=rule, margin=margin, decisions=decisions)
    if selected_by is None:
        carried = {j.pair_id: j.selected_by for j in judgements if j.selected_by is not None}
        selected_by = carried or None
    if selected_by is not None:
        for row in rows:
            row.selected_by = selected_by.get(row.id)
    provenance = {
        **(provenance or {}),
        "rule": rule,
        "aggregate": report.to_dict(),
        "annotators": annotator_mix(report.judgements - report.model_judgements, report.model_judgements),
    }
    provenance.setdefault("judgements", f"{report.judgements} judgements")
    provenance.setdefault("format", "pairs")  # judged pairs: prefkit's own pairs, whoever stored them
    kw: dict[str, Any] = dict(
        test_size=test_size,
        seed=seed,
        margin=margin,
        parquet=parquet,
        jsonl=jsonl,
        name=name,
        provenance=provenance,
        trl=trl,
        language_required=language_required,
        marker=marker,
        edit_pairs=edit_pairs,
        edit_strength=edit_strength,
        audit=audit,
        judgements=judgements,
        rejected=rejected,
    )
    if sets:
        written = export_sets(rows, out, sets, **kw)
        return written[sets[0]], report
    dsdict = export_dataset(rows, out, **kw)
    return dsdict, report


@dataclasses.dataclass
class ExportDone:
    """What `export_file` wrote, for the command to report."""

    dsdict: DatasetDict  # the dataset (with sets: the first set's)
    aggregate: AggregateReport | None  # with judgements: how they became rows
    invalid: list[DataError] | None  # with skip_invalid: the rows left out
    rejected: Path | None  # with skip_invalid: where they were written (inside OUT)
    sets: tuple[str, ...]  # Llama 2's sets written under OUT, if any
    kept_splits: tuple[str, ...] = ()  # the source's own splits, kept (an earlier export read again)


def export_file(
    source: str,
    out: Path,
    config: ExportConfig | None = None,
    *,
    judgements: Path | None = None,
    overwrite: bool = False,
    skip_invalid: bool = False,
) -> ExportDone:
    """`prefkit data export`: read SOURCE, aggregate it with `judgements` if given, and export it
    to OUT as `config` says. Pushing to the Hub is the caller's (`prefkit.core.hub.push_to_hub`), after
    this returns; with `config.push_to_hub` the token is checked here, before any work.

    OUT goes through the output guard first (`prefkit.core.outputs.check_output`): never an input
    (SOURCE, the judgements, the dedup report it reads) or a folder holding one; an existing one
    only with `overwrite` and only a previous export with nothing else in it. With `skip_invalid`
    the rows left out go to `OUT/rejected.jsonl`, in the same folder swap as the dataset; no
    valid row at all is an error before anything is written."""
    from prefkit.core.outputs import check_output
    from prefkit.core.rejects import nothing_valid
    from prefkit.data.readers import read_judgements, read_pairs, read_preferences, source_format
    from prefkit.data.sources import saved_splits

    cfg = config or ExportConfig()
    set_names = parse_sets(cfg.sets)
    command = "data export"
    found: tuple[dict[str, Any], str] | None = None
    beside = _find_dedup_report(source) if cfg.dedup_report is None else None
    report_file = Path(cfg.dedup_report) if cfg.dedup_report is not None else (beside[2] if beside else None)
    inputs = [source, judgements, report_file]  # every file this export reads
    check_output(out, command, inputs=inputs, overwrite=overwrite, folder=True)
    if cfg.push_to_hub:
        if set_names:
            raise DataError("--push-to-hub pushes one dataset: push each set folder on its own", field="sets")
        from prefkit.data.hub import require_token

        require_token()  # fail before the work, not after it
    invalid: list[DataError] | None = [] if skip_invalid else None
    fmt = source_format(source, skip_bad=skip_invalid, columns=cfg.columns)
    log.debug("%s: read as %s", source, fmt)

    provenance: dict[str, Any] = {
        "source": str(source),
        "format": fmt + (f" (columns {', '.join(f'{k}={v}' for k, v in cfg.columns.items())})" if cfg.columns else ""),
        "license": cfg.license,
        "margin": cfg.margin,
    }
    if cfg.language:
        provenance["language"] = [cfg.language]
    links: list[tuple[int, int]] = []
    if cfg.dedup_report is not None:
        try:
            found = (json.loads(Path(cfg.dedup_report).read_text(encoding="utf-8")), "given")
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read the dedup report: {e}", file=str(cfg.dedup_report)) from None
    elif beside is not None:
        found = beside[:2]
    if found is not None:
        report_, role = found
        log.debug("dedup report (%s): %s", role, dedup_summary(report_))
        provenance["dedup"] = dedup_summary(report_)
        if role == "input" or (
            role == "given"
            and report_.get("source")
            and Path(str(report_["source"])).resolve() == Path(source).resolve()
        ):
            links = dedup_links(report_)  # the rows before dedup: keep each cluster on one side
    kw: dict[str, Any] = dict(
        test_size=cfg.test_size,
        seed=cfg.seed,
        margin=cfg.margin,
        parquet=cfg.parquet,
        jsonl=cfg.jsonl,
        name=cfg.name,
        trl=cfg.trl,
        language_required=True,
        edit_pairs=cfg.edit_pairs,
        edit_strength=cfg.edit_strength,
        audit=cfg.audit,
    )
    report = None
    split_of: list[str] | None = None
    if judgements is not None:
        pairs = read_pairs(source, errors=invalid, columns=cfg.columns)
        judged = read_judgements(judgements, errors=invalid)
        if not pairs:
            raise nothing_valid(source, invalid)
        if not judged:
            raise nothing_valid(judgements, invalid)
        if invalid:
            provenance["invalid_skipped"] = len(invalid)
        if cfg.adversarial:
            pairs = [dataclasses.replace(p, prompt=dataclasses.replace(p.prompt, adversarial=True)) for p in pairs]
        dsdict, report = export_judged(
            pairs,
            judged,
            out,
            rule=cfg.rule,
            provenance={**provenance, "judgements": str(judgements)},
            sets=set_names,
            marker=command,
            rejected=invalid,
            **kw,
        )
    else:
        adversarial = True if cfg.adversarial else None
        split_names = saved_splits(source)
        if len(split_names) > 1:  # an earlier export: keep its splits, every row of every split
            rows, split_of = [], []
            for split in split_names:
                part = read_preferences(source, split, adversarial=adversarial, errors=invalid, columns=cfg.columns)
                rows += part
                split_of += [split] * len(part)
            provenance["splits"] = f"kept as the source's splits ({', '.join(split_names)})"
        else:
            rows = read_preferences(source, adversarial=adversarial, errors=invalid, columns=cfg.columns)
        if not rows:
            raise nothing_valid(source, invalid)
        if invalid:
            provenance["invalid_skipped"] = len(invalid)
        if set_names:
            written = export_sets(
                rows,
                out,
                set_names,
                links=links,
                provenance=provenance,
                marker=command,
                split_of=split_of,
                rejected=invalid,
                **kw,
            )
            dsdict = written[set_names[0]]
        else:
            dsdict = export_dataset(
                rows, out, provenance=provenance, links=links, marker=command, split_of=split_of, rejected=invalid, **kw
            )
    rejected = out / REJECTED_NAME if skip_invalid else None
    kept = tuple(dict.fromkeys(split_of)) if judgements is None and split_of else ()
    return ExportDone(dsdict, report, invalid, rejected, set_names, kept)
