"""`prefkit generate PROMPTS OUT --model M [--model M2] --temperatures 0.6,0.9,1.2 --engine vllm|hf`.

Only option parsing here; torch, transformers and vLLM load inside the run. Options given on the
command line override the YAML `--config`, and `--set key=value` overrides both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def generate(
    prompts: Optional[str] = typer.Argument(
        None, help="Prompts: a file (JSONL, JSON, Parquet), a save_to_disk folder or a Hub id, any format the data room reads."
    ),
    out: Optional[Path] = typer.Argument(None, help="Output folder: shard-*.parquet, report.json, manifest.json."),
    model: Optional[list[str]] = typer.Option(
        None, "--model", "-m", help="Model path or Hub id; MODEL@ADAPTER adds a LoRA adapter. Repeat for several."
    ),
    temperatures: Optional[str] = typer.Option(None, help="Comma-separated temperatures, e.g. 0.6,0.9,1.2 (0 to 2)."),
    top_p: Optional[float] = typer.Option(None, help="Nucleus sampling top-p for every setting."),
    engine: Optional[str] = typer.Option(
        None, help="hf (transformers, any machine), vllm (GPU) or openai (any OpenAI-compatible server, see --base-url)."
    ),
    base_url: Optional[str] = typer.Option(
        None, help="openai engine: the server's /v1 URL (default $OPENAI_BASE_URL, else http://127.0.0.1:8000/v1); key from $OPENAI_API_KEY."
    ),
    concurrency: Optional[int] = typer.Option(None, help="openai engine: requests in flight at once."),
    shard: Optional[str] = typer.Option(
        None, help="I/N: answer only part I of N of the prompts (0 <= I < N); N runs can share one OUT folder."
    ),
    plan: Optional[str] = typer.Option(
        None, help="all_pairs (every two settings), random_pair (two settings per prompt) or samples (N of one)."
    ),
    samples: Optional[int] = typer.Option(None, help="Answers per prompt with --plan samples."),
    seed: Optional[int] = typer.Option(None, help="Seed of the plan and of every draw."),
    max_tokens: Optional[int] = typer.Option(None, help="Most new tokens per response."),
    system_prompt: Optional[str] = typer.Option(None, help="System prompt for prompts without one ('' for none)."),
    batch_size: Optional[int] = typer.Option(None, help="hf engine: rows per batch."),
    shard_size: Optional[int] = typer.Option(None, help="Prompts per Parquet shard (and per resumable step)."),
    limit: Optional[int] = typer.Option(None, help="Use only the first N prompts."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (configs/generate/*.yaml)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a config key: --set max_tokens=256."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in OUT."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Sample response pairs at varied temperatures, ready for annotation."""
    from data.config import load_config
    from generate.config import GenerateConfig
    from generate.run import generate_pairs

    cfg = load_config(
        GenerateConfig,
        config,
        set_ or (),
        prompts=prompts,
        out=str(out) if out is not None else None,
        models=model or None,
        temperatures=temperatures,
        top_p=top_p,
        engine=engine,
        base_url=base_url,
        concurrency=concurrency,
        shard=shard,
        plan=plan,
        samples=samples,
        seed=seed,
        max_tokens=max_tokens,
        system_prompt=system_prompt,
        batch_size=batch_size,
        shard_size=shard_size,
        limit=limit,
        progress=None if progress else False,
    )
    if cfg.out:  # OUT never holds or lies in the prompts, and can be written (before any model loads)
        from data.outputs import check_not_input, check_writable

        check_not_input(cfg.out, [cfg.prompts])
        check_writable(cfg.out, into=True)
    done = generate_pairs(cfg, resume=resume)
    folder, summary = done.out, done.report
    typer.echo(
        f"{summary['pairs']} pairs in {len(summary['shards'])} shard(s) in {folder} "
        f"(dropped {summary['dropped']['count']}, skipped {summary['skipped']['count']}, "
        f"truncated responses {summary['truncated']['responses']}); report: {folder / 'report.json'}"
    )
