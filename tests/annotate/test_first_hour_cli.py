"""A new user's first hour with `prefkit annotate` (issue 21): the store a command wrote is named,
an export over pairs no one else judged says so, and `--push-to-hub` exists and fails in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefkit.annotate.store import Store
from prefkit.data.schema import Judgement
from prefkit.data.writers import write_pairs

SECRET = "hf_first_hour_secret_token_0123456789"


def prefkit(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("PREFKIT_DB", "HF_TOKEN")}
    return subprocess.run(
        [sys.executable, "-m", "prefkit.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**base, "HOME": str(cwd), **(env or {})},
        timeout=300,
    )


def test_users_add_without_db_names_the_store_it_wrote(tmp_path: Path) -> None:
    proc = prefkit("annotate", "users", "add", "alice", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    store = tmp_path / "annotations.db"
    assert f"annotator 'alice' added to {store}" in proc.stderr
    assert "no --db given and $PREFKIT_DB unset" in proc.stderr
    assert proc.stdout.strip().startswith("pk_")  # the token, alone on stdout
    with_db = prefkit("annotate", "users", "add", "bob", "--db", str(tmp_path / "team.db"), cwd=tmp_path)
    assert f"added to {tmp_path / 'team.db'}" in with_db.stderr and "no --db given" not in with_db.stderr


def _judged_by_one(tmp_path: Path, make_pairs, overlap: int) -> str:
    db = str(tmp_path / f"o{overlap}.db")
    pairs = tmp_path / "pairs.parquet"
    write_pairs(make_pairs(6), pairs)
    assert (
        prefkit(
            "annotate", "import", str(pairs), "--project", "r1", "--overlap", str(overlap), "--db", db, cwd=tmp_path
        ).returncode
        == 0
    )
    store = Store.open(db)
    store.add_user("alice")
    while (a := store.claim("r1", "alice")) is not None:
        store.submit(a.id, "alice", Judgement.from_seven_point(a.pair.pair_id, "alice", 2, a.shown_order))
    store.close()
    return db


def test_an_export_where_no_pair_has_its_overlap_warns_that_agreement_means_nothing(tmp_path: Path, make_pairs) -> None:
    db = _judged_by_one(tmp_path, make_pairs, overlap=2)
    proc = prefkit("annotate", "export", "out", "--project", "r1", "--db", db, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "complete_pairs=0" in proc.stdout and "mean_agreement=1.0" in proc.stdout
    assert "warning: 6 of 6 judged pairs have fewer judgements than their overlap asks for" in proc.stderr
    assert "mean_agreement measures no agreement" in proc.stderr and "--overlap 1" in proc.stderr
    one = _judged_by_one(tmp_path, make_pairs, overlap=1)
    quiet = prefkit("annotate", "export", "out1", "--project", "r1", "--db", one, cwd=tmp_path)
    assert quiet.returncode == 0 and "complete_pairs=6" in quiet.stdout and "warning" not in quiet.stderr


def test_export_push_to_hub_checks_the_token_first_and_fails_in_one_line(tmp_path: Path, make_pairs) -> None:
    db = _judged_by_one(tmp_path, make_pairs, overlap=1)
    args = ["annotate", "export", "out", "--project", "r1", "--db", db, "--push-to-hub", "me/ds"]
    no_token = prefkit(*args, cwd=tmp_path, env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert no_token.returncode == 2 and no_token.stderr.count("\n") == 1
    assert "no Hugging Face token" in no_token.stderr and not (tmp_path / "out").exists()  # before any work
    unreachable = prefkit(*args, cwd=tmp_path, env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": SECRET})
    assert unreachable.returncode == 2 and "push to the Hub as 'me/ds' failed" in unreachable.stderr
    assert SECRET not in unreachable.stderr + unreachable.stdout
    assert (tmp_path / "out" / "dataset_dict.json").exists()  # the local export stays
