"""`prefkit train STAGE --config PATH --set key=value ...` and `prefkit train score`.

A stage is registered with one line, `register_stage(name, module, help)`: `module` is imported
only when the command runs (torch stays out of `prefkit --help`) and must expose `CONFIG` (its
config dataclass) and `run(cfg) -> dict` (the run summary). The command prints the summary's
metrics and where `summary.json` was written.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import cast

import typer

from prefkit.core.options import App, option
from prefkit.train.config import ScoreConfig

app = App(no_args_is_help=True, add_completion=False)

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="YAML config (see configs/train/).")
SET_OPTION = typer.Option(None, "--set", help="Override a config key: --set lr=1e-4 --set lora.r=8 (repeatable).")


def run_stage(module_name: str, config: Path | None, overrides: list[str] | None) -> dict:
    """Load the stage's config (YAML < --set) and run it; returns the summary."""
    from prefkit.core.config import load_config

    module = importlib.import_module(module_name)
    cfg = load_config(module.CONFIG, config, overrides or [])
    return module.run(cfg)


def echo_summary(summary: dict) -> None:
    typer.echo(json.dumps(summary.get("metrics", {}), indent=2, default=str))
    typer.echo(f"summary: {Path(summary['output_dir']) / 'summary.json'}")


def register_stage(name: str, module_name: str, help: str) -> Callable[..., None]:
    """Add `prefkit train NAME --config PATH --set k=v` running `module_name.run`."""

    def command(config: Path | None = CONFIG_OPTION, set_: list[str] | None = SET_OPTION) -> None:
        echo_summary(run_stage(module_name, config, set_))

    command.__doc__ = help
    app.command(name, help=help)(command)
    return command


register_stage("sft", "prefkit.train.sft", "Supervised fine-tuning on question → chosen (loss on the assistant turn).")
register_stage(
    "reward",
    "prefkit.train.reward",
    "Reward model with the margin ranking loss -log σ(r_c − r_r − m); accuracy per strength.",
)
register_stage(
    "dpo", "prefkit.train.dpo", "DPO (LoRA: the reference is the adapter-less model); rewards, margins, accuracies."
)
register_stage(
    "ppo",
    "prefkit.train.ppo",
    "PPO: policy + value LoRA on the SFT model, KL to the adapter-less reference, GAE, clipping.",
)
register_stage(
    "best-of-k",
    "prefkit.train.best_of_k",
    "Rejection sampling: K answers per prompt, scored by the reward model; the best become SFT data.",
)


def _run_online(stage: str, config: Path | None, overrides: list[str] | None) -> dict:
    from prefkit.core.config import load_config
    from prefkit.train import online

    if stage == "rloo":
        return online.run_rloo(load_config(online.RlooConfig, config, overrides or []))
    return online.run_grpo(load_config(online.GrpoConfig, config, overrides or []))


@app.command("rloo")
def rloo(config: Path | None = CONFIG_OPTION, set_: list[str] | None = SET_OPTION) -> None:
    """RLOO (TRL's RLOOTrainer) with the reward stage's model as the reward function."""
    echo_summary(_run_online("rloo", config, set_))


@app.command("grpo")
def grpo(config: Path | None = CONFIG_OPTION, set_: list[str] | None = SET_OPTION) -> None:
    """GRPO (TRL's GRPOTrainer) with the reward stage's model as the reward function."""
    echo_summary(_run_online("grpo", config, set_))


round_app = App(no_args_is_help=True, add_completion=False)
PROJECT_ARG = typer.Argument(..., help="The rounds project folder (holds rounds.yaml and rounds.json).")


@round_app.command("init")
def round_init(
    project: Path = PROJECT_ARG,
    config: Path | None = typer.Option(None, "--config", "-c", help="Rounds config (configs/rounds/*.yaml)."),
    set_: list[str] | None = SET_OPTION,
) -> None:
    """Start a rounds project: the first policy, the prompts, a method per round, the stage configs."""
    from prefkit.train.rounds import RoundProject, status_text

    RoundProject.init(project, config, set_ or [])
    typer.echo(status_text(project))


@round_app.command("run")
def round_run(
    project: Path = PROJECT_ARG,
    judgements: Path | None = typer.Option(None, "--judgements", "-j", help="Labelled file for this round's pairs."),
    method: str | None = typer.Option(None, "--method", help="rejection_sampling or ppo (default: the config's)."),
) -> None:
    """Run or continue the current round; stops after generation until --judgements is given."""
    from prefkit.core.errors import ConfigError
    from prefkit.train.rounds import AwaitingJudgements, Method, run_round, status_text

    if method not in (None, "rejection_sampling", "ppo"):
        raise ConfigError(f"--method must be rejection_sampling or ppo, got {method!r}")
    try:
        run_round(project, judgements=judgements, method=cast(Method | None, method))
    except AwaitingJudgements as e:  # a normal stop in the loop, not a failure
        typer.echo(status_text(project))
        typer.echo(f"\n{e}")
        return
    typer.echo(status_text(project))


@round_app.command("status")
def round_status(project: Path = PROJECT_ARG) -> None:
    """Print each round's policy, pairs, dataset, reward model, next policy and commands."""
    from prefkit.train.rounds import status_text

    typer.echo(status_text(project))


@app.command("chain")
def chain(
    config: Path | None = CONFIG_OPTION,
    set_: list[str] | None = SET_OPTION,
) -> None:
    """SFT → reward → DPO and/or PPO (configs/train/chain-*.yaml, configs/recipes/*.yaml); prints each stage's
    metrics."""
    from prefkit.core.config import load_config
    from prefkit.train.chain import ChainConfig, run

    summaries = run(load_config(ChainConfig, config, set_ or []))
    for stage, summary in summaries.items():
        typer.echo(f"== {stage}")
        echo_summary(summary)


@app.command("score")
def score(
    model: Path = typer.Option(..., "--model", "-m", help="A trained reward model folder (<output_dir>/model)."),
    source: str = typer.Argument(
        ..., help="JSONL/Parquet file with question + response columns (or chosen/rejected pairs)."
    ),
    out: Path = typer.Argument(..., help="Output file (.jsonl or .parquet): the input rows plus reward column(s)."),
    question_column: str = option(ScoreConfig, "question_column"),
    response_column: str = option(ScoreConfig, "response_column"),
    base_model: str | None = option(ScoreConfig, "base_model"),
    batch_size: int = option(ScoreConfig, "batch_size"),
    max_length: int = option(ScoreConfig, "max_length"),
) -> None:
    """Score responses with a trained reward model; pairs (chosen/rejected) also get accuracy per strength."""
    from prefkit.train.reward import score_command

    result = score_command(
        model,
        source,
        out,
        question_column=question_column,
        response_column=response_column,
        base_model=base_model,
        batch_size=batch_size,
        max_length=max_length,
    )
    typer.echo(json.dumps(result, indent=2))
