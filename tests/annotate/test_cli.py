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
    store = Store.open(str(db))
    assert store.count_pairs("p") == 0  # the project exists, half a file was not imported
    store.close()


def test_serve_starts_the_app_on_the_store(tmp_path):
    db = tmp_path / "store.db"

    def serve(port: int) -> list[str]:
        return [sys.executable, "-c", "from prefkit.cli import main; main()", "annotate", "serve",
                "--db", str(db), "--port", str(port)]

    with running_server(serve, timeout=90) as url:
        assert url.startswith("http://127.0.0.1:")
        assert db.exists()  # serve created the store before starting Streamlit


def test_assign_completeness_and_the_judgement_table(sqlite_url, make_pairs, tmp_path):
    """assign/unassign; export --complete-only with completeness on the card and in the summary;
    export --judgements writes the table `prefkit data export --judgements` (and a round) reads."""
    from datasets import load_from_disk

    from data.aggregate import aggregate
    from data.readers import read_judgements, read_pairs

    pairs_file = tmp_path / "pairs.jsonl"
    write_pairs(make_pairs(6), pairs_file)
    invoke("import", str(pairs_file), "--project", "vi", "--overlap", "2", "--db", sqlite_url)
    for user in ("an", "binh", "chi"):
        invoke("users", "add", user, "--db", sqlite_url)
    assert invoke("assign", "an", "binh", "--project", "vi", "--db", sqlite_url).stdout.strip() == "vi: an, binh"
    store = Store.open(sqlite_url)
    try:
        with pytest.raises(ConfigError, match="not assigned"):
            store.claim("vi", "chi")
        for user, n in (("an", 6), ("binh", 2)):  # two pairs complete, four below their overlap
            for _ in range(n):
                a = store.claim("vi", user)  # "a negligibly better", wherever a was shown
                point = -1 if a.shown_order[0] == a.pair.a.id else 1
                store.submit(a.id, user, Judgement.from_choice(a.pair.pair_id, user, point, a.shown_order))
    finally:
        store.close()
    out = invoke("unassign", "an", "binh", "--project", "vi", "--db", sqlite_url).stdout
    assert out.strip() == "vi: open to every annotator"

    out = invoke("export", str(tmp_path / "all"), "--project", "vi", "--test-size", "0.5", "--db", sqlite_url).stdout
    assert "complete_pairs=2" in out and "below_overlap_pairs=4" in out and "exported=6" in out, out
    card = (tmp_path / "all" / "README.md").read_text(encoding="utf-8")
    assert "2 judged pairs have all the judgements their overlap asks for, 4 have fewer (included" in card
    out = invoke("export", str(tmp_path / "done"), "--project", "vi", "--complete-only", "--test-size", "0.5",
                 "--db", sqlite_url).stdout
    assert "exported=2" in out and "complete_only=True" in out
    done = load_from_disk(str(tmp_path / "done"))
    assert sum(ds.num_rows for ds in done.values()) == 2
    assert all(n == 2 for ds in done.values() for n in ds["n_annotators"])
    assert "(left out: only complete pairs were exported)" in (tmp_path / "done" / "README.md").read_text("utf-8")

    table = tmp_path / "judgements.jsonl"
    out = invoke("export", str(table), "--project", "vi", "--judgements", "--db", sqlite_url).stdout
    assert out.strip() == f"wrote {table}: 8 judgements of project vi"
    judgements = read_judgements(table)
    assert len(judgements) == 8 and {j.annotator for j in judgements} == {"an", "binh"}
    assert all(abs(j.choice()) == 1 and j.preferred is not None for j in judgements)  # a side, kept
    rows, report = aggregate(read_pairs(pairs_file), judgements)  # as `prefkit round run --judgements` does
    assert report.exported == 6 and {r.margin for r in rows} == {0.0}
    # never overwrites
    result = runner.invoke(app, ["annotate", "export", str(table), "--project", "vi", "--judgements",
                                 "--db", sqlite_url])
    assert result.exit_code != 0 and "already exists" in str(result.exception or result.output)
