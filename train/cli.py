"""`prefkit train STAGE --config PATH --set key=value ...`, `prefkit train score`, `prefkit round ...`,
and `prefkit annotate prioritise` (it loads reward models, so it lives here; `prefkit.cli` mounts it
under `annotate`).

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

from prefkit.annotate.cli import DB_OPTION
from prefkit.core.options import CONFIG_HELP, SET_HELP, App, option
from prefkit.train.config import ScoreConfig
from prefkit.train.judge import JudgeConfig
from prefkit.train.prioritise import PrioritiseConfig

app = App(no_args_is_help=True, add_completion=False)

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="YAML config (see configs/train/).")
SET_OPTION = typer.Option(None, "--set", help="Override a config key: --set lr=1e-4 --set lora.r=8 (repeatable).")


def check_config_given(stage: str, config: Path | None, overrides: list[str] | None) -> None:
    """What can be checked before torch and TRL are imported (tens of seconds): no config at all
    is one line naming `--config` with a config this checkout has; a config file that is missing or
    not YAML, an empty `data.source`, and a local `data.source` or `model.path` that is not there
    are named at once."""
    from prefkit.core.config import raw_settings
    from prefkit.core.errors import ConfigError

    command, example = f"prefkit train {stage}", f"configs/train/{stage}-tiny.yaml"
    if config is None and not overrides:
        raise ConfigError(
            f"{command} needs a config: --config FILE (e.g. `{command} --config {example}`, the tiny CPU run; "
            "configs/train/ has a GPU one beside it), or every setting with --set key=value"
        )
    settings = raw_settings(config, overrides or [])
    data, model = _section(settings, "data"), _section(settings, "model")
    # a chain may name each stage's dataset (and model) in the stage's own section instead
    stages = [_section(settings, stage) for stage in ("sft", "reward", "dpo", "ppo")] if stage == "chain" else []
    sources = [str(d["source"]) for d in (data, *(_section(s, "data") for s in stages)) if d.get("source")]
    if not sources:
        raise ConfigError(
            f"data.source is empty: give the dataset in the config (data: {{source: runs/export}}) or with "
            f"--set data.source=PATH (an export folder, a file or a Hub id); e.g. {example}"
        )
    if not model.get("path"):
        raise ConfigError("model.path is empty: give the model in the config or with --set model.path=PATH_OR_HUB_ID")
    for source in dict.fromkeys(sources):
        _check_local(source, str(model["path"]))


def _section(settings: dict, name: str) -> dict:
    value = settings.get(name)
    return value if isinstance(value, dict) else {}


def _check_local(source: str, model_path: str) -> None:
    from prefkit.core.errors import ConfigError
    from prefkit.data.sources import check_hub_dataset, looks_local, missing_source, source_kind
    from prefkit.train.datasets import MADE_BY

    if "{split}" not in source and not Path(source).is_dir():
        kind = source_kind(source)
        if kind == "missing":
            raise missing_source(source, MADE_BY)
        if kind == "hub":
            check_hub_dataset(source)
    if looks_local(model_path) and not Path(model_path).expanduser().is_dir():
        raise ConfigError(f"model.path {model_path!r}: no such model folder")


def run_stage(module_name: str, config: Path | None, overrides: list[str] | None) -> dict:
    """Load the stage's config (YAML < --set) and run it; returns the summary."""
    from prefkit.core.config import load_config

    check_config_given(module_name.rsplit(".", 1)[-1].replace("_", "-"), config, overrides)
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

    check_config_given(stage, config, overrides)
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

    check_config_given("chain", config, set_)
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
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing OUT, but only one `train score` wrote (never an input)."
    ),
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
        overwrite=overwrite,
    )
    typer.echo(json.dumps(result, indent=2))


def judge(
    ctx: typer.Context,
    project: str = option(JudgeConfig, "project"),
    model: str = option(JudgeConfig, "model"),
    engine: str = option(JudgeConfig, "engine"),
    name: str | None = option(JudgeConfig, "name"),
    only_judged: bool = option(JudgeConfig, "only_judged", "--only-judged"),
    limit: int | None = option(JudgeConfig, "limit"),
    rejudge: bool = option(JudgeConfig, "rejudge", "--rejudge"),
    max_tokens: int = option(JudgeConfig, "max_tokens"),
    temperature: float = option(JudgeConfig, "temperature"),
    base_url: str | None = option(JudgeConfig, "base_url"),
    tokenizer: str | None = option(JudgeConfig, "tokenizer"),
    device: str = option(JudgeConfig, "device"),
    progress: bool = option(JudgeConfig, "progress"),
    db: str = option(JudgeConfig, "db", "--db", envvar="PREFKIT_DB"),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Ask a model to judge the project's pairs on its own scale (both orders; a verdict that moves
    with the position is unsure), recorded as a model annotator's judgements: never counted toward
    a pair's overlap, compared with people on the dashboard."""
    from prefkit.core.options import command_config
    from prefkit.train.judge import run_judge

    cfg = command_config(
        JudgeConfig,
        ctx,
        config,
        set_,
        project=project,
        model=model,
        engine=engine,
        name=name,
        only_judged=only_judged,
        limit=limit,
        rejudge=rejudge,
        max_tokens=max_tokens,
        temperature=temperature,
        base_url=base_url,
        tokenizer=tokenizer,
        device=device,
        progress=progress,
        db=db,
    )
    s = run_judge(cfg)
    typer.echo(
        f"{s['project']}: {s['annotator']} judged {s['judged']} pairs ({s['with_side']} with a side, "
        f"{s['unsure']} unsure, of which {s['orders_disagree']} because the two orders disagreed); "
        f"{s['unreadable']} with an unreadable answer, {s['too_long']} too long for the model (skipped), "
        f"{s['already']} judged before (skipped)"
    )


def prioritise(
    project: str = typer.Option(..., "--project", "-p", help="The project whose open pairs are scored."),
    reward_models: list[Path] = typer.Option(
        None,
        "--reward-model",
        "-m",
        help="A reward model folder (the reward stage's <output_dir>/model); repeat for several (disagreement).",
    ),
    judges: list[str] = typer.Option(
        None,
        "--judge",
        "-j",
        help="An AI judge's name (`annotate judge --name`): its verdicts join the reward models, and the pairs "
        "where they disagree come first. Repeatable.",
    ),
    method: str = option(PrioritiseConfig, "method"),
    random_share: float | None = option(PrioritiseConfig, "random_share"),
    batch_size: int = option(PrioritiseConfig, "batch_size"),
    max_length: int = option(PrioritiseConfig, "max_length"),
    chunk: int = option(PrioritiseConfig, "chunk"),
    base_model: str | None = option(PrioritiseConfig, "base_model"),
    progress: bool = option(PrioritiseConfig, "progress"),
    clear: bool = typer.Option(False, "--clear", help="Drop the priorities instead: back to the seeded shuffle."),
    db: str = DB_OPTION,
) -> None:
    """Order a project's queue by reward models: the pairs they are least sure of (or disagree on, with
    each other or with an AI judge's verdicts) first, keeping a random share and the calibration share.
    Rerun after an interruption to resume."""
    from prefkit.annotate.cli import _store
    from prefkit.core.errors import ConfigError
    from prefkit.train.prioritise import prioritise_command

    with _store(db) as store:
        if clear:
            if reward_models or judges:
                raise ConfigError("--clear takes no --reward-model or --judge")
            n = store.clear_priorities(project)
            typer.echo(f"{project}: {n} pairs left the ranked queue; the seeded shuffle serves them")
            return
        cfg = PrioritiseConfig(
            method=method,  # type: ignore[arg-type]  # checked by PrioritiseConfig
            random_share=random_share,
            batch_size=batch_size,
            max_length=max_length,
            chunk=chunk,
            base_model=base_model,
            progress=progress,
        )
        result = prioritise_command(store, project, reward_models or [], cfg, judges or [])
    run = result.run
    typer.echo(
        f"{project}: run {run.id} ({run.method}, random share {run.random_share:g}) scored "
        f"{result.scored_now} pairs"
        + (f" ({result.scored_before} before it was interrupted)" if result.resumed else "")
    )
    for m in run.models:
        if "judge" in m:
            typer.echo(f"  judge {m['judge']} (its verdicts, sha256 {m['sha256']})")
        else:
            typer.echo(f"  model {m['path']} ({m['weights']} sha256 {m['sha256']})")
    shown = ", ".join(f"{result.queue.get(k, 0)} {k}" for k in ("calibration", "uncertainty", "random"))
    typer.echo(f"  queue: {run.ranked} open pairs ranked: {shown}")
