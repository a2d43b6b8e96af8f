"""`prefkit annotate ...` end to end through the real `prefkit` command, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from annotate.server import running_server
from annotate.store import Store
from data.errors import ConfigError
from data.schema import Judgement
from data.writers import write_pairs
from prefkit.cli import app

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, ["annotate", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def test_init_import_users_export(db_url, make_pairs, tmp_path):
    from datasets import load_from_disk

    pairs_file = tmp_path / "pairs.parquet"
    write_pairs(make_pairs(40), pairs_file)
    guide = tmp_path / "guide.md"
    guide.write_text("# Hướng dẫn\nChọn câu trả lời tốt hơn.", encoding="utf-8")

    assert "store ready" in invoke("init", "--db", db_url).stdout
    out = invoke("import", str(pairs_file), "--project", "vi", "--overlap", "2", "--calibration", "0.1",
                 "--guidelines", str(guide), "--db", db_url).stdout
    assert "added 40 pairs, 0 already there; 40 in the project" in out
    again = invoke("import", str(pairs_file), "--project", "vi", "--overlap", "2", "--db", db_url).stdout
    assert "added 0 pairs, 40 already there; 40 in the project" in again

    admin_token = invoke("users", "add", "lan", "--admin", "--db", db_url).stdout.strip()
    ann_token = invoke("users", "add", "minh", "--db", db_url).stdout.strip()
    listed = invoke("users", "list", "--db", db_url).stdout.splitlines()
    assert listed == ["lan\tadmin\tactive", "minh\tannotator\tactive"]

    store = Store.open(db_url)
    try:
        project = store.get_project("vi")
        assert project.guidelines.startswith("# Hướng dẫn") and project.overlap == 2
        assert store.authenticate(admin_token).is_admin and not store.authenticate(ann_token).is_admin
        for user in ("lan", "minh"):  # both find generation-order `a` better, wherever it was shown
            while (a := store.claim("vi", user)) is not None:
                point = -2 if a.shown_order[0] == a.pair.a.id else 2
                store.submit(a.id, user, Judgement.from_seven_point(a.pair.pair_id, user, point, a.shown_order))
    finally:
        store.close()

    ds_dir = tmp_path / "dataset"
    out = invoke("export", str(ds_dir), "--project", "vi", "--margin", "large", "--test-size", "0.25",
                 "--jsonl", "--db", db_url).stdout
    assert f"wrote {ds_dir}" in out
    ds = load_from_disk(str(ds_dir))
    assert sum(len(s) for s in ds.values()) == 40 and len(ds["test"]) == 10
    assert set(ds["train"]["n_annotators"]) == {2} and set(ds["train"]["margin"]) == {2.0}
    assert set(ds["train"]["chosen"]) <= {p.a.text for p in make_pairs(40)}
    assert (ds_dir / "README.md").exists() and (ds_dir / "jsonl" / "train.jsonl").exists()

    invoke("users", "disable", "minh", "--db", db_url)
    assert invoke("users", "list", "--db", db_url).stdout.splitlines()[1] == "minh\tannotator\tdisabled"
    store = Store.open(db_url)
    assert store.authenticate(ann_token) is None
    store.close()


def test_import_refuses_to_change_queue_settings(sqlite_url, make_pairs, tmp_path):
    pairs_file = tmp_path / "pairs.jsonl"
    write_pairs(make_pairs(3), pairs_file)
    invoke("import", str(pairs_file), "--project", "p", "--db", sqlite_url)
    with pytest.raises(ConfigError, match="already exists with overlap=2"):
        invoke("import", str(pairs_file), "--project", "p", "--overlap", "3", "--db", sqlite_url)
    with pytest.raises(ConfigError, match="no user named 'ghost'"):
        invoke("users", "disable", "ghost", "--db", sqlite_url)


def _prefkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from prefkit.cli import main; main()", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_bad_pairs_file_is_one_line_error_and_adds_nothing(tmp_path, make_pairs):
    db = tmp_path / "store.db"
    good = tmp_path / "good.jsonl"
    write_pairs(make_pairs(2), good)
    bad = tmp_path / "bad.jsonl"
    rows = good.read_text(encoding="utf-8").splitlines()
    broken = json.loads(rows[1])
    broken["question"] = ""
    bad.write_text(rows[0] + "\n" + json.dumps(broken, ensure_ascii=False) + "\n", encoding="utf-8")

    # the store comes from $PREFKIT_DB here
    r = _prefkit("annotate", "import", str(bad), "--project", "p", env={"PREFKIT_DB": str(db)})
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "line 2" in err[0] and "question" in err[0]
    # the pairs are read before the store is opened: no half-created project, no store file
    assert not db.exists()


def test_serve_starts_the_app_on_the_store(tmp_path):
    db = tmp_path / "store.db"

    def serve(port: int) -> list[str]:
        return [sys.executable, "-c", "from prefkit.cli import main; main()", "annotate", "serve",
                "--db", str(db), "--port", str(port)]

    with running_server(serve, timeout=90) as url:
        assert url.startswith("http://127.0.0.1:")
        assert db.exists()  # serve created the store before starting Streamlit
