"""Ordering the annotation queue by prefkit's own reward models (`prefkit annotate prioritise`).

Each open pair of a project is scored by one or more reward models (the reward stage's saved
models, loaded and run exactly as `prefkit.train.scoring.RewardModelScorer` scores for PPO and
best-of-K). A model's rewards r_a and r_b of the pair's two answers give its Bradley–Terry
probability that `a` is preferred, p = σ(r_a − r_b), the same model the reward stage trains
(its loss is −log σ(r_chosen − r_rejected − m)). The pair's priority is then:

- one model (`uncertainty`): the entropy of that prediction, in bits,
  H(p) = −p·log2 p − (1−p)·log2(1−p): 1 at p = 0.5 (the model cannot tell), 0 when it is sure.
  Uncertainty sampling (Lewis & Gale, SIGIR 1994; entropy as its measure: Settles, "Active
  Learning Literature Survey", 2009, §3.1);
- several models (`disagreement`): how much they disagree, the mutual information between the
  label and the model, H(mean_m p_m) − mean_m H(p_m) (BALD: Houlsby, Huszár, Ghahramani &
  Lengyel, "Bayesian Active Learning for Classification and Preference Learning", 2011, with
  the committee of models standing in for the posterior, as in query by committee: Seung,
  Opper & Sompolinsky, COLT 1992). 0 when the models agree, whatever they agree on; at most 1.

An AI judge (`prefkit annotate judge`) can sit on the committee beside the reward models
(`--judge NAME`): its verdict on a pair, a side and a level, is read as the probability the
suggestions use the other way round (`prefkit.annotate.store.predictions.LEVEL_LOGITS`, Llama 2's
small margins as logits: significantly better σ(1) = 0.73, better σ(2/3) = 0.66, slightly better
σ(1/3) = 0.58, negligibly better σ(1/6) = 0.54, unsure 0.5), and the priority is the committee's
disagreement: the pairs where the judge and the reward model point different ways come first.

The store ranks the queue from these priorities while keeping a random share and the calibration
share (`prefkit.annotate.store.priorities`). Scoring is written to the store chunk by chunk, so a
run that stops (Ctrl-C, a lost machine) is resumed by running the same command again: pairs it
scored are not scored twice. The scoring model's identity (folder, weights file, its sha256) and
the time go with every run.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from prefkit.annotate.store.predictions import LEVEL_LOGITS
from prefkit.core.config import setting
from prefkit.core.errors import ConfigError
from prefkit.core.outputs import sha256_file
from prefkit.data.schema import Pair, Prompt, Strength
from prefkit.train.scoring import sigmoid

if TYPE_CHECKING:
    from prefkit.annotate.store import PriorityRun, Store

log = logging.getLogger(__name__)

Method = Literal["auto", "uncertainty", "disagreement"]
# weight files a saved reward model holds (a merged model, or a LoRA adapter over its base)
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors", "pytorch_model.bin", "adapter_model.bin")


@dataclass
class PrioritiseConfig:
    """`prefkit annotate prioritise`: score a project's open pairs with reward models and serve
    the most informative first, keeping a random share and the calibration share."""

    method: Method = setting(
        "auto",
        "How predictions become a priority: uncertainty (one model: entropy of its Bradley-Terry probability), "
        "disagreement (several: BALD, their mutual information), or auto (uncertainty for one model, "
        "disagreement for several).",
    )
    random_share: float | None = setting(
        None,
        "Share of the queue served in the seeded random order, whatever the models say, so the labels stay an "
        "unbiased sample (default: the project's last one; 0.2 at first).",
    )
    batch_size: int = setting(16, "Conversations scored per forward pass.")
    max_length: int = setting(1024, "Most tokens scored per answer; longer conversations keep their end.")
    chunk: int = setting(
        256, "Pairs scored between two writes to the store: what a rerun after an interruption may redo."
    )
    base_model: str | None = setting(None, "Base model for an adapter-only reward model folder (default: its config).")
    progress: bool = setting(True, "Show a progress bar on stderr.")

    def __post_init__(self) -> None:
        if self.method not in ("auto", "uncertainty", "disagreement"):
            raise ConfigError(f"method must be auto, uncertainty or disagreement, got {self.method!r}")
        if self.random_share is not None and not 0.0 <= self.random_share <= 1.0:
            raise ConfigError(f"random share must be between 0 and 1, got {self.random_share}")
        for name in ("batch_size", "max_length", "chunk"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")


# ---------------------------------------------------------------------------------------------
# The formulas
# ---------------------------------------------------------------------------------------------


def preference_probability(reward_a: float, reward_b: float) -> float:
    """Bradley–Terry: P(a preferred to b) = σ(r_a − r_b)."""
    return sigmoid(reward_a - reward_b)


def binary_entropy(p: float) -> float:
    """H(p) in bits: 1 at 0.5, 0 at 0 and 1."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log2(p) + (1.0 - p) * math.log2(1.0 - p))


def uncertainty(p: float) -> float:
    """One model's priority for a pair it gives P(a preferred) = p: H(p)."""
    return binary_entropy(p)


def disagreement(ps: Sequence[float]) -> float:
    """Several models' priority (BALD): H(mean p) − mean H(p), ≥ 0 (clipped at rounding)."""
    if len(ps) < 2:
        raise ValueError("disagreement needs two or more models' probabilities")
    mean = sum(ps) / len(ps)
    return max(0.0, binary_entropy(mean) - sum(binary_entropy(p) for p in ps) / len(ps))


def resolve_method(method: str, n_models: int) -> str:
    """`auto` -> uncertainty for one model, disagreement for several; a clash is a ConfigError."""
    if n_models < 1:
        raise ConfigError("give at least one reward model (--reward-model DIR)")
    if method == "auto":
        return "uncertainty" if n_models == 1 else "disagreement"
    if method == "disagreement" and n_models < 2:
        raise ConfigError("--method disagreement needs two or more --reward-model (one model: uncertainty)")
    if method == "uncertainty" and n_models > 1:
        raise ConfigError("--method uncertainty takes one --reward-model (several: disagreement, or auto)")
    return method


def priority(ps: Sequence[float], method: str) -> float:
    return uncertainty(ps[0]) if method == "uncertainty" else disagreement(ps)


# ---------------------------------------------------------------------------------------------
# Scorers: P(a preferred) per pair, with the model's identity
# ---------------------------------------------------------------------------------------------


def weights_identity(model_dir: str | Path) -> dict[str, Any]:
    """A reward model folder's identity: its resolved path, its weights file, and that file's
    sha256 (what `sha256sum` prints). A sharded model (`*.safetensors.index.json`) is hashed over
    its index and shards in name order, and `weights` names the index."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise ConfigError(f"--reward-model {model_dir}: no such folder")
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return {"path": str(folder.resolve()), "weights": name, "sha256": sha256_file(folder / name)}
    index = sorted(folder.glob("*.safetensors.index.json")) or sorted(folder.glob("*.bin.index.json"))
    if index:
        shards = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin"))
        h = hashlib.sha256()
        for p in [index[0], *shards]:
            h.update(p.name.encode("utf-8") + b"\0" + sha256_file(p).encode("ascii") + b"\n")
        return {"path": str(folder.resolve()), "weights": index[0].name, "sha256": h.hexdigest()}
    raise ConfigError(
        f"--reward-model {model_dir}: no weights file ({', '.join(WEIGHT_FILES)}, or a sharded index); "
        "give the reward stage's <output_dir>/model"
    )


class PairScorer(Protocol):
    """What `prioritise` needs from a model: who it is, and P(a preferred) for each pair."""

    identity: dict[str, Any]

    def probabilities(self, pairs: Sequence[Pair]) -> list[float]: ...


RewardFn = Callable[[list[Prompt], list[str]], list[float]]


class RewardPairScorer:
    """Any reward function (prompts, completions) -> rewards as a pair scorer: both answers of
    each pair are scored in one call, and p = σ(r_a − r_b)."""

    def __init__(self, reward: RewardFn, identity: dict[str, Any]) -> None:
        self.reward, self.identity = reward, identity

    def rewards(self, pairs: Sequence[Pair]) -> list[tuple[float, float]]:
        prompts = [p.prompt for p in pairs for _ in (0, 1)]
        answers = [r.text for p in pairs for r in (p.a, p.b)]
        scores = [float(x) for x in self.reward(prompts, answers)]
        if len(scores) != len(answers):
            raise ConfigError(
                f"reward model {self.identity.get('path')} returned {len(scores)} scores for {len(answers)}"
            )
        return [(scores[2 * i], scores[2 * i + 1]) for i in range(len(pairs))]

    def probabilities(self, pairs: Sequence[Pair]) -> list[float]:
        return [preference_probability(a, b) for a, b in self.rewards(pairs)]


def reward_model_scorer(
    model_dir: str | Path,
    *,
    base_model: str | None = None,
    batch_size: int = 16,
    max_length: int = 1024,
    identity: dict[str, Any] | None = None,
) -> RewardPairScorer:
    """The reward stage's saved model (a full folder or a LoRA adapter), loaded the way every stage
    loads (on the GPU in bf16 where there is one, else the CPU in fp32), as a pair scorer.
    `identity`: its `weights_identity`, when the caller has it already."""
    from prefkit.train.scoring import RewardModelScorer

    identity = identity or weights_identity(model_dir)
    scorer = RewardModelScorer(model_dir, base_model=base_model, batch_size=batch_size, max_length=max_length)
    return RewardPairScorer(scorer, identity)


# the logit of P(the judge's side is better) for each level it can give: each level's threshold in
# `LEVEL_LOGITS` (so `verdict_from_probability` reads the same level back: a band includes its lower
# edge), negligibly better at half the slightly-better threshold
JUDGE_LEVEL_LOGITS: dict[Strength, float] = {
    **{level: logit for logit, level in LEVEL_LOGITS},
    Strength.NEGLIGIBLY_BETTER: LEVEL_LOGITS[-1][0] / 2,
}


def judge_probability(side: str | None, strength: Strength) -> float:
    """P(a preferred) read from a judge's verdict: `side` "a" / "b" (generation order) or None
    (unsure: 0.5), at the level's logit (`JUDGE_LEVEL_LOGITS`)."""
    if side is None:
        return 0.5
    p_side = preference_probability(JUDGE_LEVEL_LOGITS[strength], 0.0)
    return p_side if side == "a" else 1.0 - p_side


class JudgePairScorer:
    """An AI judge's stored verdicts on a project as a pair scorer (a committee member beside the
    reward models). Its identity names the judge and hashes its verdicts, so a judge that judged
    again (or more pairs) starts a new run instead of resuming an old one."""

    def __init__(self, name: str, probabilities: dict[str, float]) -> None:
        self.name, self._p = name, probabilities
        h = hashlib.sha256()
        for pair_id in sorted(probabilities):
            h.update(f"{pair_id}\0{probabilities[pair_id]!r}\n".encode())
        self.identity = {"path": f"judge:{name}", "judge": name, "weights": "verdicts", "sha256": h.hexdigest()}

    @classmethod
    def from_store(cls, store: Store, project: str, name: str) -> JudgePairScorer:
        """The verdicts `name` recorded on `project` (its predictions of kind `judge`)."""
        found = {p.pair_id: p for p in store.predictions(project, name) if p.kind == "judge"}
        if not found:
            raise ConfigError(
                f"--judge {name}: no verdicts of that judge on project {project} "
                f"(run `prefkit annotate judge --project {project} --name {name} --model …` first)"
            )
        return cls(name, {i: judge_probability(p.side, p.strength) for i, p in found.items()})

    def missing(self, pair_ids: Sequence[str]) -> list[str]:
        """The pairs of `pair_ids` this judge has no verdict on."""
        return [i for i in pair_ids if i not in self._p]

    def probabilities(self, pairs: Sequence[Pair]) -> list[float]:
        missing = self.missing([p.pair_id for p in pairs])
        if missing:
            raise ConfigError(f"--judge {self.name}: no verdict on pair {missing[0]} ({len(missing)} such pairs)")
        return [self._p[p.pair_id] for p in pairs]


# ---------------------------------------------------------------------------------------------
# Scoring a project
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairScore:
    """One pair's predictions: P(a preferred) per model (in the scorers' order) and its priority."""

    pair_id: str
    probabilities: tuple[float, ...]
    priority: float


def score_pairs(pairs: Sequence[Pair], scorers: Sequence[PairScorer], method: str) -> list[PairScore]:
    """Each pair's probabilities from every scorer, and its priority under `method`."""
    per_model = [s.probabilities(pairs) for s in scorers]
    out = []
    for i, pair in enumerate(pairs):
        ps = tuple(float(m[i]) for m in per_model)
        out.append(PairScore(pair.pair_id, ps, priority(ps, method)))
    return out


@dataclass
class PrioritiseResult:
    """What `prioritise` did: the run (its models, method, share), how many pairs it scored now and
    before an interruption, and the queue it ranked (`selected_by` counts)."""

    run: PriorityRun
    scored_now: int
    scored_before: int
    queue: dict[str, int] = field(default_factory=dict)  # selected_by -> open ranked pairs
    scores: list[PairScore] = field(default_factory=list)  # this call's predictions, per pair

    @property
    def resumed(self) -> bool:
        return self.scored_before > 0


def prioritise(
    store: Store,
    project: str,
    scorers: Sequence[PairScorer],
    *,
    method: str = "auto",
    random_share: float | None = None,
    chunk: int = 256,
    progress: bool = False,
) -> PrioritiseResult:
    """Score the project's open pairs with `scorers`, store each pair's priority (chunk by chunk:
    an interrupted call is resumed by the next one with the same models), and rank the queue.
    Returns the run, what was scored, and the ranked queue's make-up; `scores` holds this call's
    probabilities per pair and model."""
    from collections import Counter

    method = resolve_method(method, len(scorers))
    models = [dict(s.identity) for s in scorers]
    run = store.start_priority_run(project, models, method, random_share)
    pairs = store.pairs_to_score(run.id)
    if run.scored:
        log.info("resuming priority run %d: %d pairs scored before, %d to go", run.id, run.scored, len(pairs))
    scores: list[PairScore] = []
    bar = _bar(len(pairs), progress)
    try:
        for i in range(0, len(pairs), chunk):
            part = score_pairs(pairs[i : i + chunk], scorers, method)
            store.record_scores(run.id, [(s.pair_id, s.priority, s.probabilities) for s in part])
            scores += part
            bar.update(len(part))
    finally:
        bar.close()
    done = store.finish_priority_run(run.id)
    record_model_predictions(store, project, run.id, models)
    queue = Counter(e.selected_by for e in store.queue_order(project))
    return PrioritiseResult(done, len(scores), run.scored, dict(queue), scores)


def prediction_source(identity: dict[str, Any]) -> str:
    """The name a reward model's predictions go under in the store (`Store.record_predictions`,
    the Label page's suggestions, the dashboard's models against people): its folder and the first
    12 hex digits of its weights' sha256."""
    return f"rm:{identity.get('path')}@{str(identity.get('sha256', ''))[:12]}"


def record_model_predictions(store: Store, project: str, run_id: int, models: Sequence[dict[str, Any]]) -> None:
    """Each model's P(b better than a) for every pair the run scored (this call's and, for a
    resumed run, the earlier calls'), as predictions the Label page can suggest and the dashboard
    compares with people: `1 - P(a preferred)` in the pair's generation order."""
    per_model: list[dict[str, float]] = [{} for _ in models]
    for pair_id, (_priority, probabilities) in store.priority_scores(run_id).items():
        for m, p_a in enumerate(probabilities):
            if p_a is not None:
                per_model[m][pair_id] = 1.0 - float(p_a)
    for identity, p_b in zip(models, per_model, strict=True):
        if p_b and "judge" not in identity:  # a judge's verdicts are its predictions already
            store.record_predictions(project, prediction_source(identity), p_b, kind="reward_model")


def _bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="pair", desc="prioritise", disable=not enabled, dynamic_ncols=True)


def judge_scorers(store: Store, project: str, judges: Sequence[str], n_reward_models: int) -> list[JudgePairScorer]:
    """The judges named by `--judge`, each checked to have a verdict on every open pair the run
    will score (else one line naming how many it lacks and the command that judges them)."""
    if judges and n_reward_models < 1:
        raise ConfigError("--judge needs a --reward-model: the queue puts first where the two disagree")
    scorers = [JudgePairScorer.from_store(store, project, name) for name in judges]
    if scorers:
        open_ids = store.open_pair_ids(project)
        for s in scorers:
            missing = s.missing(open_ids)
            if missing:
                raise ConfigError(
                    f"--judge {s.name}: no verdict on {len(missing)} of the {len(open_ids)} open pairs "
                    f"of {project} (first: {missing[0]}); run `prefkit annotate judge --project {project} "
                    f"--name {s.name} --model …` (it judges only the pairs it has not)"
                )
    return scorers


def prioritise_command(
    store: Store,
    project: str,
    reward_models: Sequence[str | Path],
    cfg: PrioritiseConfig,
    judges: Sequence[str] = (),
) -> PrioritiseResult:
    """`prefkit annotate prioritise`: load each reward model folder and run `prioritise`, with the
    named AI judges' stored verdicts on the committee. The project, the judges' verdicts and each
    folder's weights are checked before any model loads."""
    store.get_project(project)  # an unknown project is one line before minutes of loading
    if judges and cfg.method == "uncertainty":
        raise ConfigError("--judge adds a committee member: use --method disagreement (or auto)")
    method = resolve_method(cfg.method, len(reward_models) + len(judges))
    judged = judge_scorers(store, project, judges, len(reward_models))
    identities = [weights_identity(d) for d in reward_models]
    scorers: list[PairScorer] = [
        reward_model_scorer(
            d, base_model=cfg.base_model, batch_size=cfg.batch_size, max_length=cfg.max_length, identity=ident
        )
        for d, ident in zip(reward_models, identities, strict=True)
    ]
    scorers += judged
    return prioritise(
        store,
        project,
        scorers,
        method=method,
        random_share=cfg.random_share,
        chunk=cfg.chunk,
        progress=cfg.progress,
    )
