"""Quality control through the real `prefkit` command: `annotate import --gold` (and its one-line
errors, exit 2, nothing added), roles, `annotate quality set|show|lift`, and the exports'
`--include-gold` and `--rule ability` (`annotate export` and `data export`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefkit.annotate.store import Store
from prefkit.cli import app
from prefkit.core.errors import ConfigError
from prefkit.data.schema import Judgement
from prefkit.data.writers import write_pairs

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def _prefkit(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from prefkit.cli import main; main()", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dict(os.environ))


def _gold_file(path: Path, pairs, **answer) -> Path:
    rows = [{**p.to_row(), **answer} for p in pairs]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_gold_import_roles_quality_and_exports(db_url, make_pairs, tmp_path):
    from datasets import load_from_disk

    pairs_file = tmp_path / "pairs.jsonl"
    write_pairs(make_pairs(6), pairs_file)
    gold = make_pairs(3, start=50)
    gold_file = _gold_file(tmp_path / "gold.jsonl", gold, gold="b", gold_min_strength="better")
    out = invoke("annotate", "import", str(pairs_file), "--gold", str(gold_file), "--project", "p", "--db", db_url)
    assert "added 6 pairs, 0 already there; 6 in the project; gold pairs: 3 added" in out.stdout
    out = invoke("annotate", "import", "--gold", str(gold_file), "--project", "p", "--db", db_url)
    assert "gold pairs: 0 added, 0 with a new answer, 3 already there" in out.stdout

    invoke("annotate", "users", "add", "lan", "--db", db_url)
    invoke("annotate", "users", "add", "rev", "--role", "reviewer", "--db", db_url)
    invoke("annotate", "users", "add", "boss", "--admin", "--db", db_url)
    assert [
        line.split("\t")[:2] for line in invoke("annotate", "users", "list", "--db", db_url).stdout.splitlines()
    ] == [
        ["boss", "admin"],
        ["lan", "annotator"],
        ["rev", "reviewer"],
    ]
    assert (
        "'lan' is now reviewer"
        in invoke("annotate", "users", "role", "lan", "--role", "reviewer", "--db", db_url).stdout
    )
    invoke("annotate", "users", "role", "lan", "--role", "annotator", "--db", db_url)
    with pytest.raises(ConfigError, match="unknown role 'owner'"):
        invoke("annotate", "users", "add", "x", "--role", "owner", "--db", db_url)

    out = invoke("annotate", "quality", "set", "--project", "p", "--qualify", "2", "--gold-rate", "0", "--db", db_url)
    assert "gold_rate=0.0, qualify=2, qualify_accuracy=0.8" in out.stdout and "3 gold pairs" in out.stdout
    out = invoke("annotate", "quality", "set", "--project", "p", "--pause-below", "0.5", "--db", db_url)
    assert "gold_rate=0.0, qualify=2" in out.stdout and "pause_below=0.5" in out.stdout  # the others kept
    with pytest.raises(ConfigError, match="gold_rate must be a share between 0 and 1"):
        invoke("annotate", "quality", "set", "--project", "p", "--gold-rate", "1.5", "--db", db_url)

    store = Store.open(db_url)
    try:
        expected = {g.pair_id: g.b.id for g in gold}
        for _ in range(2):  # lan answers two gold pairs wrong: qualification failed
            a = store.claim("p", "lan")
            wrong = a.pair.other(expected[a.pair.pair_id]).id
            store.submit(a.id, "lan", Judgement(a.pair.pair_id, "lan", wrong, "better", shown_order=a.shown_order))
    finally:
        store.close()
    shown = invoke("annotate", "quality", "show", "--project", "p", "--csv", str(tmp_path / "a.csv"), "--db", db_url)
    lines = shown.stdout.splitlines()
    assert lines[1].split("\t")[:3] == ["annotator", "status", "judgements"]
    lan = next(line.split("\t") for line in lines if line.startswith("lan\t"))
    assert lan[1:3] == ["paused (qualification)", "2"] and lan[-3:] == ["2", "0.000", "0.000"]
    assert (tmp_path / "a.csv").read_text().startswith("annotator,status,judgements,")
    with pytest.raises(ConfigError, match="already exists"):
        invoke("annotate", "quality", "show", "--project", "p", "--csv", str(tmp_path / "a.csv"), "--db", db_url)
    out = invoke("annotate", "quality", "lift", "lan", "--project", "p", "--note", "retrained", "--db", db_url)
    assert "lan: ok in p" in out.stdout

    store = Store.open(db_url)
    try:
        while (a := store.claim("p", "lan")) is not None:
            store.submit(a.id, "lan", Judgement.from_choice(a.pair.pair_id, "lan", -2, a.shown_order))
    finally:
        store.close()
    out = invoke("annotate", "export", str(tmp_path / "ds"), "--project", "p", "--test-size", "0.5", "--db", db_url)
    assert "decided_by={'mean': 6}" in out.stdout
    ds = load_from_disk(str(tmp_path / "ds"))
    assert sum(len(s) for s in ds.values()) == 6
    invoke(
        "annotate",
        "export",
        str(tmp_path / "dsg"),
        "--project",
        "p",
        "--include-gold",
        "--test-size",
        "0.5",
        "--db",
        db_url,
    )
    rows = [r for s in load_from_disk(str(tmp_path / "dsg")).values() for r in s]
    assert len(rows) == 9 and sorted(r["decided_by"] for r in rows).count("gold") == 3
    assert {r["strength"] for r in rows if r["decided_by"] == "gold"} == {"better"}  # the minimum level
    out = invoke("annotate", "export", str(tmp_path / "j.jsonl"), "--project", "p", "--judgements", "--db", db_url)
    assert "6 judgements" in out.stdout
    out = invoke(
        "annotate",
        "export",
        str(tmp_path / "jg.jsonl"),
        "--project",
        "p",
        "--judgements",
        "--include-gold",
        "--db",
        db_url,
    )
    assert "8 judgements" in out.stdout


def test_ability_rule_from_both_exports(sqlite_url, tmp_path):
    """`--rule ability` on `annotate export` and `data export --judgements`: the same simulated
    team, the estimates printed best first, the card naming the rule and the estimates' range."""
    from dev.annotator_sim import simulate
    from prefkit.data.writers import write_judgements

    sim = simulate(120, 3, seed=1)
    pairs_file, judgements_file = tmp_path / "pairs.jsonl", tmp_path / "judgements.jsonl"
    write_pairs(sim.pairs, pairs_file)
    write_judgements(sim.judgements, judgements_file)
    out = invoke(
        "data",
        "export",
        str(pairs_file),
        str(tmp_path / "d"),
        "--judgements",
        str(judgements_file),
        "--rule",
        "ability",
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("annotator reliability (Dawid-Skene): "))
    ranked = [part.rsplit(" ", 1)[0] for part in line.split(": ", 1)[1].split(", ")]
    assert ranked[0].startswith("good") and ranked[-1] == "adversarial"
    card = (tmp_path / "d" / "README.md").read_text()
    assert "`ability` rule" in card and "Annotator reliability" in card and "Dawid and Skene 1979" in card

    # The same judgements through the store and `annotate export`.
    invoke("annotate", "import", str(pairs_file), "--project", "sim", "--overlap", "3", "--db", sqlite_url)
    store = Store.open(sqlite_url)
    try:
        by_pair: dict[str, list[Judgement]] = {}
        for j in sim.judgements:
            by_pair.setdefault(j.pair_id, []).append(j)
        for name in sim.kinds:
            store.add_user(name)
        for name in sim.kinds:
            while (a := store.claim("sim", name)) is not None:
                mine = [j for j in by_pair[a.pair.pair_id] if j.annotator == name]
                if not mine:
                    store.skip(a.id, name)
                    continue
                j = mine[0]
                store.submit(a.id, name, Judgement(j.pair_id, name, j.preferred, j.strength, shown_order=a.shown_order))
    finally:
        store.close()
    out = invoke("annotate", "export", str(tmp_path / "a"), "--project", "sim", "--rule", "ability", "--db", sqlite_url)
    assert "annotator reliability (Dawid-Skene): good" in out.stdout
    a_ids = {r["id"]: r["chosen"] for s in load(tmp_path / "a").values() for r in s}
    d_ids = {r["id"]: r["chosen"] for s in load(tmp_path / "d").values() for r in s}
    assert a_ids == d_ids  # the store's judgements give the same dataset as the file's
    assert {r["decided_by"] for s in load(tmp_path / "a").values() for r in s} == {"ability"}


def load(path: Path):
    from datasets import load_from_disk

    return load_from_disk(str(path))


def test_bad_gold_file_is_one_line_exit_2_and_adds_nothing(tmp_path, make_pairs):
    db = tmp_path / "store.db"
    good = make_pairs(2)
    bad = _gold_file(tmp_path / "gold.jsonl", good, gold="a", gold_strength="better")
    lines = bad.read_text().splitlines()
    row = json.loads(lines[1])
    row["gold_strength"] = "hugely better"
    bad.write_text(lines[0] + "\n" + json.dumps(row, ensure_ascii=False) + "\n")
    r = _prefkit("annotate", "import", "--gold", str(bad), "--project", "p", "--db", str(db))
    assert r.returncode == 2, r.stderr
    (err,) = r.stderr.strip().splitlines()
    assert f"{bad}, line 2, field 'gold_strength': not a strength" in err
    assert not db.exists()  # read before the store is opened
    r = _prefkit("annotate", "import", "--project", "p", "--db", str(db))
    assert r.returncode == 2 and r.stderr.strip() == "error: give a pairs file, --gold FILE, or both"
