"""Quality control of a project: its settings (`QualityConfig`, `prefkit annotate quality set`) and
where an annotator stands with them (`quality_status`): qualifying (gold pairs only, until they
have answered `qualify` of them), paused (qualification failed, or recent gold accuracy below
`pause_below`), or free to label. An admin lifts a pause (`prefkit annotate quality lift`): a
failed qualification then counts as passed, and the pause's window starts again.

Gold answers are scored by `prefkit.annotate.gold.check`; a pass is the right side with the level
within one step (or at least the minimum). Each gold pair counts once per annotator, with the
first answer given: undoing, changing or withdrawing the judgement later does not change it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefkit.core.config import setting
from prefkit.core.errors import ConfigError

OK, QUALIFYING, PAUSED = "ok", "qualifying", "paused"


@dataclass
class QualityConfig:
    """A project's quality control: how often gold pairs are served, the qualification, the pause,
    and what counts as a disagreement for review (see `prefkit.annotate.quality`)."""

    gold_rate: float = setting(
        0.1,
        "Share of an annotator's pairs that are gold pairs (drawn per claim, while they have gold pairs left to "
        "answer; 0: gold pairs only for the qualification).",
    )
    qualify: int = setting(
        0, "Gold pairs every annotator answers before their first real pair (0: no qualification phase)."
    )
    qualify_accuracy: float = setting(
        0.8,
        "Share of those qualification pairs an annotator must pass (right side, level within one step) to go "
        "on; below it they are paused until an admin lifts it.",
    )
    pause_below: float | None = setting(
        None,
        "Pause an annotator whose share of passes over their last pause_window gold answers falls below this "
        "(none: never pause).",
    )
    pause_window: int = setting(10, "How many of an annotator's latest gold answers the pause looks at.")
    review_steps: int = setting(
        1,
        "The Review page lists pairs whose judgements take opposite sides, or sit more than this many steps "
        "apart on the nine-choice row (unsure in the middle).",
    )

    def __post_init__(self) -> None:
        for name in ("gold_rate", "qualify_accuracy", "pause_below"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a share between 0 and 1, got {value}")
        if self.qualify < 0:
            raise ConfigError(f"qualify must be 0 or more, got {self.qualify}")
        if self.pause_window < 1:
            raise ConfigError(f"pause_window must be at least 1, got {self.pause_window}")
        if self.review_steps < 0:
            raise ConfigError(f"review_steps must be 0 or more, got {self.review_steps}")

    @classmethod
    def from_stored(cls, stored: dict[str, Any] | None) -> QualityConfig:
        """The settings a store row holds (keys it lacks: the defaults; unknown keys: ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (stored or {}).items() if k in names})

    def to_stored(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class QualityStatus:
    """Where one annotator stands in one project."""

    state: str  # "ok", "qualifying" or "paused"
    reason: str | None = None  # paused: "qualification", "accuracy" or "no-gold"
    gold_answered: int = 0
    gold_passed: int = 0

    @property
    def message(self) -> str:
        """What the annotator is told on the Label page when they may not go on."""
        if self.reason == "qualification":
            return (
                "You have not passed this project's qualification: too few of your answers on its check pairs "
                "were right. Your project lead (an admin) can look at them and let you go on."
            )
        if self.reason == "accuracy":
            return (
                "Labelling in this project is paused for you: your recent answers on its check pairs fell below "
                "the level the project asks for. Your project lead (an admin) can lift the pause."
            )
        if self.reason == "no-gold":
            return (
                "This project starts with a qualification, but it has no check pairs left for you. Your project "
                "lead (an admin) can add some or let you go on."
            )
        return ""

    @property
    def label(self) -> str:
        """For the dashboard: ok, qualifying, or paused (why)."""
        return f"{self.state} ({self.reason})" if self.reason else self.state


def quality_status(
    cfg: QualityConfig, passes: Sequence[bool], since_lift: Sequence[bool], lifted: bool
) -> QualityStatus:
    """An annotator's state from their gold answers: `passes` all of them in the order given,
    `since_lift` those given after an admin last lifted a pause (all of them when `lifted` is
    false). Qualifying while fewer than `qualify` answered (never after a lift); paused when the
    first `qualify` have fewer passes than `qualify_accuracy` asks, or when the last
    `pause_window` answers since the lift have fewer passes than `pause_below` asks."""
    answered, passed = len(passes), sum(passes)
    if cfg.qualify > 0 and not lifted:
        first = passes[: cfg.qualify]
        if len(first) < cfg.qualify:
            return QualityStatus(QUALIFYING, None, answered, passed)
        if sum(first) < cfg.qualify_accuracy * cfg.qualify - 1e-9:
            return QualityStatus(PAUSED, "qualification", answered, passed)
    if cfg.pause_below is not None and len(since_lift) >= cfg.pause_window:
        window = since_lift[-cfg.pause_window :]
        if sum(window) < cfg.pause_below * cfg.pause_window - 1e-9:
            return QualityStatus(PAUSED, "accuracy", answered, passed)
    return QualityStatus(OK, None, answered, passed)


class QualityPaused(ConfigError):
    """A claim refused because the annotator is paused in the project (`QualityStatus.message`)."""

    def __init__(self, status: QualityStatus) -> None:
        super().__init__(status.message)
        self.status = status
