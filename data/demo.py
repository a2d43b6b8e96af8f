"""The data pipeline on the bundled sample: validate -> dedup -> export, with a short summary."""

from __future__ import annotations

import unicodedata
from importlib.resources import files
from pathlib import Path

from prefkit.core.errors import DataError

SAMPLE_NAME = "vi_preference_sample.jsonl"


def sample_path() -> Path:
    """The bundled Vietnamese preference sample (written for the project; Vi-Alpaca form)."""
    return Path(str(files("prefkit.data") / "samples" / SAMPLE_NAME))


def run_data_demo(out: Path) -> Path:
    """Validate the sample, remove near-duplicate prompts, export to `out/dataset`; returns it."""
    from rich.console import Console

    from prefkit.data.dedup import dedup_file
    from prefkit.data.export import export_dataset
    from prefkit.data.readers import read_preferences, read_rows
    from prefkit.data.validate import validate_source

    console = Console()
    out = Path(out)
    sample = sample_path()

    report = validate_source(sample)
    if not report.ok:
        raise DataError(f"the bundled sample has {report.n_errors} bad record(s); first: {report.errors[0]}")
    console.print(f"[bold]1. validate[/]  {sample.name}: {report.rows} rows, format {report.format}, no errors")

    deduped = out / "deduped.jsonl"
    dedup = dedup_file(sample, deduped, on="prompt")
    console.print(
        f"[bold]2. dedup[/]     on prompt: {dedup.rows_in} -> {dedup.rows_out} rows "
        f"({dedup.exact_removed} exact, {dedup.near_removed} near duplicates removed; report beside {deduped.name})"
    )
    questions = [rec["question"] for _loc, rec in read_rows(sample)]
    for ex in dedup.removed[:4]:
        nfd = "" if unicodedata.is_normalized("NFC", questions[ex.row]) else " (NFD)"
        console.print(f"              dropped {questions[ex.row]!r}{nfd} ~ kept {questions[ex.duplicate_of]!r}")

    rows = read_preferences(deduped)
    dataset = out / "dataset"
    dsdict = export_dataset(
        rows,
        dataset,
        test_size=0.1,
        seed=42,
        margin="small",
        parquet=True,
        jsonl=True,
        name="prefkit demo: Vietnamese preference sample",
        provenance={
            "source": f"prefkit bundled sample ({SAMPLE_NAME})",
            "format": report.format,
            "license": "apache-2.0",
            "language": ["vi"],
            "dedup": f"MinHash on the prompt (threshold 0.8): {dedup.exact_removed} exact and "
            f"{dedup.near_removed} near duplicates removed of {dedup.rows_in} rows",
        },
    )
    sizes = ", ".join(f"{s} {ds.num_rows}" for s, ds in dsdict.items())
    console.print(f"[bold]3. export[/]    {dataset} ({sizes}); card {dataset / 'README.md'}")
    console.print(f"load it with: datasets.load_from_disk({str(dataset)!r})")
    return dataset
