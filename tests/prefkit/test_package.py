"""The wheel a user installs: everything under `prefkit`, nothing a user's own files can shadow.

Built from this checkout (`pip wheel`, no network), installed into a folder of its own, and run from
a working folder that holds a user's `train.py`, `data.py`, `generate.py`, `annotate.py` and
`core.py`, each of which would fail loudly if prefkit imported it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("core", "data", "generate", "annotate", "train")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # built from a copy: setuptools builds in the source tree, and a build/ left there by an earlier
    # build could hand a module deleted since to this wheel
    src = tmp_path_factory.mktemp("src") / "prefkit-src"
    shutil.copytree(
        ROOT,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "site", "runs", "*.egg-info", "__pycache__", ".*cache"),
    )
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        text=True,
    )
    (path,) = out.glob("prefkit-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def test_the_wheel_holds_one_top_level_package_with_every_room(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"prefkit"}
    for room in ROOMS:
        assert f"prefkit/{room}/__init__.py" in names, room
    assert "prefkit/train/ppo/losses.py" in names
    assert "prefkit/data/samples/vi_preference_sample.jsonl" in names
    assert "prefkit/annotate/static/demo_guidelines.md" in names
    # the links of the checkout become plain folders: every room's modules are in the wheel
    for room in ROOMS:
        expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / room).rglob("*.py") if "__pycache__" not in p.parts}
        assert {f"prefkit/{p}" for p in expected} <= set(names), room


@pytest.fixture
def users_folder(tmp_path) -> Path:
    """A researcher's working folder with modules named like prefkit's rooms."""
    for name in (*ROOMS, "prefkit_user_marker"):
        (tmp_path / f"{name}.py").write_text(f"raise SystemExit('the user\\'s own {name}.py was imported')\n")
    return tmp_path


def _run(args, cwd, site):
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_commands_run_beside_a_users_train_py(installed, users_folder):
    for args in (
        ["-m", "prefkit.cli", "train", "dpo", "--help"],
        ["-m", "prefkit.cli", "data", "validate", "--help"],
        ["-m", "prefkit.cli", "annotate", "import", "--help"],
        ["-m", "prefkit.cli", "generate", "--help"],
    ):
        done = _run(args, users_folder, installed)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
        assert "Usage" in done.stdout
        assert "user's own" not in done.stdout + done.stderr


def test_the_installed_rooms_come_from_the_wheel_not_the_checkout(installed, users_folder):
    code = (
        "import prefkit.data, prefkit.train.ppo.losses, prefkit.annotate.store, prefkit.core.config;"
        "print(prefkit.data.__file__); print(prefkit.train.ppo.losses.__file__)"
    )
    done = _run(["-c", code], users_folder, installed)
    assert done.returncode == 0, done.stderr[-2000:]
    for line in done.stdout.split():
        assert Path(line).is_relative_to(installed), line


def test_a_bare_room_name_is_not_importable_from_the_wheel(installed, tmp_path):
    """Nothing installs top-level `data`, `train`, …: another package of that name cannot clash."""
    for room in ROOMS:
        assert not (installed / room).exists(), room
    done = _run(["-c", "import train"], tmp_path, installed)
    assert done.returncode != 0 and "No module named 'train'" in done.stderr
