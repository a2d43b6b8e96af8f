"""kill -9 at each rename step of every writer (issue 13): a whole output is always left behind,
never a new output beside a previous run's report, and the next run cleans what the killed one left.

The real `prefkit` command runs in a subprocess with `PREFKIT_FAULT_AT=STEP`, which makes
`prefkit.core.atomic` SIGKILL the process at that step (see `prefkit.core.atomic.FAULT_STEPS`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from prefkit.core.atomic import FAULT_ENV, FAULT_STEPS, NO_EXCHANGE_ENV

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "samples" / "vi_preference_sample.jsonl"


def prefkit(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, NO_EXCHANGE_ENV)}
    full.update({"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "prefkit.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full,
        timeout=300,
    )


def killed_at(step: str, *args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> None:
    proc = prefkit(*args, cwd=cwd, env={FAULT_ENV: step, **(env or {})})
    assert proc.returncode == -signal.SIGKILL, (step, proc.returncode, proc.stderr)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".old")))


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """The sample plus one bad row, so --skip-invalid writes a third file (the rejected rows)."""
    path = tmp_path / "in.jsonl"
    path.write_text(
        SAMPLE.read_text(encoding="utf-8") + '{"question": "q", "chosen": "", "rejected": "r"}\n', encoding="utf-8"
    )
    return path


def test_every_step_is_named_in_the_module() -> None:
    assert len(set(FAULT_STEPS)) == len(FAULT_STEPS) >= 8


DEDUP_UNIT = ["kept.jsonl", "kept.dedup-report.json", "kept.rejected.jsonl"]
# dedup's unit: OUT, its report, its rejected rows, then the three markers (6 renames)
DEDUP_STEPS = ["files:written", "files:committed", *(f"files:renamed-{i}" for i in range(6)), "files:done"]


def _dedup_set(folder: Path) -> tuple[float, int]:
    """(threshold, kept rows) of the dedup output set in `folder`, checked whole: the report
    describes the OUT beside it, and every file is what its marker lists."""
    from prefkit.core.outputs import foreign_entry

    rows = (folder / "kept.jsonl").read_text(encoding="utf-8").splitlines()
    report = json.loads((folder / "kept.dedup-report.json").read_text(encoding="utf-8"))
    assert report["rows_out"] == len(rows)
    assert (folder / "kept.rejected.jsonl").read_text(encoding="utf-8").count("\n") == report["invalid_skipped"] == 1
    for name in DEDUP_UNIT:
        assert foreign_entry(folder / name, folder=False) is None, name
    return report["threshold"], len(rows)


@pytest.mark.parametrize("step", DEDUP_STEPS)
def test_dedup_killed_at_each_step_leaves_one_whole_set(prefkit_main, src: Path, tmp_path: Path, step: str) -> None:
    from prefkit.core.atomic import clean_stale
    from prefkit.data.export import find_dedup_report

    base = ["data", "dedup", src, "kept.jsonl", "--skip-invalid"]
    assert prefkit_main(*base)[0] == 0
    old = _dedup_set(tmp_path)
    killed_at(step, *base, "--threshold", "0.3", "--overwrite", cwd=tmp_path)

    # Before anything settles it, a reader never pairs the OUT with a report of another run: the
    # unit's markers are read first, and a report that is not OUT's is passed over.
    found = find_dedup_report(tmp_path / "kept.jsonl")
    if found is not None:
        assert found[0]["rows_out"] == len((tmp_path / "kept.jsonl").read_text(encoding="utf-8").splitlines())
    # The next write to any file of the set settles it first: rolled back before the commit
    # record, rolled forward after it. Either way one whole set, every file as its marker says.
    clean_stale(tmp_path / "kept.dedup-report.json")
    settled = _dedup_set(tmp_path)
    committed = step != "files:written"
    assert (settled[0] == 0.3) == committed and (settled == old) == (not committed)
    assert not list(tmp_path.glob(".*.commit*"))

    code, _, err = prefkit_main(*base, "--threshold", "0.5", "--overwrite")  # and it is ours to replace
    assert code == 0, err
    assert _dedup_set(tmp_path)[0] == 0.5 and leftovers(tmp_path) == []  # the killed run's temps are gone


def test_dedup_killed_after_the_commit_is_finished_by_the_next_run(prefkit_main, src: Path, tmp_path: Path) -> None:
    """The settling happens in any later prefkit write to the set, here a plain rerun."""
    base = ["data", "dedup", src, "kept.jsonl", "--skip-invalid"]
    assert prefkit_main(*base)[0] == 0
    killed_at("files:renamed-1", *base, "--threshold", "0.3", "--overwrite", cwd=tmp_path)
    code, _, err = prefkit_main(*base, "--threshold", "0.3")  # no --overwrite: the finished set is there
    assert code == 2 and "already exists (written by prefkit data dedup)" in err
    assert _dedup_set(tmp_path)[0] == 0.3 and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("step", "exchange"),
    [
        ("file:written", True),
        ("dir:written", True),
        ("dir:exchanged", True),
        ("dir:old-moved", False),
        ("dir:renamed", False),
    ],
)
def test_export_killed_at_each_step_keeps_a_whole_dataset(
    prefkit_main, src: Path, tmp_path: Path, step: str, exchange: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datasets import load_from_disk

    env = {} if exchange else {NO_EXCHANGE_ENV: "1"}
    base = ["data", "export", src, "ds", "--skip-invalid"]
    assert prefkit_main(*base)[0] == 0
    killed_at(step, *base, "--overwrite", "--test-size", "0.5", cwd=tmp_path, env=env)

    if step == "dir:old-moved":
        # two-rename fallback (no RENAME_EXCHANGE): the old dataset waits under its .old name...
        assert not (tmp_path / "ds").exists() and len(leftovers(tmp_path)) == 2
        # ...and any prefkit write to that output puts it back first; a refused one changes nothing else
        code, _, err = prefkit_main(*base)
        assert code == 2 and "already exists (written by prefkit data export)" in err
    test_rows = load_from_disk(str(tmp_path / "ds"))["test"].num_rows
    expect_new = step in ("dir:exchanged", "dir:renamed")
    assert (test_rows > 20) == expect_new  # the new export whole, or the old one whole
    # its rejected rows travel inside it, in the same swap: never a dataset without them
    assert (tmp_path / "ds" / "rejected.jsonl").read_text(encoding="utf-8").count("\n") == 1
    assert not (tmp_path / "ds.rejected.jsonl").exists()

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = prefkit_main(*base, "--overwrite", "--test-size", "0.5")
    assert code == 0, err
    assert leftovers(tmp_path) == []
    assert load_from_disk(str(tmp_path / "ds"))["test"].num_rows > 20


@pytest.mark.parametrize("step", ["dir:written", "dir:exchanged"])
def test_annotate_export_killed_mid_swap_keeps_a_whole_dataset(prefkit_main, tmp_path: Path, step: str) -> None:
    from datasets import load_from_disk

    _judged_store(tmp_path / "s.db")
    base = ["annotate", "export", "ds", "--project", "p", "--db", "s.db"]
    assert prefkit_main(*base)[0] == 0
    killed_at(step, *base, "--overwrite", "--test-size", "0.5", cwd=tmp_path)
    assert (load_from_disk(str(tmp_path / "ds"))["test"].num_rows > 20) == (step == "dir:exchanged")
    assert prefkit_main(*base, "--overwrite")[0] == 0
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("step", ["files:written", "files:committed", "files:renamed-0", "files:done"])
def test_annotate_judgement_table_killed_at_each_step_is_settled_whole(prefkit_main, tmp_path: Path, step: str) -> None:
    """The judgement table and its marker are one unit: after a kill and the next write's
    settling, the file is whole and its marker lists it, so --overwrite accepts it."""
    from prefkit.core.atomic import clean_stale
    from prefkit.core.outputs import foreign_entry
    from prefkit.data.readers import read_judgements

    _judged_store(tmp_path / "s.db")
    base = ["annotate", "export", "j.jsonl", "--judgements", "--project", "p", "--db", "s.db"]
    assert prefkit_main(*base)[0] == 0
    killed_at(step, *base, "--overwrite", cwd=tmp_path)
    clean_stale(tmp_path / "j.jsonl")
    assert foreign_entry(tmp_path / "j.jsonl", folder=False) is None
    assert len(read_judgements(tmp_path / "j.jsonl")) == 66
    code, _, err = prefkit_main(*base, "--overwrite")
    assert code == 0, err
    assert leftovers(tmp_path) == [] and not list(tmp_path.glob(".*.commit*"))


def _judged_store(path: Path) -> None:
    from prefkit.annotate.store import Store
    from prefkit.data.readers import read_pairs
    from prefkit.data.schema import Judgement

    store = Store.open(str(path))
    try:
        store.ensure_project("p", overlap=1)
        store.add_user("lan")
        store.import_pairs("p", read_pairs(SAMPLE))
        while (a := store.claim("p", "lan")) is not None:
            store.submit(a.id, "lan", Judgement.from_seven_point(a.pair.pair_id, "lan", -2, a.shown_order))
    finally:
        store.close()


@pytest.mark.slow
def test_generate_killed_while_writing_resumes_and_cleans_up(tiny_model_path: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"question": f"Câu hỏi số {i}?"}) + "\n" for i in range(4)), encoding="utf-8")
    base = [
        "generate",
        prompts,
        "gen",
        "--model",
        tiny_model_path,
        "--temperatures",
        "0.7,1.0",
        "--config",
        REPO / "configs" / "generate" / "tiny-cpu.yaml",
        "--shard-size",
        "2",
        "--no-progress",
    ]
    killed_at("file:written", *base, cwd=tmp_path)  # the first write: the manifest, before any shard
    assert leftovers(tmp_path / "gen")
    done = prefkit(*base, "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert leftovers(tmp_path) == []
    report = json.loads((tmp_path / "gen" / "report.json").read_text(encoding="utf-8"))
    # one pair per prompt, none twice; a random model's empty answer drops its pair (counted)
    assert report["prompts"]["done"] == 4 and report["pairs"] + report["dropped"]["count"] == 4


def test_only_a_dead_runs_temp_files_are_cleaned(tmp_path: Path) -> None:
    from prefkit.core.atomic import atomic_path, clean_stale

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "out.jsonl"
    live_tmp = tmp_path / f".out.jsonl.{os.getpid()}.abcd.tmp"
    dead_tmp = tmp_path / f".out.jsonl.{dead.pid}.abcd.tmp"
    other = tmp_path / f".other.jsonl.{dead.pid}.abcd.tmp"
    for p in (live_tmp, dead_tmp, other):
        p.write_text("x")
    with atomic_path(target) as tmp:
        tmp.write_text("new\n")
    assert live_tmp.exists() and other.exists() and not dead_tmp.exists()

    folder = tmp_path / "ds"
    old = tmp_path / f".ds.{dead.pid}.old"  # a swap killed between its two renames
    old.mkdir()
    (old / "data.txt").write_text("v1")
    assert clean_stale(folder) == [old]
    assert (folder / "data.txt").read_text() == "v1" and not old.exists()
    shutil.rmtree(folder)
