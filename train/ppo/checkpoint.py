"""PPO's checkpoints: `checkpoint-<step>/` holds both adapters, the value head, optimizer, scheduler,
RNG states and log history, so a resumed run continues exactly where the last checkpoint left it.

In a data-parallel run every process holds the same weights and optimizer state, so the main
process writes them once; the RNG states of all processes are kept (`rng_per_process`) and each
process takes its own back when the run resumes with as many processes (else the main one's).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from prefkit.core.atomic import atomic_path
from prefkit.core.errors import ConfigError
from prefkit.train.ppo.model import POLICY, VALUE

if TYPE_CHECKING:
    from prefkit.train.ppo import PpoTrainer

STATE_FILE = "trainer_state.pt"


def _rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_rng_state(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_checkpoint(trainer: PpoTrainer) -> Path:
    """`checkpoint-<step>/` (written by the main process; every process must call it)."""
    target = Path(trainer.cfg.output_dir) / f"checkpoint-{trainer.step}"
    rngs = [_rng_state()]
    if trainer.dp.active:
        from accelerate.utils import gather_object

        rngs = list(gather_object(rngs))
    if trainer.accelerator.is_main_process:
        peft_model = trainer._peft
        with atomic_path(target, directory=True) as tmp:
            peft_model.save_pretrained(tmp / "policy", selected_adapters=[POLICY])
            peft_model.save_pretrained(tmp / "value_adapter", selected_adapters=[VALUE])
            torch.save(
                {
                    "step": trainer.step,
                    "tokens": trainer.tokens,
                    "history": trainer.history,
                    "value_head": trainer.value_head.state_dict(),
                    "optimizer": trainer.optimizer.state_dict(),
                    "scheduler": trainer.scheduler.state_dict(),
                    "rng": rngs[0],
                    "rng_per_process": rngs,
                },
                tmp / STATE_FILE,
            )
        prune_checkpoints(Path(trainer.cfg.output_dir), trainer.cfg.save_total_limit)
    trainer.dp.barrier()
    return target


def prune_checkpoints(output_dir: Path, limit: int | None) -> None:
    """Keep the newest `limit` checkpoints (all when `limit` is 0 or None)."""
    if not limit:
        return
    ckpts = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    for old in ckpts[:-limit]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(trainer: PpoTrainer, path: Path) -> None:
    """Every process loads the same checkpoint (weights, optimizer, scheduler, step, history) and its RNG."""
    from peft import load_peft_weights, set_peft_model_state_dict

    state_file = path / STATE_FILE
    if not state_file.exists():
        raise ConfigError(f"resume_from_checkpoint {str(path)!r}: not a PPO checkpoint (no {STATE_FILE})")
    peft_model = trainer._peft
    device = trainer.accelerator.device
    weights_device = "cpu" if device.type == "cpu" else str(device)  # safetensors refuses "cpu:0" (a gloo run's)
    # peft saves a non-default adapter in a sub-folder named after it
    for name, folder in ((POLICY, path / "policy"), (VALUE, path / "value_adapter" / VALUE)):
        set_peft_model_state_dict(peft_model, load_peft_weights(str(folder), device=weights_device), adapter_name=name)
    state = torch.load(state_file, map_location=weights_device, weights_only=False)
    trainer.value_head.load_state_dict(state["value_head"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    rngs = state.get("rng_per_process") or [state["rng"]]
    _set_rng_state(rngs[trainer.dp.rank] if len(rngs) == trainer.dp.world_size else state["rng"])
    trainer.step, trainer.tokens, trainer.history = state["step"], state["tokens"], state["history"]
