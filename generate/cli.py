"""`prefkit generate PROMPTS OUT --model M [--model M2] --temperatures 0.6,0.9,1.2 --engine vllm|hf`.

Only option parsing here; torch, transformers and vLLM load inside the run. Options given on the
command line override the YAML `--config`, and `--set key=value` overrides both.
"""

from __future__ import annotations

from pathlib import Path

import typer

from prefkit.core.config import field_help
from prefkit.core.options import option
from prefkit.generate.config import GenerateConfig

PROMPTS_ARGUMENT = typer.Argument(None, help=field_help(GenerateConfig, "prompts"), show_default=False)
OUT_ARGUMENT = typer.Argument(None, help=field_help(GenerateConfig, "out"), show_default=False)


def generate(
    ctx: typer.Context,
    prompts: str | None = PROMPTS_ARGUMENT,
    out: Path | None = OUT_ARGUMENT,
    model: list[str] | None = option(GenerateConfig, "models", "--model", "-m"),
    temperatures: str | None = option(GenerateConfig, "temperatures"),
    top_p: float = option(GenerateConfig, "top_p"),
    engine: str = option(GenerateConfig, "engine"),
    base_url: str | None = option(GenerateConfig, "base_url"),
    concurrency: int = option(GenerateConfig, "concurrency"),
    shard: str | None = option(GenerateConfig, "shard"),
    plan: str = option(GenerateConfig, "plan"),
    samples: int = option(GenerateConfig, "samples"),
    seed: int = option(GenerateConfig, "seed"),
    max_tokens: int = option(GenerateConfig, "max_tokens"),
    system_prompt: str | None = option(GenerateConfig, "system_prompt", show_default="Vietnamese assistant prompt"),
    batch_size: int = option(GenerateConfig, "batch_size"),
    shard_size: int = option(GenerateConfig, "shard_size"),
    limit: int | None = option(GenerateConfig, "limit"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (configs/generate/*.yaml)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a config key: --set max_tokens=256."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in OUT."),
    progress: bool = option(GenerateConfig, "progress"),
    columns: str | None = option(GenerateConfig, "columns"),
) -> None:
    """Sample response pairs at varied temperatures, ready for annotation."""
    from prefkit.core.config import load_config
    from prefkit.core.options import given
    from prefkit.generate.run import generate_pairs

    # only what was typed: an option left at its default must not override the --config file
    typed = given(
        ctx,
        prompts=prompts,
        out=out,
        model=model,
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
        progress=progress,
        columns=columns,
    )
    if "out" in typed:
        typed["out"] = str(out)
    if "model" in typed:
        typed["models"] = typed.pop("model") or None
    cfg = load_config(GenerateConfig, config, set_ or (), **typed)
    if cfg.out:  # OUT never holds or lies in the prompts, and can be written (before any model loads)
        from prefkit.core.outputs import check_not_input, check_writable

        check_not_input(cfg.out, [cfg.prompts])
        check_writable(cfg.out, into=True)
    done = generate_pairs(cfg, resume=resume)
    folder, summary = done.out, done.report
    typer.echo(
        f"{summary['pairs']} pairs in {len(summary['shards'])} shard(s) in {folder} "
        f"(dropped {summary['dropped']['count']}, skipped {summary['skipped']['count']}, "
        f"truncated responses {summary['truncated']['responses']}); report: {folder / 'report.json'}"
    )
