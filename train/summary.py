"""The run summary every stage writes beside its output: `<output_dir>/summary.json`.

It holds the losses as logged, the stage's metrics, durations, tokens/s, peak GPU memory and the
full config, so that a run can be compared and reproduced without reading logs.
`ThroughputCallback` measures tokens/s from the trainer's own non-padding token count.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from prefkit.core.config import to_dict
from prefkit.core.writers import write_json

SUMMARY_FILE = "summary.json"


class ThroughputCallback(TrainerCallback):
    """Training seconds, tokens seen (non-padding) and peak GPU memory of one `train()` call.

    Needs `include_num_input_tokens_seen` on in the trainer's args (`trainer_kwargs` sets it).
    Counts only this session's tokens, so a resumed run reports its own speed.
    """

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.tokens = 0
        self.steps = 0
        self.peak_memory_gb: float | None = None
        self._t0 = 0.0
        self._tokens0 = 0
        self._step0 = 0

    def on_train_begin(self, args, state, control, **kwargs):
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._t0 = time.perf_counter()
        self._tokens0 = state.num_input_tokens_seen
        self._step0 = state.global_step

    def on_train_end(self, args, state, control, **kwargs):
        import torch

        self.train_seconds = time.perf_counter() - self._t0
        self.tokens = int(state.num_input_tokens_seen - self._tokens0)
        self.steps = state.global_step - self._step0
        if torch.cuda.is_available():
            self.peak_memory_gb = torch.cuda.max_memory_allocated() / 2**30

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds > 0 else 0.0


def losses(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """Training and eval losses per logged step, plus the first and last training loss."""
    train = [{"step": h["step"], "loss": h["loss"]} for h in log_history if "loss" in h]
    evals = [{"step": h["step"], "loss": h["eval_loss"]} for h in log_history if "eval_loss" in h]
    return {
        "train": train,
        "eval": evals,
        "first_train_loss": train[0]["loss"] if train else None,
        "final_train_loss": train[-1]["loss"] if train else None,
    }


def build_summary(
    stage: str,
    cfg: Any,
    trainer: Any,
    throughput: ThroughputCallback,
    metrics: dict[str, Any],
    *,
    started: float,
    model_dir: Path | None,
) -> dict[str, Any]:
    """The summary dict: stage, metrics, losses, durations, throughput, config, versions."""
    import torch
    import transformers
    import trl

    return {
        "stage": stage,
        "output_dir": str(cfg.output_dir),
        "model_dir": str(model_dir) if model_dir else None,
        "metrics": metrics,
        "losses": losses(trainer.state.log_history),
        "steps": trainer.state.global_step,
        "durations": {"train_s": throughput.train_seconds, "total_s": time.perf_counter() - started},
        "tokens": throughput.tokens,
        "tokens_per_s": throughput.tokens_per_s,
        "peak_gpu_memory_gb": throughput.peak_memory_gb,
        "log_history": trainer.state.log_history,
        "config": to_dict(cfg),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
    }


def write_summary(output_dir: str | Path, summary: dict[str, Any]) -> Path:
    """Write `summary.json` into `output_dir` (write-then-rename)."""
    return write_json(Path(output_dir) / SUMMARY_FILE, summary)


def finish_run(
    stage: str,
    cfg: Any,
    trainer: Any,
    throughput: ThroughputCallback,
    metrics: dict[str, Any],
    *,
    started: float,
) -> dict[str, Any]:
    """Save the final model (`prefkit.train.models.save_final`), write summary.json, return the summary."""
    from prefkit.train.models import save_final

    model_dir = save_final(trainer, cfg)
    summary = build_summary(stage, cfg, trainer, throughput, metrics, started=started, model_dir=model_dir)
    if trainer.is_world_process_zero():
        write_summary(cfg.output_dir, summary)
    return summary
