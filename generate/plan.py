"""Which (model, temperature) settings answer which prompt: a seeded `SamplingPlan`.

Llama 2 collected each comparison from two responses drawn with different models and
temperatures. The plan decides, per prompt, which settings are drawn and which draws are paired.
Every choice and every draw's seed is derived from (plan seed, prompt id), never from the order
prompts arrive in, so a resumed or re-ordered run makes exactly the same plan.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Literal, get_args

from prefkit.core.errors import ConfigError
from prefkit.data.schema import content_id

PlanMode = Literal["all_pairs", "random_pair", "samples"]
PLAN_MODES: tuple[str, ...] = get_args(PlanMode)

# Beyond 2 the softmax is close to uniform: the text is noise, not a response worth annotating.
MAX_TEMPERATURE = 2.0


@dataclass(frozen=True)
class Setting:
    """One way of answering: a model (plus LoRA adapter, if any) at a temperature and top-p."""

    model: str
    temperature: float
    top_p: float = 1.0
    adapter: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("setting: model is empty")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or math.isnan(t) or not 0 <= t <= MAX_TEMPERATURE:
            raise ConfigError(f"temperature {t!r} for model {self.model!r} is out of range (0 to {MAX_TEMPERATURE})")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p) or not 0 < p <= 1:
            raise ConfigError(f"top_p {p!r} for model {self.model!r} is out of range (above 0, at most 1)")
        object.__setattr__(self, "temperature", float(t))
        object.__setattr__(self, "top_p", float(p))
        if self.adapter is not None and not str(self.adapter).strip():
            object.__setattr__(self, "adapter", None)

    @property
    def label(self) -> str:
        """Readable and unique: `model+adapter@T=0.6,p=0.9`."""
        who = self.model + (f"+{self.adapter}" if self.adapter else "")
        return f"{who}@T={self.temperature:g},p={self.top_p:g}"


@dataclass(frozen=True)
class Draw:
    """One response to generate for a prompt: a setting and the seed for its sampling."""

    setting: Setting
    seed: int


@dataclass(frozen=True)
class DrawAssignment:
    """A prompt's draws and which of them are paired (indices into `draws`, generation order)."""

    prompt_id: str
    draws: tuple[Draw, ...]
    pairs: tuple[tuple[int, int], ...]


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from content (fits every engine's seed argument)."""
    return int(content_id(*parts, length=15), 16) % (2**31 - 1)


@dataclass(frozen=True)
class SamplingPlan:
    """
    - `all_pairs`: every setting answers once; every two distinct settings make a pair.
    - `random_pair`: two distinct settings, chosen at random per prompt, make one pair.
    - `samples`: one setting (chosen at random per prompt when there are several) answers
      `samples` times; every two of those answers make a pair.
    """

    settings: tuple[Setting, ...]
    mode: PlanMode = "random_pair"
    samples: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", tuple(self.settings))
        if self.mode not in PLAN_MODES:
            raise ConfigError(f"plan mode must be one of {', '.join(PLAN_MODES)}, got {self.mode!r}")
        if not self.settings:
            raise ConfigError("no sampling settings: give at least one model and one temperature")
        labels = [s.label for s in self.settings]
        dupes = sorted({lb for lb in labels if labels.count(lb) > 1})
        if dupes:
            raise ConfigError(f"sampling setting(s) given twice: {', '.join(dupes)}")
        if self.mode != "samples" and len(self.settings) < 2:
            raise ConfigError(
                f"plan mode {self.mode!r} pairs two different settings but only one is given "
                f"({labels[0]}): add a temperature or a model, or use mode 'samples'"
            )
        if self.mode == "samples" and self.samples < 2:
            raise ConfigError(f"plan mode 'samples' needs samples >= 2 to make a pair, got {self.samples}")

    def assign(self, prompt_id: str) -> DrawAssignment:
        rng = random.Random(derive_seed("plan", self.seed, prompt_id))
        if self.mode == "all_pairs":
            chosen = list(self.settings)
        elif self.mode == "random_pair":
            chosen = rng.sample(self.settings, 2)
        else:
            chosen = [rng.choice(self.settings)] * self.samples
        draws = tuple(
            Draw(setting=s, seed=derive_seed("draw", self.seed, prompt_id, s.label, i)) for i, s in enumerate(chosen)
        )
        pairs = tuple(itertools.combinations(range(len(draws)), 2))
        return DrawAssignment(prompt_id=prompt_id, draws=draws, pairs=pairs)

    def fingerprint(self) -> dict[str, object]:
        """What must not change between a run and its resume."""
        return {
            "mode": self.mode,
            "samples": self.samples if self.mode == "samples" else None,
            "seed": self.seed,
            "settings": [s.label for s in self.settings],
        }
