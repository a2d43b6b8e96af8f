"""Export preference rows as a Vi-Alpaca-style `DatasetDict`: train/test split by prompt,
explicit features, `save_to_disk` (+ Parquet / JSONL per split), a dataset card, Hub push.

The whole output folder is built in a temporary folder and renamed into place, so a failed
export leaves no half-written dataset (and an earlier export at `out` survives).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data.atomic import atomic_path
from data.errors import DataError
from data.schema import Judgement, MarginScheme, Pair, PreferenceRow

if TYPE_CHECKING:
    from datasets import DatasetDict, Features

    from data.aggregate import AggregateReport


def export_features() -> "Features":
    """Explicit features of the exported columns (nullable metadata keeps its type)."""
    from datasets import Features

    from data.writers import export_schema

    return Features.from_arrow_schema(export_schema())


def split_by_prompt(rows: list[PreferenceRow], test_size: float, seed: int) -> dict[str, list[PreferenceRow]]:
    """Seeded train/test split over distinct prompts, so no prompt lands in both splits.

    The test split gets round(test_size × prompts) prompts, at least one when test_size > 0 and
    there are two or more prompts; train always keeps at least one.
    """
    if not 0 <= test_size < 1:
        raise DataError(f"test_size must be in [0, 1), got {test_size}", field="test_size")
    prompts = sorted({r.prompt_id for r in rows})
    random.Random(seed).shuffle(prompts)
    n_test = min(round(test_size * len(prompts)), len(prompts) - 1)
    if test_size > 0 and len(prompts) > 1:
        n_test = max(n_test, 1)
    test_ids = set(prompts[:n_test])
    splits: dict[str, list[PreferenceRow]] = {"train": [], "test": []}
    for r in rows:
        splits["test" if r.prompt_id in test_ids else "train"].append(r)
    return splits


def export_dataset(
    rows: list[PreferenceRow],
    out: str | Path,
    *,
    test_size: float = 0.1,
    seed: int = 42,
    margin: MarginScheme | str = "small",
    parquet: bool = False,
    jsonl: bool = False,
    name: str | None = None,
    provenance: dict[str, Any] | None = None,
    marker: str | None = None,
) -> "DatasetDict":
    """Write `out/` (save_to_disk layout, README.md card, optional data/*.parquet, jsonl/*.jsonl);
    `marker` (a command's name) marks the folder as that command's output (`data.outputs`)."""
    import datasets
    from datasets import Dataset, DatasetDict

    from data.card import DATA_FILES, render_card
    from data.writers import write_rows

    if not rows:
        raise DataError("nothing to export: no preference rows", file=str(out))
    try:
        scheme = MarginScheme(margin)
    except ValueError:
        raise DataError(f"unknown margin scheme {margin!r} (expected none, small or large)", field="margin") from None
    out = Path(out)
    features = export_features()
    splits = split_by_prompt([r.with_margin(scheme) for r in rows], test_size, seed)
    dsdict = DatasetDict(
        {
            s: Dataset.from_list([r.to_record() for r in split_rows], features=features)
            for s, split_rows in splits.items()
            if split_rows or s == "train"
        }
    )
    card = render_card(
        dsdict, name=name or out.name, margin=scheme.value, test_size=test_size, seed=seed,
        provenance=provenance or {},
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
            (tmp / "prefkit_provenance.json").write_text(
                json.dumps(provenance or {}, ensure_ascii=False, indent=1, default=str) + "\n", encoding="utf-8"
            )
            if marker is not None:
                from data.outputs import mark_output

                mark_output(tmp, marker, folder=True)
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    return dsdict


def export_judged(
    pairs: list[Pair],
    judgements: list[Judgement],
    out: str | Path,
    *,
    rule: str = "mean",
    margin: MarginScheme | str = "small",
    test_size: float = 0.1,
    seed: int = 42,
    parquet: bool = False,
    jsonl: bool = False,
    name: str | None = None,
    provenance: dict[str, Any] | None = None,
    marker: str | None = None,
) -> tuple["DatasetDict", "AggregateReport"]:
    """Aggregate several annotators' judgements per pair (`data.aggregate`) and export the rows.

    The one path behind `prefkit data export --judgements`, `prefkit annotate export` and a
    round's export step: the card's provenance always gets the rule and the aggregation counts
    from here, so no caller can describe them differently.
    """
    from data.aggregate import aggregate

    rows, report = aggregate(pairs, judgements, rule=rule, margin=margin)
    provenance = {**(provenance or {}), "rule": rule, "aggregate": report.to_dict()}
    provenance.setdefault("judgements", f"{report.judgements} judgements")
    dsdict = export_dataset(
        rows, out, test_size=test_size, seed=seed, margin=margin, parquet=parquet, jsonl=jsonl, name=name,
        provenance=provenance, marker=marker,
    )
    return dsdict, report


def export_command(
    source: str,
    out: Path,
    *,
    judgements: Path | None,
    test_size: float,
    seed: int,
    margin: str,
    rule: str,
    parquet: bool,
    jsonl: bool,
    push_to_hub: str | None,
    private: bool,
    name: str | None,
    license: str = "other",
    language: str = "vi",
    overwrite: bool = False,
    skip_invalid: bool = False,
) -> None:
    """`prefkit data export`: read, aggregate if judgements are given, export, push on request.

    OUT goes through the output guard first (`data.outputs.check_output`): never an input or a
    folder holding one; an existing one only with --overwrite and only a previous export."""
    import typer
    from rich.console import Console

    from data.outputs import check_output
    from data.readers import read_judgements, read_pairs, read_preferences, source_format
    from data.rejects import rejected_path, skipped_line, write_rejected

    console = Console()
    command = "data export"
    inputs = [source, judgements]
    check_output(out, command, inputs=inputs, overwrite=overwrite, folder=True)
    rejected = rejected_path(out) if skip_invalid else None
    if rejected is not None:
        check_output(rejected, command, inputs=inputs, overwrite=overwrite, option="the rejected file")
    if push_to_hub:
        from data.hub import require_token

        require_token()  # fail before the work, not after it
    invalid: list[DataError] | None = [] if skip_invalid else None
    fmt = source_format(source, skip_bad=skip_invalid)

    provenance: dict[str, Any] = {
        "source": str(source), "format": fmt, "license": license, "language": [language], "margin": margin,
    }
    if judgements is not None:
        pairs, judged = read_pairs(source, errors=invalid), read_judgements(judgements, errors=invalid)
        if invalid:
            provenance["invalid_skipped"] = len(invalid)
        _drop_previous(rejected)
        dsdict, report = export_judged(
            pairs, judged, out, rule=rule, margin=margin, test_size=test_size,
            seed=seed, parquet=parquet, jsonl=jsonl, name=name, provenance={**provenance, "judgements": str(judgements)},
            marker=command,
        )
        console.print(
            f"aggregated {report.judgements} judgements of {report.pairs} pairs ({rule}): "
            f"{report.exported} rows, {report.ties_dropped} ties dropped, "
            f"{report.unsafe_chosen_dropped} unsafe-chosen dropped, {report.unjudged_pairs} unjudged"
        )
    else:
        rows = read_preferences(source, errors=invalid)
        if invalid:
            provenance["invalid_skipped"] = len(invalid)
        _drop_previous(rejected)
        dsdict = export_dataset(
            rows, out, test_size=test_size, seed=seed, margin=margin, parquet=parquet,
            jsonl=jsonl, name=name, provenance=provenance, marker=command,
        )
    if rejected is not None:
        from data.outputs import mark_output

        write_rejected(invalid or [], rejected)
        mark_output(rejected, command, folder=False)
        if invalid:
            typer.echo(skipped_line(invalid, rejected), err=True)
    sizes = ", ".join(f"{s} {ds.num_rows}" for s, ds in dsdict.items())
    console.print(f"wrote {out} ({sizes}; margin {margin}; card {out / 'README.md'})")
    if push_to_hub:
        from data.hub import push_to_hub as push

        url = push(out, push_to_hub, private=private)
        console.print(f"pushed to {url}")


def _drop_previous(rejected: Path | None) -> None:
    """The previous run's rejected rows go before the new export is swapped in, so they never sit
    beside a newer export (a run killed after the swap leaves no rejected file, not a stale one)."""
    if rejected is not None:
        rejected.unlink(missing_ok=True)
