"""Llama 2's iterative loop, kept visible in `rounds.json`.

A project folder holds `rounds.yaml` (the loop's config) and `rounds.json` (what happened). Each
round takes the current policy (base + optional adapter) and runs, one recorded step at a time:

    generate  → pairs from the policy (the generate room)
    judgements → a labelled file (from the annotation store's export, or a scripted judge)
    export    → aggregated, exported preference dataset
    reward    → a reward model trained on it
    policy    → the next policy, by rejection sampling (best-of-K + SFT) or PPO

Every step stores its output and the exact command that reproduces it (each stage's resolved
config is written beside its output). A step already done is skipped, so `prefkit round run`
after an interruption, or after the judgements arrive, continues where the round stopped.
Which method a round uses is one line: `methods: [rejection_sampling, rejection_sampling, ppo]`
in the config, or `--method` on the command line.

A policy is always a model folder plus at most one adapter: a stage that starts from a policy
with an adapter merges it in and saves a merged model, so no chain of adapters builds up.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import yaml

from data.atomic import atomic_path
from data.writers import write_json
from data.config import load_config, to_dict
from data.errors import ConfigError, PrefkitError

STATE_FILE = "rounds.json"
CONFIG_FILE = "rounds.yaml"
Method = Literal["rejection_sampling", "ppo"]
STEPS = ("generate", "judgements", "export", "reward", "policy")


@dataclass
class RoundsConfig:
    """The loop: the first policy, the prompts, a method per round, and each stage's config file.

    Stage configs are ordinary `prefkit train ...` / `prefkit generate` YAML files; the round sets
    their inputs and outputs (data.source, model.path, output_dir, reward.model). `overrides`
    holds extra `--set` items per stage, e.g. `{ppo: [max_steps=50]}`.
    """

    model: str = ""  # the first policy: a model folder or Hub id (usually the SFT output merged, or the base)
    adapter: str | None = None  # the first policy's LoRA adapter (e.g. the SFT stage's <output_dir>/model)
    prompts: str = ""  # prompts for every round's generation and PPO
    methods: list[Method] = field(default_factory=lambda: ["rejection_sampling", "ppo"])  # the last one repeats
    generate: str | None = None  # configs/generate/*.yaml
    reward: str | None = None  # configs/train/reward-*.yaml (model.path empty: start from the policy)
    sft: str | None = None  # configs/train/sft-*.yaml (rejection sampling: fine-tune on the best samples)
    best_of_k: str | None = None  # configs/train/best-of-k-*.yaml
    ppo: str | None = None  # configs/train/ppo-*.yaml
    overrides: dict[str, list[str]] = field(default_factory=dict)
    reward_from_policy: bool = True  # each round's reward model starts from its policy (else: the reward YAML's model)
    aggregate_rule: str = "mean"
    margin: Literal["none", "small", "large"] = "small"
    test_size: float = 0.2

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model is empty: the first round's policy")
        if not self.prompts:
            raise ConfigError("prompts is empty: the prompts every round generates from")
        unknown = set(self.overrides) - {"generate", "reward", "sft", "best_of_k", "ppo"}
        if unknown:
            raise ConfigError(f"overrides: unknown stage(s) {', '.join(sorted(unknown))}")

    def method(self, round_no: int) -> Method:
        return self.methods[min(round_no, len(self.methods)) - 1]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Project:
    """A rounds project folder: its config and its `rounds.json`, written atomically after each step."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).resolve()
        if not (self.folder / STATE_FILE).exists():
            raise ConfigError(f"{self.folder}: no {STATE_FILE} here (run `prefkit round init {self.folder}` first)")
        self.cfg = load_config(RoundsConfig, self.folder / CONFIG_FILE)
        self.state = json.loads((self.folder / STATE_FILE).read_text(encoding="utf-8"))

    @classmethod
    def init(cls, folder: str | Path, config: str | Path | None, overrides: list[str] | None = None) -> "Project":

        folder = Path(folder)
        if (folder / STATE_FILE).exists():
            raise ConfigError(f"{folder}: already a rounds project ({STATE_FILE} exists)")
        cfg = load_config(RoundsConfig, config, overrides or [])
        for name in ("model", "adapter", "prompts", "generate", "reward", "sft", "best_of_k", "ppo"):
            value = getattr(cfg, name)
            if value and Path(value).exists():  # local paths work from any folder later (Hub ids stay)
                setattr(cfg, name, str(Path(value).resolve()))
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / CONFIG_FILE) as tmp:
            tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8")
        state = {"created_at": _now(), "config": CONFIG_FILE,
                 "initial_policy": {"model": cfg.model, "adapter": cfg.adapter}, "rounds": []}
        write_json(folder / STATE_FILE, state)
        return cls(folder)

    def save(self) -> None:

        write_json(self.folder / STATE_FILE, self.state)

    def current_policy(self) -> dict[str, str | None]:
        done = [r for r in self.state["rounds"] if r["status"] == "done"]
        return dict(done[-1]["next_policy"]) if done else dict(self.state["initial_policy"])

    def open_round(self, method: Method | None) -> dict[str, Any]:
        """The unfinished round, or a new one with the current policy."""
        rounds = self.state["rounds"]
        if rounds and rounds[-1]["status"] != "done":
            r = rounds[-1]
            if method and method != r["method"] and "policy" not in r["steps"]:
                r["method"] = method
            return r
        n = len(rounds) + 1
        r = {"round": n, "method": method or self.cfg.method(n), "status": "running", "started_at": _now(),
             "policy": self.current_policy(), "dir": f"round-{n}", "steps": {}, "next_policy": None}
        rounds.append(r)
        self.save()
        return r


def _stage_config(cls: type, yaml_path: str | None, overrides: list[str], values: dict[str, Any], out: Path) -> Any:
    """The stage's config (its YAML < the round's wiring < the user's overrides), also written to `out`."""
    cfg = load_config(cls, yaml_path, overrides, **values)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return cfg


def _policy_model(policy: dict[str, Any]) -> dict[str, Any]:
    return {"path": policy["model"], "adapter": policy.get("adapter")}


def _next_policy(policy: dict[str, Any], model_dir: Path, saved: str) -> dict[str, Any]:
    """A merged save is a model of its own; an adapter save sits on the policy's (adapter-free) model."""
    if saved == "merged":
        return {"model": str(model_dir), "adapter": None}
    return {"model": policy["model"], "adapter": str(model_dir)}


class RoundRunner:
    """Runs the steps of one round that are not done yet, recording each in `rounds.json`."""

    def __init__(self, project: Project, rnd: dict[str, Any]) -> None:
        self.project, self.cfg, self.rnd = project, project.cfg, rnd
        self.dir = project.folder / rnd["dir"]

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.project.folder)) if path.is_relative_to(self.project.folder) else str(path)

    def record(self, step: str, output: Path | str | None, command: str, **extra: Any) -> None:
        self.rnd["steps"][step] = {"output": self.rel(Path(output)) if output else None, "command": command,
                                   "finished_at": _now(), **extra}
        self.project.save()

    def out(self, step: str) -> Path:
        return self.project.folder / self.rnd["steps"][step]["output"]

    def over(self, stage: str) -> list[str]:
        return list(self.cfg.overrides.get(stage, []))

    # -- steps ------------------------------------------------------------------------------

    def generate(self) -> None:
        from generate.config import GenerateConfig
        from generate.run import generate_pairs

        policy = self.rnd["policy"]
        model = policy["model"] + (f"@{policy['adapter']}" if policy.get("adapter") else "")
        out = self.dir / "pairs"
        config_file = self.dir / "generate.yaml"
        cfg = _stage_config(GenerateConfig, self.cfg.generate, self.over("generate"),
                            {"prompts": self.cfg.prompts, "out": str(out), "models": [model],
                             "seed": self.rnd["round"]}, config_file)
        generate_pairs(cfg, resume=out.exists())
        self.record("generate", out, f"prefkit generate --config {config_file} --resume")

    def judgements(self, labelled: Path) -> None:
        if not labelled.is_file():
            raise ConfigError(f"--judgements {labelled}: no such file")
        target = self.dir / "judgements" / labelled.name  # the name keeps its format's suffix
        with atomic_path(target) as tmp:
            shutil.copyfile(labelled, tmp)
        self.record("judgements", target, f"cp {labelled.resolve()} {target}", source=str(labelled.resolve()))

    def export(self) -> None:
        from data.export import export_judged
        from data.readers import read_judgements, read_pairs, source_format

        pairs, labels = self.out("generate"), self.out("judgements")
        out = self.dir / "dataset"
        _, report = export_judged(
            read_pairs(pairs), read_judgements(labels), out, rule=self.cfg.aggregate_rule, margin=self.cfg.margin,
            test_size=self.cfg.test_size, seed=self.rnd["round"],
            provenance={"round": self.rnd["round"], "source": str(pairs), "format": source_format(pairs),
                        "judgements": str(labels)})
        self.record("export", out, f"prefkit data export {pairs} {out} --judgements {labels} "
                    f"--rule {self.cfg.aggregate_rule} --margin {self.cfg.margin} "
                    f"--test-size {self.cfg.test_size} --seed {self.rnd['round']}", rows=report.exported)

    def reward(self) -> None:
        from train import reward
        from train.config import RewardConfig

        out = self.dir / "reward"
        config_file = self.dir / "reward.yaml"
        wiring: dict[str, Any] = {"output_dir": str(out), "data": {"source": str(self.out("export"))}}
        if self.cfg.reward_from_policy:  # Llama 2: the reward model starts from the chat model
            wiring["model"] = _policy_model(self.rnd["policy"])
        cfg = _stage_config(RewardConfig, self.cfg.reward, self.over("reward"), wiring, config_file)
        summary = reward.run(cfg)
        self.record("reward", summary["model_dir"], f"prefkit train reward --config {config_file}",
                    metrics=_scalars(summary["metrics"]))

    def policy(self) -> None:
        if self.rnd["method"] == "ppo":
            self._ppo()
        else:
            self._rejection_sampling()

    def _ppo(self) -> None:
        from train import ppo

        out = self.dir / "ppo"
        config_file = self.dir / "ppo.yaml"
        cfg = _stage_config(ppo.PpoConfig, self.cfg.ppo, self.over("ppo"), {
            "output_dir": str(out), "model": _policy_model(self.rnd["policy"]),
            "data": {"source": self.cfg.prompts}, "reward": {"model": str(self.out("reward")), "function": None}},
            config_file)
        summary = ppo.run(cfg)
        self.record("policy", summary["model_dir"], f"prefkit train ppo --config {config_file}",
                    method="ppo", metrics=_scalars(summary["metrics"]))
        self._finish(Path(summary["model_dir"]), cfg)

    def _rejection_sampling(self) -> None:
        from train import best_of_k, sft
        from train.config import SftConfig

        bok_out, sft_out = self.dir / "best-of-k", self.dir / "sft"
        bok_file, sft_file = self.dir / "best-of-k.yaml", self.dir / "sft.yaml"
        if "best_of_k" not in self.rnd["steps"]:
            bok_cfg = _stage_config(best_of_k.BestOfKConfig, self.cfg.best_of_k, self.over("best_of_k"), {
                "output_dir": str(bok_out), "model": _policy_model(self.rnd["policy"]),
                "data": {"source": self.cfg.prompts}, "reward": {"model": str(self.out("reward")), "function": None},
                "seed": self.rnd["round"]}, bok_file)
            summary = best_of_k.run(bok_cfg)
            self.record("best_of_k", summary["dataset_dir"], f"prefkit train best-of-k --config {bok_file}",
                        metrics=_scalars(summary["metrics"]), splits=summary["splits"])
        dataset = self.out("best_of_k")
        has_test = "test" in self.rnd["steps"]["best_of_k"]["splits"]
        cfg = _stage_config(SftConfig, self.cfg.sft, self.over("sft"), {
            "output_dir": str(sft_out), "model": _policy_model(self.rnd["policy"]),
            "data": {"source": str(dataset), **({} if has_test else {"test_split": None})}}, sft_file)
        summary = sft.run(cfg)
        self.record("policy", summary["model_dir"], f"prefkit train sft --config {sft_file}",
                    method="rejection_sampling", metrics=_scalars(summary["metrics"]))
        self._finish(Path(summary["model_dir"]), cfg)

    def _finish(self, model_dir: Path, cfg: Any) -> None:
        from train.models import saved_as  # a policy with an adapter comes back merged

        self.rnd["next_policy"] = _next_policy(self.rnd["policy"], model_dir, saved_as(cfg))
        self.rnd["status"] = "done"
        self.rnd["finished_at"] = _now()
        self.project.save()


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None}


class AwaitingJudgements(PrefkitError):
    """The round's pairs are generated; it continues once a labelled file is given."""


def run_round(project_dir: str | Path, *, judgements: str | Path | None = None, method: Method | None = None) -> dict[str, Any]:
    """Run (or continue) the current round; returns its record. Raises `AwaitingJudgements`
    after generation when no labelled file has been given yet."""
    project = Project(project_dir)
    rnd = project.open_round(method)
    runner = RoundRunner(project, rnd)
    rnd["status"] = "running"
    steps = rnd["steps"]
    if "generate" not in steps:
        runner.generate()
    if "judgements" not in steps:
        if judgements is None:
            rnd["status"] = "awaiting_judgements"
            project.save()
            raise AwaitingJudgements(
                f"round {rnd['round']}: pairs are in {runner.out('generate')}; label them (prefkit annotate, "
                f"then export the judgements) and run `prefkit round run {project.folder} --judgements FILE`"
            )
        runner.judgements(Path(judgements))
    if "export" not in steps:
        runner.export()
    if "reward" not in steps:
        runner.reward()
    if "policy" not in steps:
        runner.policy()
    return rnd


def status_text(project_dir: str | Path) -> str:
    """`prefkit round status`: each round's policy, outputs and commands."""
    project = Project(project_dir)
    lines = [f"project {project.folder} (config {CONFIG_FILE})",
             f"current policy: {_fmt_policy(project.current_policy())}"]
    for r in project.state["rounds"]:
        lines.append(f"round {r['round']} [{r['method']}] {r['status']}  policy: {_fmt_policy(r['policy'])}")
        for name in (*STEPS[:-1], "best_of_k", "policy"):
            step = r["steps"].get(name)
            if step:
                metrics = step.get("metrics")
                shown = f"  {', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in metrics.items())}" if metrics else ""
                lines.append(f"  {name:<10} {step['output'] or '-'}{shown}")
                lines.append(f"  {'':<10} $ {step['command']}")
            elif name in STEPS:
                lines.append(f"  {name:<10} (to do)")
        if r.get("next_policy"):
            lines.append(f"  next policy: {_fmt_policy(r['next_policy'])}")
    return "\n".join(lines)


def _fmt_policy(p: dict[str, Any]) -> str:
    return p["model"] + (f" + adapter {p['adapter']}" if p.get("adapter") else "")
