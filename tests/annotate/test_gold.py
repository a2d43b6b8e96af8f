"""Gold pairs on SQLite and PostgreSQL: the file and its one-line errors, importing, serving at
the project's rate (never twice, never through the ordinary walk), gold accuracy (side, and level
within one step), the qualification phase, the pause and lifting it, and the export leaving gold
out unless asked."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from prefkit.annotate.gold import GoldAnswer, GoldItem, check, read_gold
from prefkit.annotate.quality import QualityConfig, QualityPaused
from prefkit.annotate.store import Store
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.schema import Judgement, Pair, Strength
from prefkit.data.sources import Location


@pytest.fixture
def store(db_url, clock):
    s = Store.open(db_url, clock=clock)
    yield s
    s.close()


def _gold(pairs: list[Pair], side: str = "a", strength: Strength = Strength.BETTER, minimum: bool = False):
    return [
        GoldItem(p, GoldAnswer(side, strength, minimum), Location("gold.jsonl", i + 1)) for i, p in enumerate(pairs)
    ]


def _answer(store: Store, project: str, user: str, right: bool | None, gold: dict[str, str]) -> tuple[str, bool]:
    """Claim and judge one pair: on a gold pair the expected side at its level (`right`), the other
    side (not `right`), or unsure (None); an ordinary pair gets "A better". Returns (pair id, gold?)."""
    a = store.claim(project, user)
    assert a is not None
    pid = a.pair.pair_id
    if pid in gold and right is not None:
        preferred = gold[pid] if right else a.pair.other(gold[pid]).id
        j = Judgement(pid, user, preferred, Strength.BETTER, shown_order=a.shown_order)
    elif pid in gold:
        j = Judgement(pid, user, None, Strength.NEGLIGIBLY_BETTER, shown_order=a.shown_order)
    else:
        j = Judgement.from_choice(pid, user, -3, a.shown_order)
    store.submit(a.id, user, j)
    return pid, pid in gold


# ---------------------------------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------------------------------


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


PAIR = {"question": "2 + 2?", "a_text": "5", "b_text": "4"}
LABELLED = {"question": "Thủ đô?", "chosen": "Hà Nội", "rejected": "Huế", "strength": "better"}


def test_gold_file_formats_defaults_and_one_line_errors(tmp_path: Path) -> None:
    items = read_gold(
        _write(
            tmp_path / "g.jsonl",
            [
                {**PAIR, "gold": "B", "gold_min_strength": "slightly better"},
                {**PAIR, "question": "3?", "gold": "a", "gold_strength": 3},
            ],
        )
    )
    assert [(i.answer.side, i.answer.strength, i.answer.minimum) for i in items] == [
        ("b", Strength.SLIGHTLY_BETTER, True),
        ("a", Strength.SIGNIFICANTLY_BETTER, False),
    ]
    assert items[0].answer.preferred(items[0].pair) == items[0].pair.b.id
    # A labelled file: the chosen answer (a) is expected, at the row's own strength unless given.
    (lab,) = read_gold(_write(tmp_path / "l.jsonl", [LABELLED]))
    assert (lab.answer.side, lab.answer.strength, lab.pair.a.text) == ("a", Strength.BETTER, "Hà Nội")
    (lab,) = read_gold(_write(tmp_path / "l2.jsonl", [{**LABELLED, "gold_min_strength": "significantly"}]))
    assert (lab.answer.strength, lab.answer.minimum) == (Strength.SIGNIFICANTLY_BETTER, True)

    bad = {
        "no-side": ([{**PAIR, "gold_strength": "better"}], "line 1, field 'gold': missing field"),
        "bad-side": ([{**PAIR, "gold": "c", "gold_strength": "better"}], "line 1, field 'gold': must be a or b"),
        "no-level": ([{**PAIR, "gold": "a"}], "line 1, field 'gold_strength': missing field"),
        "bad-level": (
            [{**PAIR, "gold": "a", "gold_strength": "hugely"}],
            "line 1, field 'gold_strength': not a strength",
        ),
        "both": (
            [{**PAIR, "gold": "a", "gold_strength": 1, "gold_min_strength": 1}],
            "line 1, field 'gold_min_strength': give gold_strength or gold_min_strength, not both",
        ),
        "twice": ([{**PAIR, "gold": "a", "gold_strength": 1}] * 2, "line 2, field 'pair_id': pair pair-"),
        "empty-text": ([{**PAIR, "b_text": " ", "gold": "a", "gold_strength": 1}], "line 1, field 'b_text'"),
        "prompts": ([{"question": "only a question"}], "format 'prompts' has no pairs"),
    }
    for name, (rows, message) in bad.items():
        path = _write(tmp_path / f"{name}.jsonl", rows)
        with pytest.raises(DataError) as e:
            read_gold(path)
        assert str(e.value).startswith(f"{path}") and message in str(e.value) and "\n" not in str(e.value), name


def test_scoring_side_and_level_within_one_step() -> None:
    a, b = "ra", "rb"
    for got, ok in [
        ("significantly_better", True),
        ("better", True),
        ("slightly_better", True),
        ("negligibly_better", False),  # two steps below "better"
    ]:
        assert check(a, "better", False, a, got).level is ok, got
        assert check(a, "better", False, a, got).side
    assert check(a, "better", False, b, "better") == check(a, "better", False, None, "negligibly_better")
    assert not check(a, "better", False, b, "better").side and not check(a, "better", False, b, "better").passed
    # A minimum level: at or above it, nothing below.
    assert check(a, "better", True, a, "significantly_better").passed
    assert not check(a, "better", True, a, "slightly_better").level


# ---------------------------------------------------------------------------------------------
# Import and serving
# ---------------------------------------------------------------------------------------------


def test_import_gold_is_idempotent_updates_answers_and_refuses_an_ordinary_pair(store, make_pairs) -> None:
    pairs, gold = make_pairs(10), make_pairs(3, start=100)
    added, g = store.import_gold("p", _gold(gold), pairs=pairs, overlap=2)
    assert (added.added, g.added, g.updated, g.skipped) == (10, 3, 0, 0)
    _, g = store.import_gold("p", _gold(gold))
    assert (g.added, g.updated, g.skipped) == (0, 0, 3)
    _, g = store.import_gold("p", _gold(gold[:1], side="b"))
    assert (g.added, g.updated) == (0, 1)
    assert store.gold_decisions("p")[gold[0].pair_id] == (gold[0].b.id, "better", False)
    with pytest.raises(
        DataError, match=r"gold.jsonl, line 1, field 'pair_id': pair .* already in project 'p' as a pair"
    ):
        store.import_gold("p", _gold(pairs[:1]) + _gold(make_pairs(1, start=200)))
    assert len(store.gold_pair_ids("p")) == 3  # the refused import added nothing
    # Ordinary pairs imported again never turn a gold pair into one to label.
    assert store.import_pairs("p", gold).added == 0
    assert store.dashboard("p").summary["pairs"] == 10  # the dashboard counts pairs to label


def test_gold_is_served_at_the_rate_never_twice_and_looks_like_any_pair(store, make_pairs) -> None:
    pairs, gold = make_pairs(80), make_pairs(40, start=1000)
    store.import_gold("p", _gold(gold), pairs=pairs, overlap=1)
    expected = {g.pair_id: g.a.id for g in gold}
    store.set_quality("p", gold_rate=0.25)
    store.add_user("lan")
    served, orders = [], Counter()
    while (a := store.claim("p", "lan")) is not None:
        is_gold = a.pair.pair_id in expected
        served.append((a.pair.pair_id, is_gold))
        assert not a.is_calibration and type(a).__name__ == "Assignment"
        if is_gold:
            orders[a.shown_order == (a.pair.a.id, a.pair.b.id)] += 1
        store.submit(a.id, "lan", Judgement.from_choice(a.pair.pair_id, "lan", 2, a.shown_order))
    ids = [pid for pid, _ in served]
    assert len(ids) == len(set(ids))  # never a pair twice
    first_80 = [g for _, g in served[:80]]
    assert 0.15 <= sum(first_80) / 80 <= 0.35, sum(first_80)  # the rate, give or take a binomial spread
    assert sum(1 for _, g in served if not g) == 80  # every ordinary pair, once
    assert set(orders) == {True, False}  # gold pairs are shown in both orders, like the rest
    # With rate 0 (and no qualification) nobody is given a gold pair.
    store.set_quality("p", gold_rate=0.0)
    store.add_user("minh")
    while (a := store.claim("p", "minh")) is not None:
        assert a.pair.pair_id not in expected
        store.skip(a.id, "minh")


def test_gold_accuracy_counts_first_answers(store, make_pairs) -> None:
    gold = make_pairs(4, start=500)
    store.import_gold("p", _gold(gold[:2]) + _gold(gold[2:], side="b", strength=Strength.SLIGHTLY_BETTER, minimum=True))
    store.set_quality("p", gold_rate=1.0)
    store.add_user("lan")
    exp = {g.pair_id: g.a.id for g in gold[:2]} | {g.pair_id: g.b.id for g in gold[2:]}
    answers = {  # what lan says on each: (side right?, strength) -> expected (side, level) verdict
        gold[0].pair_id: (True, Strength.SLIGHTLY_BETTER, (True, True)),  # one step from "better"
        gold[1].pair_id: (True, Strength.NEGLIGIBLY_BETTER, (True, False)),  # two steps
        gold[2].pair_id: (True, Strength.NEGLIGIBLY_BETTER, (True, False)),  # below the minimum
        gold[3].pair_id: (False, Strength.SIGNIFICANTLY_BETTER, (False, False)),
    }
    for _ in gold:
        a = store.claim("p", "lan")
        right, strength, _verdict = answers[a.pair.pair_id]
        preferred = exp[a.pair.pair_id] if right else a.pair.other(exp[a.pair.pair_id]).id
        store.submit(a.id, "lan", Judgement(a.pair.pair_id, "lan", preferred, strength, shown_order=a.shown_order))
    assert store.claim("p", "lan") is None
    got = {g.pair_id: (g.side, g.level) for g in store.gold_answers("p")}
    assert got == {pid: v[2] for pid, v in answers.items()}
    # Changing a judgement afterwards does not change the answer that counts.
    store.change_judgement("lan", gold[3].pair_id, Judgement(gold[3].pair_id, "lan", exp[gold[3].pair_id], "better"))
    assert {g.pair_id: (g.side, g.level) for g in store.gold_answers("p")}[gold[3].pair_id] == (False, False)
    view = store.annotator_view("p").set_index("annotator")
    assert (view.loc["lan", "gold"], view.loc["lan", "gold_side"], view.loc["lan", "gold_level"]) == (4, 0.75, 0.25)


# ---------------------------------------------------------------------------------------------
# Qualification, pause, lift
# ---------------------------------------------------------------------------------------------


def test_qualification_then_real_pairs_or_a_pause_an_admin_lifts(store, make_pairs, clock) -> None:
    gold = make_pairs(6, start=300)
    store.import_gold("p", _gold(gold), pairs=make_pairs(20), overlap=2)
    exp = {g.pair_id: g.a.id for g in gold}
    store.set_quality("p", qualify=3, qualify_accuracy=2 / 3, gold_rate=0.0)
    for u in ("lan", "minh", "tuan"):
        store.add_user(u)
    # lan passes 2 of 3: the first three pairs are gold, then real pairs come.
    first = [_answer(store, "p", "lan", ok, exp)[1] for ok in (True, False, True)]
    assert first == [True, True, True]
    assert store.quality_status("p", "lan").state == "ok"
    assert [_answer(store, "p", "lan", True, exp)[1] for _ in range(5)] == [False] * 5
    # minh passes 1 of 3: paused, told why, and nothing is claimed.
    for ok in (False, True, None):
        _answer(store, "p", "minh", ok, exp)
    with pytest.raises(QualityPaused, match="not passed this project's qualification") as e:
        store.claim("p", "minh")
    assert isinstance(e.value, ConfigError) and e.value.status.reason == "qualification"
    # Undoing the last gold answer does not reopen the qualification: the first answer counts.
    assert store.undo_last("p", "minh") == "judgement"
    a = store.claim("p", "minh")  # the pair undone is held again and shown
    store.submit(
        a.id, "minh", Judgement(a.pair.pair_id, "minh", exp[a.pair.pair_id], "better", shown_order=a.shown_order)
    )
    with pytest.raises(QualityPaused):
        store.claim("p", "minh")
    status = store.lift_pause("p", "minh", by="admin", note="talked it through")
    clock.advance(1)
    assert status.state == "ok"
    assert _answer(store, "p", "minh", True, exp)[1] is False  # a real pair now
    # tuan skips every gold pair offered: with none left to qualify on, the project says so.
    for _ in range(6):
        a = store.claim("p", "tuan")
        assert a.pair.pair_id in exp
        store.skip(a.id, "tuan")
    with pytest.raises(QualityPaused, match="no check pairs left") as e:
        store.claim("p", "tuan")
    assert e.value.status.reason == "no-gold"
    # An undone skip of a gold pair gives it back (a gold pair never counts as "taken by others").
    assert store.undo_last("p", "tuan") == "skip"
    assert store.claim("p", "tuan").pair.pair_id in exp


def test_pause_when_gold_accuracy_drops_and_the_window_restarts_after_a_lift(store, make_pairs, clock) -> None:
    gold = make_pairs(12, start=700)
    store.import_gold("p", _gold(gold), pairs=make_pairs(30), overlap=1)
    exp = {g.pair_id: g.a.id for g in gold}
    store.set_quality("p", gold_rate=1.0, pause_below=0.5, pause_window=4)
    store.add_user("lan")
    for ok in (True, False, True):  # three answers: too few to judge
        _answer(store, "p", "lan", ok, exp)
    assert store.quality_status("p", "lan").state == "ok"
    _answer(store, "p", "lan", False, exp)  # 2 of the last 4: not below one half
    assert store.quality_status("p", "lan").state == "ok"
    _answer(store, "p", "lan", False, exp)  # 1 of the last 4
    with pytest.raises(QualityPaused, match="paused for you") as e:
        store.claim("p", "lan")
    assert (e.value.status.gold_answered, e.value.status.gold_passed) == (5, 2)
    store.lift_pause("p", "lan", by="admin")
    clock.advance(1)
    for ok in (False, False, False):  # after the lift: only new answers count, and four are needed
        _answer(store, "p", "lan", ok, exp)
    assert store.quality_status("p", "lan").state == "ok"
    _answer(store, "p", "lan", False, exp)
    assert store.quality_status("p", "lan").label == "paused (accuracy)"
    statuses = store.quality_statuses("p")
    assert statuses["lan"].state == "paused"


def test_settings_are_checked_and_kept(store, make_pairs) -> None:
    store.create_project("p")
    assert store.quality_settings("p") == QualityConfig()
    store.set_quality("p", qualify=2)
    assert store.set_quality("p", pause_below=0.6) == QualityConfig(qualify=2, pause_below=0.6)
    for bad in ({"gold_rate": 1.5}, {"qualify": -1}, {"pause_window": 0}, {"colour": "red"}):
        with pytest.raises(ConfigError):
            store.set_quality("p", **bad)
    assert store.quality_settings("p") == QualityConfig(qualify=2, pause_below=0.6)


# ---------------------------------------------------------------------------------------------
# Export and dashboard
# ---------------------------------------------------------------------------------------------


def test_gold_never_enters_the_export_unless_asked(store, make_pairs, tmp_path) -> None:
    from datasets import load_from_disk

    pairs, gold = make_pairs(8), make_pairs(3, start=900)
    store.import_gold("p", _gold(gold, side="b", strength=Strength.SIGNIFICANTLY_BETTER), pairs=pairs, overlap=1)
    store.set_quality("p", gold_rate=0.5)
    store.add_user("lan")
    exp = {g.pair_id: g.b.id for g in gold}
    while store.claim("p", "lan") is not None:
        _answer(store, "p", "lan", True, exp)
    judged = {j.pair_id for j in store.judgements("p")}
    assert judged & set(exp) and len(judged - set(exp)) == 8  # some gold was judged

    report = store.export("p", tmp_path / "out", test_size=0.25)
    ds = load_from_disk(str(tmp_path / "out"))
    ids = {i for split in ds.values() for i in split["id"]}
    assert ids == {p.pair_id for p in pairs} and report.pairs == 8
    assert set(ds["train"]["decided_by"]) == {"mean"}
    card = (tmp_path / "out" / "README.md").read_text()
    assert "3 gold pairs (pairs with a known answer, served to check annotators) left out" in card

    store.export("p", tmp_path / "with", test_size=0.25, include_gold=True)
    rows = [r for split in load_from_disk(str(tmp_path / "with")).values() for r in split]
    by_id = {r["id"]: r for r in rows}
    assert set(exp) <= set(by_id)
    for g in gold:  # unjudged gold pairs too: the lead's answer is a label
        r = by_id[g.pair_id]
        assert (r["chosen"], r["strength"], r["decided_by"]) == (g.b.text, "significantly_better", "gold")
    assert "decided by their expected answer" in (tmp_path / "with" / "README.md").read_text()

    n = store.export_judgements("p", tmp_path / "j.jsonl")
    assert n == 8
    assert store.export_judgements("p", tmp_path / "jg.jsonl", include_gold=True) == len(judged)
    assert store.completeness("p")["complete_pairs"] == 8  # gold pairs are not "complete" pairs to label
    d = store.dashboard("p")
    assert (d.summary["pairs"], d.summary["judgements"]) == (8, 8)
    assert store.project_summaries()["p"]["judgements"] == 8


def test_a_disabled_user_is_never_given_a_gold_pair(store, make_pairs) -> None:
    store.import_gold("p", _gold(make_pairs(3, start=50)), pairs=make_pairs(3))
    store.set_quality("p", qualify=2)
    store.add_user("lan")
    store.disable_user("lan")
    with pytest.raises(ConfigError, match="disabled"):
        store.claim("p", "lan")
