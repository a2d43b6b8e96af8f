"""Llama 2's iterative loop, kept visible in `rounds.json`.

A project folder holds `rounds.yaml` (the loop's config) and `rounds.json` (what happened). Each
round takes the current policy (base + optional adapter) and runs, one recorded step at a time:

    generate  → pairs from the policy (the generate room)
    queue     → (with `annotate.db`) the pairs imported into the annotation store; with
                `queue: uncertainty` the previous round's reward model orders them
                (`prefkit annotate prioritise`), and the step records which model ordered the queue
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
with an adapter keeps training that adapter (`prefkit.train.models.continues_adapter`) and saves it again
as an adapter over the same model folder (or, with `save: merged`, a full model), so no chain of
adapters builds up and nothing is ever merged into a 4-bit base.

Like Llama 2, round N's reward model trains on every round's labelled data so far (`reward_data:
all`, deduplicated by pair, the newest label winning), optionally with open preference sets mixed in
by share (`reward_mix`); `reward_data: round` trains on the round's own labels only. Every step in
`rounds.json` records the code (prefkit version, git commit), the library versions and a content
hash of each dataset it read or wrote, so a round can be audited and reproduced.
"""

from __future__ import annotations

import gc
import hashlib
import json
import random
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml

from prefkit.core.atomic import atomic_path
from prefkit.core.config import load_config, setting, to_dict
from prefkit.core.errors import ConfigError, DataError, PrefkitError
from prefkit.core.outputs import check_writable
from prefkit.core.writers import write_json

STATE_FILE = "rounds.json"
CONFIG_FILE = "rounds.yaml"
Method = Literal["rejection_sampling", "ppo"]
STEPS = ("generate", "judgements", "export", "reward", "policy")


@dataclass
class MixSet:
    """An extra preference set mixed into every round's reward data (Llama 2 mixes open data)."""

    source: str = setting("", "Any labelled format the data room reads (exported folder, JSONL, Parquet, Hub id).")
    share: float = setting(0.0, "Its share of the reward model's training rows, in (0, 1).")
    split: str | None = setting(
        None, "Split to read (None: the reader's default, train of a dataset folder, a file's rows)."
    )


@dataclass
class AnnotateSection:
    """Where a round's pairs are labelled: a project of an annotation store, one per round."""

    db: str | None = setting(
        None, "The annotation store (SQLite path or postgresql+psycopg:// URL); unset, the round touches no store."
    )
    project: str = setting("round-{round}", "The store project of each round's pairs ({round} is its number).")
    overlap: int = setting(2, "Judgements each pair needs from different annotators.")
    calibration: float = setting(0.0, "Share of pairs every annotator judges first (agreement figures).")
    random_share: float = setting(
        0.2, "With queue: uncertainty, the share of the queue served in the seeded random order (unbiased labels)."
    )


@dataclass
class RoundsConfig:
    """The loop: the first policy, the prompts, a method per round, and each stage's config file.

    Stage configs are ordinary `prefkit train ...` / `prefkit generate` YAML files; the round sets
    their inputs and outputs (data.source, model.path, output_dir, reward.model). `overrides`
    holds extra `--set` items per stage, e.g. `{ppo: [max_steps=50]}`.
    """

    model: str = setting("", "The first policy: a model folder or Hub id (usually the SFT output merged, or the base).")
    adapter: str | None = setting(None, "The first policy's LoRA adapter (e.g. the SFT stage's <output_dir>/model).")
    prompts: str = setting("", "Prompts for every round's generation and PPO.")
    methods: list[Method] = setting(
        help="A method per round, rejection_sampling or ppo; the last one repeats.",
        factory=lambda: ["rejection_sampling", "ppo"],
    )
    generate: str | None = setting(None, "The generate config file (configs/generate/*.yaml).")
    reward: str | None = setting(
        None, "The reward config file (configs/train/reward-*.yaml; model.path empty: start from the policy)."
    )
    sft: str | None = setting(
        None, "The SFT config file (configs/train/sft-*.yaml): rejection sampling fine-tunes on the best samples."
    )
    best_of_k: str | None = setting(None, "The best-of-K config file (configs/train/best-of-k-*.yaml).")
    ppo: str | None = setting(None, "The PPO config file (configs/train/ppo-*.yaml).")
    overrides: dict[str, list[str]] = setting(
        help="Extra --set items per stage, e.g. {ppo: [max_steps=50]} (stages: generate, reward, sft, best_of_k, ppo).",
        factory=dict,
    )
    reward_from_policy: bool = setting(
        True, "Each round's reward model starts from its policy (false: from the reward config's model)."
    )
    reward_data: Literal["all", "round"] = setting(
        "all",
        "all (Llama 2): round N's reward model trains on rounds 1..N's labelled data, deduplicated by pair; "
        "round: on this round's labels only.",
    )
    reward_mix: list[MixSet] = setting(
        help="Open preference sets mixed into the reward data by share (see MixSet).", factory=list
    )
    aggregate_rule: str = setting("mean", "How several judgements become one row: mean or majority.")
    margin: Literal["none", "small", "large"] = setting(
        "small", "Margin scheme of the exported rounds' data: none, small or large (Llama 2, Table 27)."
    )
    test_size: float = setting(0.2, "Share of prompts in each round's test split.")
    queue: Literal["shuffle", "uncertainty"] = setting(
        "shuffle",
        "How each round's pairs are served to annotators: shuffle (the store's seeded order) or uncertainty "
        "(the previous round's reward model orders them, most uncertain first; needs annotate.db).",
    )
    annotate: AnnotateSection = setting(
        help="The annotation store each round's pairs go into (see AnnotateSection).", factory=AnnotateSection
    )

    def __post_init__(self) -> None:
        if self.queue not in ("shuffle", "uncertainty"):
            raise ConfigError(f"queue must be shuffle or uncertainty, got {self.queue!r}")
        if self.queue == "uncertainty" and not self.annotate.db:
            raise ConfigError("queue: uncertainty needs annotate.db, the store the rounds' pairs are labelled in")
        if not 0.0 <= self.annotate.random_share <= 1.0:
            raise ConfigError(f"annotate.random_share must be between 0 and 1, got {self.annotate.random_share}")
        if not self.model:
            raise ConfigError("model is empty: the first round's policy")
        if not self.prompts:
            raise ConfigError("prompts is empty: the prompts every round generates from")
        unknown = set(self.overrides) - {"generate", "reward", "sft", "best_of_k", "ppo"}
        if unknown:
            raise ConfigError(f"overrides: unknown stage(s) {', '.join(sorted(unknown))}")
        for i, mix in enumerate(self.reward_mix):
            if not mix.source:
                raise ConfigError(f"reward_mix[{i}].source is empty")
            if not 0 < mix.share < 1:
                raise ConfigError(f"reward_mix[{i}].share must be in (0, 1), got {mix.share}")
        if self.reward_mix and sum(m.share for m in self.reward_mix) >= 1:
            raise ConfigError("reward_mix: the shares must add up to less than 1 (the rest is the rounds' own data)")

    def method(self, round_no: int) -> Method:
        return self.methods[min(round_no, len(self.methods)) - 1]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


HASH_SKIP = {"README.md"}  # a dataset card: rendered from the data, and it names its folder


def content_hash(path: str | Path) -> str | None:
    """`sha256:<hex>` of a file's bytes (what `sha256sum` prints), or of a folder's files (relative
    path + bytes, in path order, the dataset card left out, so the same rows exported into two
    folders hash the same); None when `path` is not local (a Hub id)."""
    p = Path(path)
    if not p.exists():
        return None
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and f.name not in HASH_SKIP)
    for f in files:
        if p.is_dir():
            h.update(f.relative_to(p).as_posix().encode("utf-8") + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        if p.is_dir():
            h.update(b"\x1f")
    return "sha256:" + h.hexdigest()


LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "vllm")
_CODE: dict[str, Any] = {}


def code_versions() -> dict[str, Any]:
    """prefkit's version, the git commit of the code that ran (when it is a git checkout; `dirty` when
    tracked files differ from it) and the installed versions of the libraries the stages use."""
    if not _CODE:
        from importlib.metadata import PackageNotFoundError, version

        def ver(name: str) -> str | None:
            try:
                return version(name)
            except PackageNotFoundError:
                return None

        repo = Path(__file__).resolve().parents[1]
        commit, dirty = None, None
        try:
            out = subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20
            )
            if out.returncode == 0:
                commit = out.stdout.strip()
                status = subprocess.run(
                    ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            pass
        _CODE.update(
            prefkit=ver("prefkit"),
            git_commit=commit,
            git_dirty=dirty,
            libraries={n: v for n in LIBRARIES if (v := ver(n)) is not None},
        )
    return {**_CODE, "libraries": dict(_CODE["libraries"])}


def free_memory() -> None:
    """Between in-process stages: drop the last stage's objects and hand cached GPU memory back."""
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


class RoundProject:
    """A rounds project folder: its config and its `rounds.json`, written atomically after each step."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).resolve()
        if not (self.folder / STATE_FILE).exists():
            raise ConfigError(f"{self.folder}: no {STATE_FILE} here (run `prefkit round init {self.folder}` first)")
        self.cfg = load_config(RoundsConfig, self.folder / CONFIG_FILE)
        self.state = json.loads((self.folder / STATE_FILE).read_text(encoding="utf-8"))

    @classmethod
    def init(cls, folder: str | Path, config: str | Path | None, overrides: list[str] | None = None) -> RoundProject:

        folder = Path(folder)
        if (folder / STATE_FILE).exists():
            raise ConfigError(f"{folder}: already a rounds project ({STATE_FILE} exists)")
        cfg = load_config(RoundsConfig, config, overrides or [])
        # a project folder is new or empty: init writes rounds.yaml/rounds.json and later round-N/
        # folders, and must not write them among (or over) files it did not create
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise DataError(
                "FOLDER is not empty (or not a folder): a rounds project starts in a new or "
                "empty folder, so that nothing of yours is written over",
                file=str(folder),
            )
        check_writable(folder, option="FOLDER")
        for name in ("model", "adapter", "prompts", "generate", "reward", "sft", "best_of_k", "ppo"):
            value = getattr(cfg, name)
            if value and Path(value).exists():  # local paths work from any folder later (Hub ids stay)
                setattr(cfg, name, str(Path(value).resolve()))
        for mix in cfg.reward_mix:
            if Path(mix.source).exists():
                mix.source = str(Path(mix.source).resolve())
        if cfg.annotate.db and "://" not in cfg.annotate.db:  # a store file: the same one from any folder
            cfg.annotate.db = str(Path(cfg.annotate.db).resolve())
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / CONFIG_FILE) as tmp:
            tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8")
        state = {
            "created_at": _now(),
            "config": CONFIG_FILE,
            "initial_policy": {"model": cfg.model, "adapter": cfg.adapter},
            "rounds": [],
        }
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
        r = {
            "round": n,
            "method": method or self.cfg.method(n),
            "status": "running",
            "started_at": _now(),
            "policy": self.current_policy(),
            "dir": f"round-{n}",
            "steps": {},
            "next_policy": None,
        }
        rounds.append(r)
        self.save()
        return r


def _stage_config(cls: type, yaml_path: str | None, overrides: list[str], values: dict[str, Any], out: Path) -> Any:
    """The stage's config (its YAML < the round's wiring < the user's overrides), also written to `out`."""
    cfg: Any = load_config(cls, yaml_path, overrides, **values)
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

    def __init__(self, project: RoundProject, rnd: dict[str, Any]) -> None:
        self.project, self.cfg, self.rnd = project, project.cfg, rnd
        self.dir = project.folder / rnd["dir"]

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.project.folder)) if path.is_relative_to(self.project.folder) else str(path)

    def record(
        self,
        step: str,
        output: Path | str | None,
        command: str,
        *,
        inputs: Sequence[str | Path] = (),
        outputs: Sequence[str | Path] = (),
        **extra: Any,
    ) -> None:
        """One finished step: its output, command, code and library versions, and the content hash of
        every dataset it read (`inputs`) and wrote (`outputs`)."""
        code = code_versions()
        self.rnd["steps"][step] = {
            "output": self.rel(Path(output)) if output else None,
            "command": command,
            "finished_at": _now(),
            **extra,
            "code": {k: code[k] for k in ("prefkit", "git_commit", "git_dirty")},
            "libraries": code["libraries"],
            "data": {
                "inputs": {self.rel(Path(p)) if Path(p).exists() else str(p): content_hash(p) for p in inputs},
                "outputs": {self.rel(Path(p)): content_hash(p) for p in outputs},
            },
        }
        self.project.save()

    def out(self, step: str) -> Path:
        return self.project.folder / self.rnd["steps"][step]["output"]

    def over(self, stage: str) -> list[str]:
        return list(self.cfg.overrides.get(stage, []))

    # -- steps ------------------------------------------------------------------------------

    def generate(self) -> None:
        from prefkit.generate.config import GenerateConfig
        from prefkit.generate.run import generate_pairs

        policy = self.rnd["policy"]
        model = policy["model"] + (f"@{policy['adapter']}" if policy.get("adapter") else "")
        out = self.dir / "pairs"
        config_file = self.dir / "generate.yaml"
        cfg = _stage_config(
            GenerateConfig,
            self.cfg.generate,
            self.over("generate"),
            {"prompts": self.cfg.prompts, "out": str(out), "models": [model], "seed": self.rnd["round"]},
            config_file,
        )
        generate_pairs(cfg, resume=out.exists())
        self.record(
            "generate",
            out,
            f"prefkit generate --config {config_file} --resume",
            inputs=[self.cfg.prompts],
            outputs=[out],
        )

    def queue(self) -> None:
        """Import the round's pairs into its store project; with `queue: uncertainty`, the last
        finished round's reward model scores them and orders the project's queue. Records the
        project, the store and which model ordered the queue (None in the first round, whose
        queue is the seeded shuffle)."""
        from sqlalchemy.engine import make_url

        from prefkit.annotate.store import Store, one_line_errors
        from prefkit.data.readers import read_pairs

        a = self.cfg.annotate
        assert a.db, "run_round calls queue only with annotate.db"
        project = a.project.format(round=self.rnd["round"])
        pairs_dir = self.out("generate")
        shown = make_url(a.db).render_as_string(hide_password=True) if "://" in a.db else a.db
        command = (
            f"prefkit annotate import {pairs_dir} --project {project} --overlap {a.overlap} "
            f"--calibration {a.calibration} --seed {self.rnd['round']} --db {shown}"
        )
        ordered_by: dict[str, Any] | None = None
        inputs: list[str | Path] = [pairs_dir]
        with one_line_errors(a.db), Store.open(a.db) as store:
            imported = store.import_project(
                project, read_pairs(pairs_dir), overlap=a.overlap, calibration=a.calibration, seed=self.rnd["round"]
            )
            model = self.ordering_model()
            if self.cfg.queue == "uncertainty" and model is not None:
                from prefkit.train.prioritise import prioritise, reward_model_scorer

                round_no, model_dir = model
                result = prioritise(
                    store, project, [reward_model_scorer(model_dir)], random_share=a.random_share, progress=False
                )
                (identity,) = result.run.models
                ordered_by = {
                    "round": round_no,
                    "reward_model": self.rel(model_dir),
                    "weights": identity["weights"],
                    "sha256": identity["sha256"],
                    "run": result.run.id,
                    "method": result.run.method,
                    "random_share": result.run.random_share,
                    "queue": result.queue,
                }
                inputs.append(model_dir)
                command += (
                    f" && prefkit annotate prioritise --project {project} --reward-model {model_dir} "
                    f"--random-share {a.random_share} --db {shown}"
                )
        self.record(
            "queue",
            None,
            command,
            queue=self.cfg.queue,
            store=shown,
            project=project,
            pairs=imported.added + imported.skipped,
            ordered_by=ordered_by,
            inputs=inputs,
        )

    def ordering_model(self) -> tuple[int, Path] | None:
        """The reward model that orders this round's queue: the last finished round's (its
        number and folder), None before any round has one."""
        done = [
            r
            for r in self.project.state["rounds"]
            if r["round"] < self.rnd["round"] and "reward" in r["steps"] and r["steps"]["reward"].get("output")
        ]
        if not done:
            return None
        last = done[-1]
        return last["round"], self.project.folder / last["steps"]["reward"]["output"]

    def judgements(self, labelled: Path) -> None:
        if not labelled.is_file():
            raise ConfigError(f"--judgements {labelled}: no such file")
        target = self.dir / "judgements" / labelled.name  # the name keeps its format's suffix
        with atomic_path(target) as tmp:
            shutil.copyfile(labelled, tmp)
        self.record(
            "judgements",
            target,
            f"cp {labelled.resolve()} {target}",
            source=str(labelled.resolve()),
            inputs=[labelled.resolve()],
            outputs=[target],
        )

    def export(self) -> None:
        from prefkit.data.export import export_judged
        from prefkit.data.readers import read_judgements, read_pairs, source_format

        pairs, labels = self.out("generate"), self.out("judgements")
        out = self.dir / "dataset"
        _, report = export_judged(
            read_pairs(pairs),
            read_judgements(labels),
            out,
            rule=self.cfg.aggregate_rule,
            margin=self.cfg.margin,
            test_size=self.cfg.test_size,
            seed=self.rnd["round"],
            provenance={
                "round": self.rnd["round"],
                "source": str(pairs),
                "format": source_format(pairs),
                "judgements": str(labels),
            },
        )
        self.record(
            "export",
            out,
            f"prefkit data export {pairs} {out} --judgements {labels} "
            f"--rule {self.cfg.aggregate_rule} --margin {self.cfg.margin} "
            f"--test-size {self.cfg.test_size} --seed {self.rnd['round']}",
            rows=report.exported,
            inputs=[pairs, labels],
            outputs=[out],
        )

    def reward(self) -> None:
        from prefkit.train import reward
        from prefkit.train.config import RewardConfig

        out = self.dir / "reward"
        config_file = self.dir / "reward.yaml"
        source, data_info, inputs = self.reward_data()
        wiring: dict[str, Any] = {"output_dir": str(out), "data": {"source": str(source)}}
        if self.cfg.reward_from_policy:  # Llama 2: the reward model starts from the chat model
            wiring["model"] = _policy_model(self.rnd["policy"])
        cfg = _stage_config(RewardConfig, self.cfg.reward, self.over("reward"), wiring, config_file)
        summary = reward.run(cfg)
        self.record(
            "reward",
            summary["model_dir"],
            f"prefkit train reward --config {config_file}",
            metrics=_scalars(summary["metrics"]),
            reward_data=data_info,
            inputs=inputs or [source],
            outputs=[source] if inputs else [],
        )

    def reward_data(self) -> tuple[Path, dict[str, Any], list[str | Path]]:
        """The reward model's dataset: this round's export (`reward_data: round`, no mix), or every
        round's export so far, deduplicated by pair (the newest round's label wins), plus the
        `reward_mix` sets at their shares, exported (re-split by prompt) into `round-N/reward-data`.
        Returns (dataset, what it holds, the datasets it came from)."""
        from prefkit.data.export import export_dataset
        from prefkit.data.readers import read_preferences

        own = self.out("export")
        if self.cfg.reward_data == "round" and not self.cfg.reward_mix:
            return own, {"rounds": [self.rnd["round"]], "rows": self.rnd["steps"]["export"].get("rows")}, []
        rounds = [r for r in self.project.state["rounds"] if r["round"] <= self.rnd["round"] and "export" in r["steps"]]
        if self.cfg.reward_data == "round":
            rounds = [self.rnd]
        rows: dict[tuple, Any] = {}
        read = 0
        sources: list[str | Path] = []
        per_round: dict[int, int] = {}
        for r in rounds:
            folder = self.project.folder / r["steps"]["export"]["output"]
            sources.append(folder)
            splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
            for split in splits:
                for row in read_preferences(folder, split):
                    read += 1
                    key = _pair_key(row)
                    rows.pop(key, None)  # a pair labelled again later: the newer label replaces it
                    rows[key] = row
                    per_round[r["round"]] = per_round.get(r["round"], 0) + 1
        collected = list(rows.values())
        info: dict[str, Any] = {
            "mode": self.cfg.reward_data,
            "rounds": [r["round"] for r in rounds],
            "rows_read": read,
            "rows_read_by_round": per_round,
            "duplicates_dropped": read - len(collected),
            "rows": len(collected),
            "mix": [],
        }
        total = len(collected) / (1 - sum(m.share for m in self.cfg.reward_mix)) if self.cfg.reward_mix else 0
        rng = random.Random(self.rnd["round"])
        for mix in self.cfg.reward_mix:
            pool = [row for row in read_preferences(mix.source, mix.split) if _pair_key(row) not in rows]
            want = round(mix.share * total)
            taken = rng.sample(pool, min(want, len(pool)))
            for row in taken:
                rows[_pair_key(row)] = row
            sources.append(mix.source)
            info["mix"].append(
                {
                    "source": mix.source,
                    "split": mix.split,
                    "share": mix.share,
                    "wanted": want,
                    "rows": len(taken),
                    "available": len(pool),
                }
            )
        out = self.dir / "reward-data"
        export_dataset(
            list(rows.values()),
            out,
            test_size=self.cfg.test_size,
            seed=self.rnd["round"],
            margin=self.cfg.margin,
            provenance={"round": self.rnd["round"], "reward_data": info},
        )
        info["rows"] = len(rows)
        return out, info, sources

    def policy(self) -> None:
        if self.rnd["method"] == "ppo":
            self._ppo()
        else:
            self._rejection_sampling()

    def _ppo(self) -> None:
        from prefkit.train import ppo

        out = self.dir / "ppo"
        config_file = self.dir / "ppo.yaml"
        cfg = _stage_config(
            ppo.PpoConfig,
            self.cfg.ppo,
            self.over("ppo"),
            {
                "output_dir": str(out),
                "model": _policy_model(self.rnd["policy"]),
                "data": {"source": self.cfg.prompts},
                "reward": {"model": str(self.out("reward")), "function": None},
            },
            config_file,
        )
        summary = ppo.run(cfg)
        self.record(
            "policy",
            summary["model_dir"],
            f"prefkit train ppo --config {config_file}",
            method="ppo",
            metrics=_scalars(summary["metrics"]),
            inputs=[self.cfg.prompts],
        )
        self._finish(Path(summary["model_dir"]), cfg)

    def _rejection_sampling(self) -> None:
        from prefkit.train import best_of_k, sft
        from prefkit.train.config import SftConfig

        bok_out, sft_out = self.dir / "best-of-k", self.dir / "sft"
        bok_file, sft_file = self.dir / "best-of-k.yaml", self.dir / "sft.yaml"
        if "best_of_k" not in self.rnd["steps"]:
            bok_cfg = _stage_config(
                best_of_k.BestOfKConfig,
                self.cfg.best_of_k,
                self.over("best_of_k"),
                {
                    "output_dir": str(bok_out),
                    "model": _policy_model(self.rnd["policy"]),
                    "data": {"source": self.cfg.prompts},
                    "reward": {"model": str(self.out("reward")), "function": None},
                    "seed": self.rnd["round"],
                },
                bok_file,
            )
            summary = best_of_k.run(bok_cfg)
            self.record(
                "best_of_k",
                summary["dataset_dir"],
                f"prefkit train best-of-k --config {bok_file}",
                metrics=_scalars(summary["metrics"]),
                splits=summary["splits"],
                inputs=[self.cfg.prompts],
                outputs=[summary["dataset_dir"]],
            )
            free_memory()
        dataset = self.out("best_of_k")
        has_test = "test" in self.rnd["steps"]["best_of_k"]["splits"]
        cfg = _stage_config(
            SftConfig,
            self.cfg.sft,
            self.over("sft"),
            {
                "output_dir": str(sft_out),
                "model": _policy_model(self.rnd["policy"]),
                "data": {"source": str(dataset), **({} if has_test else {"test_split": None})},
            },
            sft_file,
        )
        summary = sft.run(cfg)
        self.record(
            "policy",
            summary["model_dir"],
            f"prefkit train sft --config {sft_file}",
            method="rejection_sampling",
            metrics=_scalars(summary["metrics"]),
            inputs=[dataset],
        )
        self._finish(Path(summary["model_dir"]), cfg)

    def _finish(self, model_dir: Path, cfg: Any) -> None:
        from prefkit.train.models import saved_as

        self.rnd["next_policy"] = _next_policy(self.rnd["policy"], model_dir, saved_as(cfg))
        self.rnd["status"] = "done"
        self.rnd["finished_at"] = _now()
        self.project.save()


def _pair_key(row: Any) -> tuple:
    """A pair's identity whichever answer won: the prompt and the two answers as a set."""
    return (row.system or "", row.question, frozenset((row.chosen, row.rejected)))


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """The scalar metrics and the flat dicts of scalars (accuracy per strength, pairs per strength)."""

    def scalar(v: Any) -> bool:
        return isinstance(v, (int, float, str)) or v is None

    return {
        k: v for k, v in metrics.items() if scalar(v) or (isinstance(v, dict) and all(scalar(x) for x in v.values()))
    }


class AwaitingJudgements(PrefkitError):
    """The round's pairs are generated; it continues once a labelled file is given."""


def run_round(
    project_dir: str | Path, *, judgements: str | Path | None = None, method: Method | None = None
) -> dict[str, Any]:
    """Run (or continue) the current round; returns its record. Raises `AwaitingJudgements`
    after generation when no labelled file has been given yet."""
    project = RoundProject(project_dir)
    rnd = project.open_round(method)
    runner = RoundRunner(project, rnd)
    rnd["status"] = "running"
    steps = rnd["steps"]
    if "generate" not in steps:
        runner.generate()
        free_memory()
    if "queue" not in steps and project.cfg.annotate.db:
        runner.queue()
        free_memory()
    if "judgements" not in steps:
        if judgements is None:
            rnd["status"] = "awaiting_judgements"
            project.save()
            queue = steps.get("queue")
            where = (
                f"they are in project {queue['project']} of the store {queue['store']}"
                + (
                    f", ordered by round {queue['ordered_by']['round']}'s reward model"
                    if queue.get("ordered_by")
                    else ""
                )
                + f"; label them, export the judgements (prefkit annotate export FILE --project {queue['project']} "
                f"--judgements --db {queue['store']})"
                if queue
                else "label them (prefkit annotate, then export the judgements)"
            )
            raise AwaitingJudgements(
                f"round {rnd['round']}: pairs are in {runner.out('generate')}; {where} and run "
                f"`prefkit round run {project.folder} --judgements FILE`"
            )
        runner.judgements(Path(judgements))
    if "export" not in steps:
        runner.export()
    if "reward" not in steps:
        runner.reward()
        free_memory()
    if "policy" not in steps:
        runner.policy()
        free_memory()
    return rnd


def status_text(project_dir: str | Path) -> str:
    """`prefkit round status`: each round's policy, outputs and commands."""
    project = RoundProject(project_dir)
    lines = [
        f"project {project.folder} (config {CONFIG_FILE})",
        f"current policy: {_fmt_policy(project.current_policy())}",
    ]
    for r in project.state["rounds"]:
        lines.append(f"round {r['round']} [{r['method']}] {r['status']}  policy: {_fmt_policy(r['policy'])}")
        for name in (STEPS[0], "queue", *STEPS[1:-1], "best_of_k", "policy"):
            step = r["steps"].get(name)
            if step:
                metrics = step.get("metrics")
                shown = (
                    f"  {', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in metrics.items())}"
                    if metrics
                    else ""
                )
                output = step["output"] or (f"{step['store']} project {step['project']}" if name == "queue" else "-")
                if name == "queue" and step.get("ordered_by"):
                    shown = f"  ordered by round {step['ordered_by']['round']}'s reward model"
                lines.append(f"  {name:<10} {output}{shown}")
                lines.append(f"  {'':<10} $ {step['command']}")
            elif name in STEPS:
                lines.append(f"  {name:<10} (to do)")
        if r.get("next_policy"):
            lines.append(f"  next policy: {_fmt_policy(r['next_policy'])}")
    return "\n".join(lines)


def _fmt_policy(p: dict[str, Any]) -> str:
    return p["model"] + (f" + adapter {p['adapter']}" if p.get("adapter") else "")
