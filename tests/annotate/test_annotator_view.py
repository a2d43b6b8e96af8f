"""The lead's per-annotator view (`prefkit.annotate.annotator_view`), its figures checked against
values worked out by hand: from rows given directly, and from a store (SQLite and PostgreSQL)
where two annotators judge at set times."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from prefkit.annotate.annotator_view import COLUMNS, annotator_view, consensus_counts
from prefkit.annotate.gold import GoldAnswer, GoldItem
from prefkit.annotate.store import Store
from prefkit.data.schema import Judgement, Strength
from prefkit.data.sources import Location

T = datetime(2026, 3, 2, tzinfo=UTC)


def _row(annotator: str, pair: str, preferred: str | None, left: str, at: str, seconds: float | None, gold=False):
    h, m = map(int, at.split(":"))
    return {
        "annotator": annotator,
        "pair_id": pair,
        "preferred": preferred,
        "shown_left": left,
        "seconds": seconds,
        "created_at": T + timedelta(hours=h, minutes=m),
        "gold": gold,
    }


def test_figures_from_rows_match_the_hand_computed_ones() -> None:
    rows = [
        # lan: 08:05, 08:40, 10:15, 10:20 -> two clock hours; left, left, right, unsure
        _row("lan", "p1", "a", "a", "08:05", 10),
        _row("lan", "p2", "a", "a", "08:40", 20),
        _row("lan", "p3", "b", "a", "10:15", 30),
        _row("lan", "p4", None, "a", "10:20", None),
        _row("lan", "g1", "a", "b", "10:30", 5, gold=True),  # a gold pair: counted, not in the consensus
        _row("minh", "p1", "a", "b", "09:00", 4),
        _row("minh", "p2", "a", "b", "09:10", 6),
        _row("minh", "p3", "a", "b", "09:20", 8),
        _row("minh", "p4", "b", "b", "09:30", 10),
        _row("minh", "g1", "b", "b", "09:40", 12, gold=True),
        _row("tuan", "p1", "b", "a", "12:00", 7),
        _row("tuan", "p3", "a", "a", "12:30", 9),
    ]
    # Consensus by hand (the others' majority side, ties and no-side left out):
    # p1: lan a vs {minh a, tuan b}: tie, skipped; minh a vs {a, b}: skipped; tuan b vs {a, a}: disagrees.
    # p2: lan a vs {a}: agrees; minh a vs {a}: agrees.
    # p3: lan b vs {a, a}: disagrees; minh a vs {b, a}: skipped; tuan a vs {b, a}: skipped.
    # p4: lan unsure vs {b}: compared, disagrees; minh b vs {} (lan unsure): skipped.
    assert consensus_counts(rows) == {"lan": (1, 3), "minh": (1, 1), "tuan": (0, 1)}
    gold = [
        {"annotator": "lan", "side": True, "level": True},
        {"annotator": "lan", "side": True, "level": False},
        {"annotator": "lan", "side": False, "level": False},
        {"annotator": "minh", "side": False, "level": False},
    ]
    view = annotator_view(rows, gold, {"lan": "ok", "minh": "ok", "tuan": "ok", "zed": "paused (accuracy)"})
    assert tuple(view.columns) == COLUMNS
    assert list(view["annotator"]) == ["lan", "minh", "tuan", "zed"]  # most judgements first
    v = view.set_index("annotator")
    # lan: 5 judgements in 3 clock hours (08, 10 ... and 10:30 is hour 10 too): 08 and 10 -> 2.
    assert (v.loc["lan", "judgements"], v.loc["lan", "active_hours"], v.loc["lan", "per_hour"]) == (5, 2, 2.5)
    assert v.loc["lan", "median_seconds"] == 15.0  # 10, 20, 30, 5 -> (10 + 20) / 2
    assert v.loc["lan", "left_share"] == pytest.approx(2 / 4)  # decided: p1 left, p2 left, p3 right, g1 right
    assert v.loc["lan", "unsure_share"] == pytest.approx(1 / 5)
    assert (v.loc["lan", "consensus"], v.loc["lan", "consensus_pairs"]) == (pytest.approx(1 / 3), 3)
    assert (v.loc["lan", "gold"], v.loc["lan", "gold_side"], v.loc["lan", "gold_level"]) == (
        3,
        pytest.approx(2 / 3),
        pytest.approx(1 / 3),
    )
    # minh: five judgements within 09:00-09:40 (one hour); left only on p4 and g1 (b shown left).
    assert (v.loc["minh", "active_hours"], v.loc["minh", "per_hour"], v.loc["minh", "median_seconds"]) == (1, 5.0, 8.0)
    assert v.loc["minh", "left_share"] == pytest.approx(2 / 5) and v.loc["minh", "unsure_share"] == 0.0
    assert (v.loc["minh", "gold"], v.loc["minh", "gold_side"]) == (1, 0.0)
    assert (v.loc["tuan", "consensus"], v.loc["tuan", "gold"]) == (0.0, 0) and math.isnan(v.loc["tuan", "gold_side"])
    # zed has no judgement but is paused: listed, with nothing to count.
    assert v.loc["zed", "status"] == "paused (accuracy)" and v.loc["zed", "judgements"] == 0
    assert math.isnan(v.loc["zed", "per_hour"]) and math.isnan(v.loc["zed", "left_share"])


def test_figures_from_a_store_match_the_hand_computed_ones(db_url, clock, make_pairs) -> None:
    store = Store.open(db_url, clock=clock)
    gold = make_pairs(1, start=77)
    store.import_gold(
        "p",
        [GoldItem(gold[0], GoldAnswer("a", Strength.BETTER), Location("g.jsonl", 1))],
        pairs=make_pairs(3),
        overlap=2,
    )
    store.set_quality("p", gold_rate=0.0)
    store.add_user("lan")
    store.add_user("minh")

    def judge(user: str, at: str, seconds: float, pick, level=Strength.SLIGHTLY_BETTER) -> tuple[object, Judgement]:
        h, m = map(int, at.split(":"))
        clock.now = datetime(2026, 3, 2, h, m, tzinfo=UTC)
        a = store.claim("p", user)
        preferred = pick(a)
        strength = Strength.NEGLIGIBLY_BETTER if preferred is None else level
        j = Judgement(a.pair.pair_id, user, preferred, strength, seconds=seconds)
        store.submit(a.id, user, j)
        return a, j

    # lan: the left response at 09:00 (12 s), the right at 09:30 (30 s), unsure at 11:10 (18 s).
    a0, _ = judge("lan", "09:00", 12, lambda a: a.shown_order[0])
    a1, _ = judge("lan", "09:30", 30, lambda a: a.shown_order[1])
    a2, _ = judge("lan", "11:10", 18, lambda a: None)
    # minh: a gold pair at 11:20 (the right side, two levels off: side right, level wrong; 40 s),
    # then lan's three pairs: agreeing on the first (8 s), not on the second (10 s), a side on the third (20 s).
    store.set_quality("p", gold_rate=1.0)
    g, _ = judge("minh", "11:20", 40, lambda a: a.pair.a.id, Strength.NEGLIGIBLY_BETTER)  # expected: better
    assert g.pair.pair_id == gold[0].pair_id
    store.set_quality("p", gold_rate=0.0)
    lan_choice = {a0.pair.pair_id: a0.shown_order[0], a1.pair.pair_id: a1.shown_order[1]}
    b0, _ = judge("minh", "11:25", 8, lambda a: lan_choice[a.pair.pair_id])
    b1, _ = judge("minh", "11:30", 10, lambda a: a.pair.other(lan_choice[a.pair.pair_id]).id)
    b2, _ = judge("minh", "11:35", 20, lambda a: a.pair.a.id)
    assert [b.pair.pair_id for b in (b0, b1, b2)] == [a.pair.pair_id for a in (a0, a1, a2)]

    v = store.annotator_view("p").set_index("annotator")
    lan, minh = v.loc["lan"], v.loc["minh"]
    assert (lan["judgements"], lan["active_hours"], lan["per_hour"], lan["median_seconds"]) == (3, 2, 1.5, 18.0)
    assert (lan["left_share"], lan["unsure_share"]) == (0.5, pytest.approx(1 / 3))
    # lan: agrees on the first, not the second; unsure on the third against minh's side.
    assert (lan["consensus"], lan["consensus_pairs"], lan["gold"]) == (pytest.approx(1 / 3), 3, 0)
    minh_left = sum(p == a.shown_order[0] for p, a in ((g.pair.a.id, g), (lan_choice[b0.pair.pair_id], b0)))
    minh_left += b1.pair.other(lan_choice[b1.pair.pair_id]).id == b1.shown_order[0]
    minh_left += b2.pair.a.id == b2.shown_order[0]
    assert (minh["judgements"], minh["active_hours"], minh["per_hour"], minh["median_seconds"]) == (4, 1, 4.0, 15.0)
    assert (minh["left_share"], minh["unsure_share"]) == (pytest.approx(minh_left / 4), 0.0)
    # minh: agrees on the first, not the second; the third is left out (lan has no side there).
    assert (minh["consensus"], minh["consensus_pairs"]) == (0.5, 2)
    assert (minh["gold"], minh["gold_side"], minh["gold_level"]) == (1, 1.0, 0.0)
    assert set(v["status"]) == {"ok"}
    store.close()
