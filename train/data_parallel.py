"""The process group of a data-parallel run that trains outside a `Trainer` (prefkit's PPO loop).

Under `accelerate launch` every process holds a whole copy of the trainable weights and a share of
each batch. Gradients are summed here with one `all_reduce` over the flattened trainable gradients,
not through DDP's wrapper: PPO's forwards go through the decoder with LoRA adapters switched per
pass (policy, reference, value) and backward twice per mini-batch, one adapter at a time, which is
not the one forward per backward that DDP's reducer tracks. Every loss term is already weighted by
its share of the whole batch's tokens (`sum`), so the summed gradient is the one-process gradient.

In one process every method is the identity (or a local sum), with no `torch.distributed` at all.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch


class DataParallel:
    """Collectives of the current run (rank, world size, sums, gathers), from accelerate's state."""

    def __init__(self, accelerator: Any) -> None:
        self.accelerator = accelerator
        self.rank = accelerator.process_index
        self.world_size = accelerator.num_processes

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over all processes (a new tensor; the input is left as it is)."""
        out = tensor.detach().clone()
        if self.active:
            torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM)
        return out

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's rows of `tensor` (same shape on each), concatenated in rank order."""
        if not self.active:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        torch.distributed.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Replace each gradient by its sum over all processes (a parameter without one counts as zero)."""
        if not self.active:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
            offset += n

    @torch.no_grad()
    def broadcast(self, params: list[torch.nn.Parameter]) -> None:
        """Give every process the main process's values of `params` (the same start everywhere)."""
        if not self.active:
            return
        for p in params:
            torch.distributed.broadcast(p.data, src=0)

    def digests(self, params: list[torch.Tensor]) -> list[str]:
        """One sha256 of `params`' bytes per process, in rank order: all equal when the copies agree."""
        h = hashlib.sha256()
        for p in params:
            h.update(p.detach().float().cpu().numpy().tobytes())
        mine = h.hexdigest()
        if not self.active:
            return [mine]
        from accelerate.utils import gather_object

        return list(gather_object([mine]))

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()
