"""The prioritised queue on a store with planted priorities (no model): the claim serves the
calibration share first, then the highest priorities, keeping a random share that is a seeded
sample served in the seeded-shuffle order; pairs already started are finished first after a new
ranking; a new ranking restarts every walk at its front; the export says how each pair was
chosen. Each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from sqlalchemy import select

from prefkit.annotate.store import Store
from prefkit.annotate.tables import PairRow
from prefkit.core.errors import ConfigError
from prefkit.data.schema import Judgement


def _judge(store: Store, a, user: str, point: int = 2) -> None:
    store.submit(a.id, user, Judgement.from_seven_point(a.pair.pair_id, user, point, a.shown_order))


def _drain(store: Store, project: str, user: str) -> list:
    """Claim and judge until nothing is left; the assignments in the order they came."""
    got = []
    while (a := store.claim(project, user)) is not None:
        got.append(a)
        _judge(store, a, user)
    return got


def _positions(store: Store, project: str) -> dict[str, int]:
    pid = store.get_project(project).id
    with store.engine.connect() as c:
        return dict(c.execute(select(PairRow.pair_id, PairRow.position).where(PairRow.project_id == pid)).all())


def test_claims_serve_calibration_then_priority_order_with_a_seeded_random_share(db_url, make_pairs):
    store = Store.open(db_url)
    n = 400
    store.create_project("p", overlap=1, calibration=0.05, seed=3)
    pairs = make_pairs(n)
    store.import_pairs("p", pairs)
    store.add_user("lan")
    rng = random.Random(7)
    planted = {p.pair_id: rng.random() for p in pairs}  # unrelated to the seeded shuffle
    run = store.set_priorities("p", planted)  # the default random share
    assert run.random_share == 0.2 and run.ranked == n and run.finished_at is not None

    got = _drain(store, "p", "lan")
    assert len(got) == n and len({a.pair.pair_id for a in got}) == n
    how = store.selected_by("p")
    order = [how[a.pair.pair_id] for a in got]
    # the calibration share, unchanged, comes first
    n_cal = sum(a.is_calibration for a in got)
    assert 0 < n_cal < n and order[:n_cal] == ["calibration"] * n_cal
    assert all(a.is_calibration == (how[a.pair.pair_id] == "calibration") for a in got)
    rest = got[n_cal:]
    # the others by priority, highest first, except the random share
    unc = [planted[a.pair.pair_id] for a in rest if how[a.pair.pair_id] == "uncertainty"]
    assert unc == sorted(unc, reverse=True)
    assert unc == sorted((planted[p] for p, h in how.items() if h == "uncertainty"), reverse=True)
    # the random share: about a fifth of the pairs (binomial, 4 sd), served one slot in five ...
    rand = [a for a in rest if how[a.pair.pair_id] == "random"]
    m = len(rest)
    assert abs(len(rand) - 0.2 * m) < 4 * math.sqrt(m * 0.2 * 0.8)
    both_left = min(5 * len(rand), 5 * (m - len(rand)) // 4)  # until one side runs out
    first = [how[a.pair.pair_id] for a in rest[:both_left]]
    assert len(first) > 100 and all((h == "random") == (i % 5 == 4) for i, h in enumerate(first))
    # ... in the seeded-shuffle order, and chosen whatever the priorities: not the top ones
    pos = _positions(store, "p")
    assert [pos[a.pair.pair_id] for a in rand] == sorted(pos[a.pair.pair_id] for a in rand)
    rand_prio = sorted(planted[a.pair.pair_id] for a in rand)
    assert rand_prio[0] < 0.1 and rand_prio[-1] > 0.9  # spread over the whole range
    # the uncertainty pairs served first are the highest of all
    assert unc[0] == max(planted[a.pair.pair_id] for a in rest)
    store.close()


def test_random_share_is_configurable_per_project_and_remembered(db_url, make_pairs):
    store = Store.open(db_url)
    for name in ("half", "none"):
        store.create_project(name, overlap=1)
        store.import_pairs(name, make_pairs(100))
    store.add_user("lan")
    prio = {p.pair_id: float(i) for i, p in enumerate(make_pairs(100))}
    assert store.set_priorities("half", prio, random_share=0.5).random_share == 0.5
    assert store.set_priorities("none", prio, random_share=0.0).random_share == 0.0
    half = [store.selected_by("half")[a.pair.pair_id] for a in _drain(store, "half", "lan")[:40]]
    assert [h == "random" for h in half] == [i % 2 == 1 for i in range(40)]
    none = _drain(store, "none", "lan")
    assert [prio[a.pair.pair_id] for a in none] == sorted(prio.values(), reverse=True)
    # a later run keeps the project's share unless told otherwise
    store.import_pairs("half", make_pairs(10, start=500))
    assert store.set_priorities("half", {p.pair_id: 1.0 for p in make_pairs(10, start=500)}).random_share == 0.5
    with pytest.raises(ConfigError, match="between 0 and 1"):
        store.set_priorities("half", prio, random_share=1.5)
    store.close()


def test_started_pairs_come_first_after_a_new_ranking_and_walks_restart_at_its_front(db_url, make_pairs):
    store = Store.open(db_url)
    store.create_project("p", overlap=2)
    pairs = make_pairs(60)
    store.import_pairs("p", pairs)
    for u in ("lan", "minh"):
        store.add_user(u)
    first = {p.pair_id: float(i) for i, p in enumerate(pairs)}
    store.set_priorities("p", first, random_share=0.0)

    def take(user: str) -> float:
        a = store.claim("p", user)
        _judge(store, a, user)
        return first[a.pair.pair_id]

    assert [take("lan") for _ in range(3)] == [59.0, 58.0, 57.0]
    assert take("minh") == 59.0  # complete now; 58 and 57 are started, one judgement each
    # a new model thinks the opposite: the pairs lan started still come first (their overlap is
    # finished before new pairs are opened), then the new order from its front
    store.set_priorities("p", {pid: -v for pid, v in first.items()}, random_share=0.0)
    assert [take("minh") for _ in range(3)] == [58.0, 57.0, 0.0]
    # lan's walk was at the old ranking's third pair; their next pair is the new ranking's front
    assert take("lan") == 0.0  # the same pair as minh's last: overlap 2
    assert take("lan") == 1.0
    store.close()


def test_pairs_outside_the_ranking_come_after_it_and_clear_goes_back_to_the_shuffle(db_url, make_pairs):
    store = Store.open(db_url)
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(20))
    store.add_user("lan")
    store.set_priorities("p", {p.pair_id: float(i) for i, p in enumerate(make_pairs(20))}, random_share=0.0)
    late = make_pairs(5, start=100)
    store.import_pairs("p", late)  # imported after the ranking: no rank yet
    a = store.claim("p", "lan")
    _judge(store, a, "lan")
    got = [a] + _drain(store, "p", "lan")
    assert {a.pair.pair_id for a in got[-5:]} == {p.pair_id for p in late}
    pos = _positions(store, "p")
    assert [pos[a.pair.pair_id] for a in got[-5:]] == sorted(pos[p.pair_id] for p in late)

    store.create_project("q", overlap=1)
    store.import_pairs("q", make_pairs(30))
    prio = {p.pair_id: float(i) for i, p in enumerate(make_pairs(30))}
    store.set_priorities("q", prio, random_share=0.0)
    done = store.claim("q", "lan")
    _judge(store, done, "lan")
    assert store.clear_priorities("q") == 30
    rest = _drain(store, "q", "lan")
    pos = _positions(store, "q")
    assert [pos[a.pair.pair_id] for a in rest] == sorted(pos[a.pair.pair_id] for a in rest)
    how = store.selected_by("q")
    assert how[done.pair.pair_id] == "uncertainty"  # judged before the clear: how it was chosen stays
    assert Counter(how[a.pair.pair_id] for a in rest) == {"random": 29}
    store.close()


def test_export_marks_how_each_pair_was_chosen(db_url, make_pairs, tmp_path):
    from datasets import load_from_disk

    store = Store.open(db_url)
    store.create_project("p", overlap=1, calibration=0.2)
    pairs = make_pairs(50)
    store.import_pairs("p", pairs)
    store.add_user("lan")
    store.set_priorities("p", {p.pair_id: float(i) for i, p in enumerate(pairs)})
    got = _drain(store, "p", "lan")
    store.export("p", tmp_path / "ds", test_size=0.0)
    ds = load_from_disk(str(tmp_path / "ds"))["train"]
    exported = dict(zip(ds["id"], ds["selected_by"], strict=True))
    assert set(exported) == {a.pair.pair_id for a in got}  # a single judgement each: all exported
    how = store.selected_by("p")
    assert exported == {pid: how[pid] for pid in exported}
    assert set(exported.values()) == {"calibration", "random", "uncertainty"}
    assert all((exported[a.pair.pair_id] == "calibration") == a.is_calibration for a in got)
    top = max((p for p in pairs if exported[p.pair_id] != "calibration"), key=lambda p: pairs.index(p))
    assert exported[top.pair_id] in ("uncertainty", "random")
    best_unc = max(pairs.index(p) for p in pairs if exported[p.pair_id] == "uncertainty")
    best_other = max(pairs.index(p) for p in pairs if exported[p.pair_id] == "random")
    assert best_unc > best_other or exported[top.pair_id] == "random"
    card = (tmp_path / "ds" / "README.md").read_text(encoding="utf-8")
    assert "`selected_by`" in card
    # a project never prioritised: every pair was chosen by the seeded shuffle (or calibration)
    store.create_project("plain", overlap=1)
    store.import_pairs("plain", make_pairs(10))
    _drain(store, "plain", "lan")
    store.export("plain", tmp_path / "plain", test_size=0.0)
    assert set(load_from_disk(str(tmp_path / "plain"))["train"]["selected_by"]) == {"random"}
    store.close()


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_the_judgement_table_carries_how_each_pair_was_chosen_into_a_later_export(db_url, make_pairs, tmp_path, suffix):
    """The round's path: `annotate export --judgements` writes the table (JSONL or Parquet),
    `data export --judgements` (what a round's export step runs) turns it into the dataset;
    `selected_by` survives both steps, so a round ordered by its reward model
    (`queue: uncertainty`) can still be reweighted."""
    from datasets import load_from_disk
    from typer.testing import CliRunner

    from prefkit.cli import app
    from prefkit.data.readers import read_judgements
    from prefkit.data.writers import write_pairs

    store = Store.open(db_url)
    store.create_project("p", overlap=1, calibration=0.2)
    pairs = make_pairs(30)
    store.import_pairs("p", pairs)
    store.add_user("lan")
    store.set_priorities("p", {p.pair_id: float(i) for i, p in enumerate(pairs)})
    _drain(store, "p", "lan")
    how = store.selected_by("p")
    store.close()
    write_pairs(pairs, tmp_path / "pairs.jsonl")
    runner = CliRunner()
    table = tmp_path / f"judgements{suffix}"
    result = runner.invoke(app, ["annotate", "export", str(table), "--project", "p", "--judgements", "--db", db_url])
    assert result.exit_code == 0, result.output
    judged = read_judgements(table)
    assert len(judged) == 30 and {j.pair_id: j.selected_by for j in judged} == how
    assert set(how.values()) == {"calibration", "random", "uncertainty"}
    args = ["data", "export", str(tmp_path / "pairs.jsonl"), str(tmp_path / "ds"), "--judgements", str(table)]
    result = runner.invoke(app, [*args, "--test-size", "0"])
    assert result.exit_code == 0, result.output
    ds = load_from_disk(str(tmp_path / "ds"))["train"]
    assert dict(zip(ds["id"], ds["selected_by"], strict=True)) == how


def test_an_interrupted_scoring_run_resumes_and_its_scores_are_kept(db_url, make_pairs):
    store = Store.open(db_url)
    store.create_project("p", overlap=1, calibration=0.1)
    pairs = make_pairs(30)
    store.import_pairs("p", pairs)
    model = [{"path": "/models/rm", "weights": "model.safetensors", "sha256": "ab" * 32}]
    run = store.start_priority_run("p", model, "uncertainty")
    todo = store.pairs_to_score(run.id)
    n_cal = len(pairs) - len(todo)
    assert n_cal > 0  # calibration pairs are not scored
    half = todo[:10]
    assert store.record_scores(run.id, [(p.pair_id, 0.5, [0.3]) for p in half]) == 10
    # the process stops here; the same command again resumes the run
    again = store.start_priority_run("p", model, "uncertainty")
    assert again.id == run.id and again.scored == 10
    left = store.pairs_to_score(run.id)
    assert {p.pair_id for p in left} == {p.pair_id for p in todo[10:]}
    assert store.record_scores(run.id, [(p.pair_id, 0.9, [0.41]) for p in half[:2] + left]) == len(left)
    done = store.finish_priority_run(run.id)
    assert done.scored == len(todo) and done.ranked == len(pairs) and done.finished_at >= done.started_at
    scores = store.priority_scores(run.id)
    assert scores[half[0].pair_id] == (0.5, [0.3])  # a pair scored twice keeps its first score
    (listed,) = store.priority_runs("p")
    assert listed.models == model and listed.scored == len(todo)
    # another model: a new run, not the finished one
    other = store.start_priority_run("p", [{**model[0], "sha256": "cd" * 32}], "uncertainty")
    assert other.id != run.id and other.scored == 0
    with pytest.raises(ConfigError, match="finished"):
        store.record_scores(run.id, [])
    with pytest.raises(ConfigError, match="disagreement needs two"):
        store.start_priority_run("p", model, "disagreement")
    store.close()


def test_undo_on_a_ranked_queue_brings_back_the_pair_put_down_next(db_url, make_pairs):
    store = Store.open(db_url)
    store.create_project("p", overlap=1)
    pairs = make_pairs(20)
    store.import_pairs("p", pairs)
    store.add_user("lan")
    prio = {p.pair_id: float(i) for i, p in enumerate(pairs)}
    store.set_priorities("p", prio, random_share=0.0)
    a = store.claim("p", "lan")
    _judge(store, a, "lan")
    b = store.claim("p", "lan")  # held when lan undoes a
    assert store.undo_last("p", "lan") == "judgement"
    assert store.claim("p", "lan").pair.pair_id == a.pair.pair_id
    _judge(store, store.claim("p", "lan"), "lan")
    assert store.claim("p", "lan").pair.pair_id == b.pair.pair_id
    store.close()
