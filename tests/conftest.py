"""Fixtures shared by every room's tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# Keep CPU tests light on a 2-core machine and make sure nothing reaches for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
# One torch (OpenMP) thread per test process, and through the environment per command a test
# starts: the tiny model's matrices are too small to share out, and on a busy 2-core machine two
# threads wait for each other at every op (a PPO learning test ran ~4 s on a quiet machine and
# 378 s under load with two). Set before torch is imported; an explicit OMP_NUM_THREADS wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Every command a test starts (`python -m prefkit.cli`, the Streamlit server, accelerate's workers)
# imports this checkout's prefkit, as the tests themselves do (pytest puts the checkout first on
# sys.path): a second git worktree beside an editable install of another checkout tests its own code.
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (data no one here wrote); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory):
    """Build a tiny random Llama + tokenizer folder; same keyword arguments give the same folder."""
    from prefkit.train.tiny_model import build_tiny_model

    cache: dict[tuple, Path] = {}

    def make(**kw) -> Path:
        key = tuple(sorted(kw.items()))
        if key not in cache:
            cache[key] = build_tiny_model(tmp_path_factory.mktemp("tiny-model"), **kw)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_model_path(tiny_model_factory) -> Path:
    """A built tiny model folder, shared by the session: copy it before changing it."""
    return tiny_model_factory()


@pytest.fixture
def tiny_model_copy(tiny_model_path, tmp_path) -> Path:
    """A private, writable copy of the tiny model folder."""
    return Path(shutil.copytree(tiny_model_path, tmp_path / "tiny-model"))
