"""The output guard of a training run: `claim_output_dir(cfg, stage)`, called by every stage's `run`
(sft, reward, dpo, ppo, rloo, grpo, best-of-k) and by the chain, before any work.

It is `prefkit.core.outputs`' rule for a folder a run writes into over time (checkpoints, `model/`,
`summary.json`): an `output_dir` that is, contains, or lies inside an input of the run
(model.path, model.adapter, data.source, reward.model, reward.safety_model) is refused; an
existing non-empty `output_dir` is accepted only when its marker says the same stage wrote it
(a resumed or repeated run: checkpoints stay, the final model is replaced atomically); anything
else (no marker, another command's or stage's) is refused. The marker (`train STAGE`) is written
when the run starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefkit.core.atomic import clean_stale
from prefkit.core.errors import DataError
from prefkit.core.outputs import MARKER, check_kind, check_not_input, check_writable, mark_output, written_by


def run_inputs(cfg: Any) -> list[str | Path | None]:
    """The paths a stage's config reads: its model, adapter, data and reward model(s)."""
    reward = getattr(cfg, "reward", None)
    return [
        cfg.model.path or None,
        cfg.model.adapter,
        cfg.data.source or None,
        getattr(reward, "model", None),
        getattr(reward, "safety_model", None),
    ]


def claim_output_dir(cfg: Any, stage: str, *, inputs: list[str | Path | None] | None = None) -> Path:
    """Check `cfg.output_dir` (see the module text; `DataError` naming it otherwise), create it
    and mark it as `prefkit train STAGE`'s. `inputs` replaces `run_inputs(cfg)` (the chain's)."""
    out = Path(cfg.output_dir)
    command = f"train {stage}"
    check_not_input(out, run_inputs(cfg) if inputs is None else inputs, option="output_dir")
    by = written_by(out, folder=True)
    # rank 0's marker being written (`..prefkit-output.json.*.tmp`) does not count as another's file
    if (
        by != command
        and out.is_dir()
        and any(not p.name.lstrip(".").startswith(MARKER.lstrip(".")) for p in out.iterdir())
    ):
        raise DataError(
            "output_dir already holds files "
            + (f"written by prefkit {by}" if by else "that prefkit did not write")
            + f"; prefkit {command} writes only into a new folder or one it wrote before: choose another output_dir",
            file=out,
        )
    clean_stale(out)
    check_kind(out, folder=True, option="output_dir")  # a file, a symbolic link
    check_writable(out, option="output_dir")
    if os.environ.get("RANK", "0") == "0":  # one marker for a multi-process run
        out.mkdir(parents=True, exist_ok=True)
        # written into over time (checkpoints), never replaced: the marker lists no files
        mark_output(out, command, folder=True, listed=False)
    return out
