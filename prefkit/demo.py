"""`prefkit demo`: the main job on the bundled sample (filled in as rooms land)."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(out: Path = typer.Option(Path("demo-out"), help="Where the demo writes its outputs.")) -> None:
    """Run the data pipeline on the bundled sample: validate, dedup, export."""
    from data.demo import run_data_demo

    run_data_demo(out)
