"""PPO's update: `ppo_epochs` passes of clipped policy and value losses over shuffled mini-batches of
one rollout, one optimizer step per `grad_accum` mini-batches (the maths is in `ppo_losses`).

A mini-batch's losses are token means over all its rows; each `forward_batch_size` slice adds its
tokens' share, so the gradient equals one pass over the whole mini-batch. In a data-parallel run the
share is of the tokens of the mini-batch on *all* processes (each holds `mini_batch_size` of its own
rows) and the gradients are summed across processes before clipping (`DataParallel.sum_gradients`):
every process then takes the same optimizer step, the one a single process would take on the union.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from prefkit.train.ppo.losses import policy_loss, value_loss
from prefkit.train.ppo.model import POLICY, VALUE

if TYPE_CHECKING:
    from prefkit.train.ppo import PpoTrainer
    from prefkit.train.ppo.rollout import Rollout

LOGGED = ("policy_loss", "clipfrac", "approx_kl", "value_loss", "value_clipfrac")


def trainable_parameters(trainer: PpoTrainer) -> list[torch.nn.Parameter]:
    return [p for g in trainer.optimizer.param_groups for p in g["params"]]


def ppo_update(trainer: PpoTrainer, ro: Rollout) -> dict[str, float]:
    """Train on one rollout; returns the mean of each loss statistic over its mini-batches (all
    processes' rows)."""
    cfg, dp, acc = trainer.cfg, trainer.dp, trainer.accelerator
    fbs = trainer.forward_batch_size
    sums = torch.zeros(len(LOGGED), dtype=torch.float64)
    count = 0
    micro = 0
    params = trainable_parameters(trainer)
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(ro.query.shape[0], device=ro.query.device)
        for start in range(0, len(order), cfg.mini_batch_size):
            i = order[start : start + cfg.mini_batch_size]
            tokens = dp.sum(ro.mask[i].sum()).clamp(min=1)  # the mini-batch's tokens on all processes
            parts = torch.zeros(len(LOGGED), dtype=torch.float64)
            for j in range(0, len(i), fbs):
                c = i[j : j + fbs]
                q, qm, r, m = ro.query[c], ro.query_mask[c], ro.response[c], ro.mask[c]
                share = m.sum() / tokens
                # separate graphs for the two adapters: each backward sees only its own adapter active
                logprobs, _ = trainer._forward(q, qm, r, m, POLICY)
                pg, clipfrac, approx_kl = policy_loss(
                    logprobs, ro.logprobs[c], ro.advantages[c], m, cliprange=cfg.cliprange
                )
                acc.backward(pg * share / cfg.grad_accum)
                values, _ = trainer._forward(q, qm, r, m, VALUE)
                vf, vf_clipfrac = value_loss(
                    values, ro.values[c], ro.returns[c], m, cliprange_value=cfg.cliprange_value
                )
                acc.backward(cfg.vf_coef * vf * share / cfg.grad_accum)
                parts += torch.stack(
                    [v.detach().double().cpu() for v in (pg, clipfrac, approx_kl, vf, vf_clipfrac)]
                ) * float(share)
            micro += 1
            if micro % cfg.grad_accum == 0 or start + cfg.mini_batch_size >= len(order):
                dp.sum_gradients(params)
                if cfg.max_grad_norm:
                    acc.clip_grad_norm_(params, cfg.max_grad_norm)
                trainer.optimizer.step()
                trainer.scheduler.step()
                trainer.optimizer.zero_grad(set_to_none=True)
                micro = 0
            sums += parts
            count += 1
    sums = dp.sum(sums.to(acc.device)).cpu()  # each process holds its rows' shares of every mini-batch
    return {k: float(v) / count for k, v in zip(LOGGED, sums, strict=True)}
