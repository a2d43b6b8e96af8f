"""How many torch (OpenMP) threads a small model on the CPU gets.

torch starts one intra-op thread per core. For a model of a few million parameters (the tiny CPU
model of the tests, the README's round and `make demo`) each matrix product is too small to share
out: the threads mostly wait for each other at every op, and on a machine whose cores other jobs
share, each wait is a scheduler slice. One thread is then several times faster (the README's CPU
round: `docs/benchmarks/cpu-threads.md`). `one_thread_for_small_models` sets one thread when the
model is under `SMALL_MODEL_PARAMETERS` and on the CPU, unless the user chose a count with
`OMP_NUM_THREADS`, which always wins. Bigger models keep torch's default.
"""

from __future__ import annotations

import logging
import os
from typing import Any

SMALL_MODEL_PARAMETERS = 20_000_000
log = logging.getLogger(__name__)


def one_thread_for_small_models(model: Any) -> bool:
    """One torch thread for `model` (a torch module) when it is small and on the CPU and
    `OMP_NUM_THREADS` is unset; returns whether it set it."""
    if os.environ.get("OMP_NUM_THREADS"):
        return False
    import torch

    params = list(model.parameters())
    if not params or any(p.device.type != "cpu" for p in params):
        return False
    n = sum(p.numel() for p in params)
    if n >= SMALL_MODEL_PARAMETERS:
        return False
    if torch.get_num_threads() != 1:
        log.debug("%d parameters on the CPU: one torch thread (set OMP_NUM_THREADS to choose)", n)
        torch.set_num_threads(1)
    return True
