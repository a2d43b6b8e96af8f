"""`prefkit annotate ...` end to end through the real `prefkit` command, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from typer.testing import CliRunner

from prefkit.annotate.server import free_port, port_is_free, running_server
from prefkit.annotate.store import Store
from prefkit.cli import app
from prefkit.core.errors import ConfigError
from prefkit.data.schema import Judgement
from prefkit.data.writers import write_pairs

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
    out = invoke(
        "import",
        str(pairs_file),
        "--project",
        "vi",
        "--overlap",
        "2",
        "--calibration",
        "0.1",
        "--guidelines",
        str(guide),
        "--db",
        db_url,
    ).stdout
    assert "added 40 pairs, 0 already there; 40 in the project" in out
    again = invoke("import", str(pairs_file), "--project", "vi", "--overlap", "2", "--db", db_url).stdout
    assert "added 0 pairs, 40 already there; 40 in the project" in again

    admin_token = invoke("users", "add", "lan", "--admin", "--db", db_url).stdout.strip()
    ann_token = invoke("users", "add", "minh", "--db", db_url).stdout.strip()
    listed = invoke("users", "list", "--db", db_url).stdout.splitlines()
    assert listed == [
        "lan\tadmin\tactive\t0 failed sign-ins (24 h)",
        "minh\tannotator\tactive\t0 failed sign-ins (24 h)",
    ]

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
    out = invoke(
        "export", str(ds_dir), "--project", "vi", "--margin", "large", "--test-size", "0.25", "--jsonl", "--db", db_url
    ).stdout
    assert f"wrote {ds_dir}" in out
    ds = load_from_disk(str(ds_dir))
    assert sum(len(s) for s in ds.values()) == 40 and len(ds["test"]) == 10
    assert set(ds["train"]["n_annotators"]) == {2} and set(ds["train"]["margin"]) == {2.0}
    assert set(ds["train"]["chosen"]) <= {p.a.text for p in make_pairs(40)}
    assert (ds_dir / "README.md").exists() and (ds_dir / "jsonl" / "train.jsonl").exists()

    invoke("users", "disable", "minh", "--db", db_url)
    assert invoke("users", "list", "--db", db_url).stdout.splitlines()[1].startswith("minh\tannotator\tdisabled\t")
    store = Store.open(db_url)
    assert store.authenticate(ann_token) is None
    store.close()


def test_admin_sees_failed_sign_ins_lists_and_lifts_waits(db_url):
    from prefkit.annotate.store import FREE_FAILURES_PER_ADDRESS, FREE_FAILURES_PER_USER, SignInThrottled

    old = invoke("users", "add", "minh", "--db", db_url).stdout.strip()
    invoke("users", "add", "lan", "--db", db_url)
    assert invoke("users", "waits", "--db", db_url).stderr.startswith("no waits")
    store = Store.open(db_url)
    try:
        for _ in range(FREE_FAILURES_PER_USER + 6):  # a wrong secret on minh's public key
            with contextlib.suppress(SignInThrottled):
                assert store.authenticate(old[:-3] + "xyz", client="ip:192.0.2.7") is None
        for i in range(FREE_FAILURES_PER_ADDRESS):  # keys guessed from one address
            with contextlib.suppress(SignInThrottled):
                store.authenticate(f"pk_{i:016x}_guess", client="ip:198.51.100.4")
        assert store.authenticate(old, client="ip:192.0.2.7").name == "minh"  # the right token: at once
    finally:
        store.close()
    lines = invoke("users", "list", "--db", db_url).stdout.splitlines()
    (minh,) = [x for x in lines if x.startswith("minh\t")]
    assert minh.startswith(f"minh\tannotator\tactive\t{FREE_FAILURES_PER_USER + 6} failed sign-ins (24 h), last ")
    assert "wrong tokens slowed until" in minh and "(next answered after 60 s)" in minh
    waits = invoke("users", "waits", "--db", db_url).stdout.splitlines()
    assert [w.split("\t")[:4] for w in waits] == [  # 192.0.2.7's 11 are within an address's free 20
        ["account", "minh", f"{FREE_FAILURES_PER_USER + 6} failures", "next wrong token answered after 60 s"],
        ["address", "198.51.100.4", f"{FREE_FAILURES_PER_ADDRESS} failures", "next wrong token answered after 1 s"],
    ]
    assert invoke("users", "lift", "minh", "--db", db_url).stdout.strip() == "lifted: minh"
    assert [w.split("\t")[1] for w in invoke("users", "waits", "--db", db_url).stdout.splitlines()] == ["198.51.100.4"]
    assert invoke("users", "lift", "--all", "--db", db_url).stdout.strip() == "lifted: address 198.51.100.4"
    assert invoke("users", "waits", "--db", db_url).stdout == ""
    r = _prefkit("annotate", "users", "lift", "--db", db_url)
    assert r.returncode == 2 and "name the users (or --address ADDR, or --all)" in r.stderr


def test_admin_resets_a_token_and_re_enables(db_url):
    old = invoke("users", "add", "minh", "--db", db_url).stdout.strip()
    r = invoke("users", "reset-token", "minh", "--db", db_url)
    assert len(r.stdout.splitlines()) == 1 and "shown only now" in r.stderr
    new = r.stdout.strip()
    assert new.startswith("pk_") and new != old and new not in r.stderr
    invoke("users", "disable", "minh", "--db", db_url)
    assert "'minh' enabled" in invoke("users", "enable", "minh", "--db", db_url).stdout
    store = Store.open(db_url)
    try:
        assert store.authenticate(old) is None and store.authenticate(new).name == "minh"
    finally:
        store.close()
    r = _prefkit("annotate", "users", "reset-token", "ghost", "--db", db_url)  # the real command's exit
    assert r.returncode == 2 and r.stderr.strip() == "error: no user named 'ghost' in this store"


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
    # so the retry, with the file fixed, may choose other settings
    r = _prefkit("annotate", "import", str(good), "--project", "p", "--overlap", "3", env={"PREFKIT_DB": str(db)})
    assert r.returncode == 0, r.stderr
    store = Store.open(str(db))
    assert store.count_pairs("p") == 2 and store.get_project("p").overlap == 3
    store.close()


def test_serve_starts_the_app_on_the_store(tmp_path):
    db = tmp_path / "store.db"
    ports: list[int] = []

    def serve(port: int) -> list[str]:
        ports.append(port)
        return [
            sys.executable,
            "-c",
            "from prefkit.cli import main; main()",
            "annotate",
            "serve",
            "--db",
            str(db),
            "--port",
            str(port),
        ]

    with running_server(serve, timeout=90) as url:
        assert url.startswith("http://127.0.0.1:")
        assert db.exists()  # serve created the store before starting Streamlit
        assert not port_is_free(ports[0])
    assert port_is_free(ports[0])  # running_server left no server behind


def _started(args: list[str], port: int, cwd: str | None = None, timeout: float = 120) -> subprocess.Popen[str]:
    """`prefkit ARGS` in a session of its own (so the test can see every process it leaves),
    once the app answers on `port`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from prefkit.cli import main; main()", *args],
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        assert time.monotonic() < deadline, "the app never answered"
        time.sleep(0.2)


def _assert_sigterm_stops_everything(proc: subprocess.Popen[str], port: int) -> None:
    """SIGTERM to the command alone (as `kill PID` does): it stops, its Streamlit child with it,
    and the port is free for the next server."""
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    finally:
        left = True
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            left = False
        if left:  # clean up before failing: never leave a server behind
            os.killpg(proc.pid, signal.SIGKILL)
    assert not left, "a process of the command outlived it"
    assert port_is_free(port)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)


def test_sigterm_on_serve_stops_the_streamlit_server(tmp_path):
    port = free_port()
    proc = _started(["annotate", "serve", "--db", str(tmp_path / "s.db"), "--port", str(port)], port)
    _assert_sigterm_stops_everything(proc, port)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_kill_9_on_serve_still_stops_the_streamlit_server(tmp_path):
    port = free_port()
    proc = _started(["annotate", "serve", "--db", str(tmp_path / "s.db"), "--port", str(port)], port)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to forward anything: the child is told by the kernel
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while not port_is_free(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    free = port_is_free(port)
    if not free:  # clean up before failing: the group outlives its killed leader
        os.killpg(proc.pid, signal.SIGKILL)
    assert free, "the Streamlit server outlived its killed parent"


@pytest.mark.slow
def test_sigterm_on_demo_stops_the_streamlit_server(tmp_path):
    port = free_port()
    proc = _started(
        ["demo", "--out", str(tmp_path / "demo"), "--port", str(port)], port, cwd=str(tmp_path), timeout=300
    )
    _assert_sigterm_stops_everything(proc, port)


def test_busy_port_is_one_line_naming_the_option(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _prefkit("annotate", "serve", "--db", str(tmp_path / "s.db"), "--port", str(port))
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.strip() == f"error: port {port} on 127.0.0.1 is already in use; pick another with --port N"
        assert not (tmp_path / "s.db").exists()  # refused before anything was done
        r = _prefkit("demo", "--out", str(tmp_path / "demo"), "--port", str(port))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--port N" in r.stderr
        assert not (tmp_path / "demo").exists()


def test_unreachable_database_is_one_line(tmp_path):
    url = f"postgresql+psycopg://prefkit:secret@127.0.0.1:{free_port()}/nothing"
    for args in (["init"], ["serve", "--port", str(free_port())]):
        r = _prefkit("annotate", *args, "--db", url)
        assert r.returncode == 2, r.stderr
        line = r.stderr.strip()
        assert "\n" not in line and line.startswith("error: cannot use store postgresql+psycopg://prefkit:***@")
        assert "secret" not in line and "refused" in line.lower()


def test_assign_completeness_and_the_judgement_table(sqlite_url, make_pairs, tmp_path):
    """assign/unassign; export --complete-only with completeness on the card and in the summary;
    export --judgements writes the table `prefkit data export --judgements` (and a round) reads."""
    from datasets import load_from_disk

    from prefkit.data.aggregate import aggregate
    from prefkit.data.readers import read_judgements, read_pairs

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
    out = invoke(
        "export", str(tmp_path / "done"), "--project", "vi", "--complete-only", "--test-size", "0.5", "--db", sqlite_url
    ).stdout
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
    result = runner.invoke(
        app, ["annotate", "export", str(table), "--project", "vi", "--judgements", "--db", sqlite_url]
    )
    assert result.exit_code != 0 and "already exists" in str(result.exception or result.output)


def test_export_trl_and_llama2_sets(sqlite_url, make_pairs, tmp_path):
    """`annotate export --trl --sets helpfulness,safety` writes both sets, each loadable, with TRL's
    message columns; the safety set holds the adversarial prompts' pairs and the flagged ones, less
    those whose chosen response is the unsafe one (Llama 2 drops them)."""
    from dataclasses import replace

    from datasets import load_from_disk

    pairs = make_pairs(12)
    for i in range(8, 12):  # four red-teaming prompts
        pairs[i] = replace(pairs[i], prompt=replace(pairs[i].prompt, adversarial=True))
    pairs_file = tmp_path / "pairs.jsonl"
    write_pairs(pairs, pairs_file)
    invoke("import", str(pairs_file), "--project", "s", "--overlap", "1", "--db", sqlite_url)
    by_id = {p.pair_id: p for p in pairs}
    store = Store.open(sqlite_url)
    try:
        store.add_user("minh")
        while (a := store.claim("s", "minh")) is not None:
            pair = by_id[a.pair.pair_id]
            i = pairs.index(pair)
            point = -2 if a.shown_order[0] == pair.a.id else 2  # always prefers `a`
            unsafe = {0: (pair.b.id,), 1: (pair.a.id, pair.b.id), 2: (pair.a.id,)}.get(i, ())
            store.submit(
                a.id, "minh", Judgement.from_seven_point(pair.pair_id, "minh", point, a.shown_order, unsafe=unsafe)
            )
    finally:
        store.close()

    out = tmp_path / "sets"
    r = invoke(
        "export",
        str(out),
        "--project",
        "s",
        "--trl",
        "--sets",
        "helpfulness,safety",
        "--test-size",
        "0.25",
        "--db",
        sqlite_url,
    )
    assert f"wrote {out}" in r.stdout
    helpful, safety = load_from_disk(str(out / "helpfulness")), load_from_disk(str(out / "safety"))
    rows = {s: [r for split in d.values() for r in split] for s, d in (("h", helpful), ("s", safety))}
    # the aggregation already drops pair 2 (its chosen response flagged unsafe, the other not)
    assert "unsafe_chosen_dropped=1" in r.stdout
    assert sorted(r["id"] for r in rows["h"]) == sorted(p.pair_id for i, p in enumerate(pairs) if i != 2)
    # pairs 0, 1 (flagged) and 8-11 (adversarial) are in
    assert sorted(r["id"] for r in rows["s"]) == sorted(pairs[i].pair_id for i in (0, 1, 8, 9, 10, 11))
    for d in (helpful, safety):
        cols = d["train"].column_names
        assert {"prompt", "chosen", "rejected", "chosen_text", "rejected_text", "chosen_unsafe"} <= set(cols)
    first = rows["s"][0]
    assert first["prompt"][-1]["role"] == "user" and first["chosen"][0]["role"] == "assistant"
    assert first["chosen"][0]["content"] == first["chosen_text"] == by_id[first["id"]].a.text
    bins = {r["id"]: (r["chosen_unsafe"], r["rejected_unsafe"]) for r in rows["s"]}
    assert bins[pairs[0].pair_id] == (False, True) and bins[pairs[1].pair_id] == (True, True)
    assert {r["id"]: r["safety_bin"] for r in rows["s"]}[pairs[0].pair_id] == "safe_vs_unsafe"

    from prefkit.core.errors import DataError

    with pytest.raises(DataError, match="unknown set 'harm'"):
        invoke("export", str(tmp_path / "x"), "--project", "s", "--sets", "harm", "--db", sqlite_url)
    with pytest.raises(ConfigError, match="--trl and --sets apply to the dataset export"):
        invoke("export", str(tmp_path / "j.jsonl"), "--project", "s", "--judgements", "--trl", "--db", sqlite_url)
    assert not (tmp_path / "x").exists() and not (tmp_path / "j.jsonl").exists()


def test_import_safety_labels_and_a_store_made_before_the_setting(sqlite_url, make_pairs, tmp_path):
    """`import --safety-labels` marks the project; a store without the setting's table (made by an
    older prefkit) still opens, gains the table, and its projects ask for no safety label."""
    import sqlite3

    pairs_file = tmp_path / "pairs.jsonl"
    write_pairs(make_pairs(3), pairs_file)
    invoke("import", str(pairs_file), "--project", "plain", "--db", sqlite_url)
    db_file = sqlite_url.split(":///", 1)[-1]
    with sqlite3.connect(db_file) as conn:
        conn.execute("DROP TABLE project_safety_labels")
    invoke("import", str(pairs_file), "--project", "safe", "--safety-labels", "--db", sqlite_url)
    with Store.open(sqlite_url) as store:
        assert not store.get_project("plain").safety_labels and store.get_project("safe").safety_labels
        assert [(p.name, p.safety_labels) for p in store.list_projects()] == [("plain", False), ("safe", True)]
    invoke("import", str(pairs_file), "--project", "safe", "--db", sqlite_url)  # re-import keeps it
    with Store.open(sqlite_url) as store:
        assert store.get_project("safe").safety_labels


def test_serve_refuses_a_trusted_proxy_that_is_not_an_address(tmp_path):
    r = _prefkit("annotate", "serve", "--db", str(tmp_path / "s.db"), "--trusted-proxies", "127.0.0.1,proxy.local")
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: --trusted-proxies: 'proxy.local' is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8); "
        "name the reverse proxy's own addresses"
    )
    assert not (tmp_path / "s.db").exists()  # refused before anything is opened
