"""Why a write on a claim was refused: the claim is no longer valid (issue 22).

Every write on a user's claim or judgement checks, in its own transaction, that the user is
enabled and may still label the project (`NotAssigned` otherwise), and a judgement on a lease
that ran out is taken only while the pair still needs it (`LeaseLost` otherwise), so no pair ever
ends over its overlap. Both are `ClaimRefused`: nothing was recorded, and the message is for the
annotator's page.
"""

from __future__ import annotations

from prefkit.core.errors import ConfigError, DataError


class ClaimRefused(DataError):
    """A write on a claim that is no longer valid (nothing was recorded); the message says why."""


class NotAssigned(ClaimRefused, ConfigError):
    """The user may not label the project: an admin took them off it (or never put them on it)."""

    def __init__(self, user: str, project: str) -> None:
        super().__init__(
            f"{user!r} is not assigned to project {project!r} (an admin took you off it, or never put you on it); "
            "nothing was recorded: ask an admin"
        )


class LeaseLost(ClaimRefused):
    """The lease ran out and the pair went to others, who give it all the judgements it needs."""

    def __init__(self, pair_id: str) -> None:
        super().__init__(
            f"your hold on pair {pair_id} ran out and it went to other annotators, so this judgement was not "
            "recorded (the pair would have had more judgements than it asks for)"
        )
