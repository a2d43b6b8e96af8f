"""`prefkit demo` (what `make demo` runs): the main job on the bundled sample.

1. the data pipeline: validate -> MinHash dedup -> export a DatasetDict with its card;
2. an annotation store seeded with the sample, an admin and an annotator (tokens printed);
3. the Streamlit annotation app on that store, until Ctrl-C (`--no-serve` stops after step 2).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("demo-out"), help="Where the demo writes its outputs."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the annotation app at the end."),
    port: int = typer.Option(8501, help="Port for the annotation app (loopback; `make demo PORT=8600`)."),
) -> None:
    """Run the data pipeline on the bundled sample, seed an annotation store, open the app."""
    from rich.console import Console

    from prefkit.annotate.seed import seed_demo
    from prefkit.annotate.server import check_port
    from prefkit.data.demo import run_data_demo

    if serve:
        check_port(port, "127.0.0.1")  # a busy port is one line before any work, not after it
    console = Console()
    run_data_demo(out)

    db_path = (out / "annotate.db").resolve()
    db_url = f"sqlite:///{db_path}"
    # The store gets what the pipeline kept: near-duplicate prompts are not labelled twice.
    admin, annotator = seed_demo(db_url, out, sample=out / "deduped.jsonl")
    console.print(
        f"[bold]4. annotate[/]  store {db_path} seeded with the deduplicated sample "
        "(project 'demo', 2 judgements per pair)"
    )
    console.print(f"              annotator token: [green]{annotator}[/]")
    console.print(f"              admin token:     [green]{admin}[/]   (both saved in {out / 'demo-tokens.json'})")
    if not serve:
        console.print(f"              start the app with: prefkit annotate serve --db {db_url}")
        return
    console.print(f"[bold]5. serve[/]     open http://127.0.0.1:{port} and paste a token (Ctrl-C to stop)")
    from prefkit.annotate.cli import serve as serve_command

    # called as a function, every option is passed (typer's defaults exist only on the command line)
    serve_command(
        db=db_url,
        port=port,
        address="127.0.0.1",
        db_pool=None,
        session_hours=float(os.environ.get("PREFKIT_SESSION_HOURS", "12")),
        trusted_proxies=os.environ.get("PREFKIT_TRUSTED_PROXIES"),
    )
