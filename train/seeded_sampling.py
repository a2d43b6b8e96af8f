"""Sampling whose draws depend on (seed, step, row, position) only: not on the batch a row was
generated in, the number of processes, or the device.

`generate(..., do_sample=True)` draws from one global random stream, so the token sampled for a
prompt depends on which other prompts share its batch; a rollout split over two processes (or over
`rollout_batch_size` chunks) would then sample different answers than one process does. Here each
row's sampling is the Gumbel-max trick with its own counter-based noise: after the usual warpers
(temperature, top-k, top-p), `argmax(logits + G)` with `G = -log(-log(U))` is an exact sample from
`softmax(logits)`, and `U` comes from a splitmix64 hash of (seed, step, row, position, token id), in
integer arithmetic that gives the same bits on a CPU and a GPU. `generate` then runs greedily
(`do_sample=False`) with `SeededSampling` as its last logits processor.
"""

from __future__ import annotations

from typing import cast

import torch
from transformers.generation.logits_process import LogitsProcessor

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed int64
_M1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_M2 = -7723592293110705685  # 0x94D049BB133111EB


def _i64(v: int) -> int:
    """A Python int wrapped into int64's range (what tensor arithmetic does with it)."""
    return (v + 2**63) % 2**64 - 2**63


def _shr(x: torch.Tensor, n: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's `>>` is arithmetic on signed integers)."""
    return (x >> n) & ((1 << (64 - n)) - 1)


def mix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 tensors (multiplication wraps modulo 2**64)."""
    x = (x ^ _shr(x, 30)) * _M1
    x = (x ^ _shr(x, 27)) * _M2
    return x ^ _shr(x, 31)


def uniform(keys: torch.Tensor, n: int) -> torch.Tensor:
    """(len(keys), n) float64 uniforms in (0, 1), one independent stream per key."""
    ids = torch.arange(1, n + 1, device=keys.device, dtype=torch.int64) * _GOLDEN
    z = mix(keys[:, None] + ids[None, :])
    return (_shr(z, 11).double() + 0.5) * 2.0**-53


def row_keys(seed: int, step: int, rows: torch.Tensor) -> torch.Tensor:
    """One int64 key per row of rollout `step` (`rows`: the rows' indices in the step's whole batch)."""
    base = mix(torch.tensor([_i64(seed * _GOLDEN + 1)], dtype=torch.int64))
    base = mix(base + _i64(step * _GOLDEN))
    return mix(base.to(rows.device) + rows.to(torch.int64) * _GOLDEN)


class SeededSampling(LogitsProcessor):
    """A `LogitsProcessor`: warp the scores (temperature, top-k, top-p), then add each row's Gumbel
    noise for the position being generated, so that greedy decoding samples."""

    def __init__(
        self, keys: torch.Tensor, prompt_len: int, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
    ) -> None:
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.keys, self.prompt_len = keys, prompt_len
        self.warpers: list = []
        if temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(temperature))
        if top_k:
            self.warpers.append(TopKLogitsWarper(top_k))
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        position = input_ids.shape[1] - self.prompt_len
        keys = mix(self.keys.to(scores.device) + _i64(position * _GOLDEN))
        gumbel = -torch.log(-torch.log(uniform(keys, scores.shape[-1])))
        return cast(torch.FloatTensor, (scores.double() + gumbel).float())
