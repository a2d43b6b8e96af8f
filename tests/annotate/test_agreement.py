"""Agreement statistics on the nine-choice scale against figures computed by hand; the dashboard's
figures through the real store (SQLite and PostgreSQL) and on the page (AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from prefkit.annotate.agreement import agreement, cohen_kappa
from prefkit.annotate.store import Store
from prefkit.data.schema import Judgement, Pair, Prompt, Response

# item -> annotator -> choice in generation order: -4..-1 prefer a (significantly … negligibly
# better), 0 unsure, 1..4 prefer b. "Negligibly better" (±1) is a side.
EXAMPLE = [
    ("i1", "A", -3),
    ("i1", "B", -1),  # A negligibly better: still a win for a
    ("i1", "C", 0),
    ("i2", "A", 4),
    ("i2", "B", 3),
    ("i3", "A", -1),
    ("i3", "B", 1),  # negligibly, but on opposite sides: they disagree
    ("i4", "A", 0),
    ("i4", "C", 0),
    ("i5", "B", 2),  # judged once: not an overlapping item
]

# The two-annotator check of issue 23: 15 pairs, (annotator X, annotator Y) choices.
# The old dashboard read the 7-point score, where "negligibly better" (±1 here) counts as a tie.
TWO = (
    [(-4, -3)] * 3  # both a, strongly
    + [(3, 2)]  # both b, strongly
    + [(1, 4)] * 3  # X: b negligibly, Y: b significantly
    + [(-1, 1)] * 2  # negligibly, opposite sides
    + [(1, -1)] * 6  # negligibly, opposite sides
)


def _two() -> list[tuple[str, str, int]]:
    return [(f"p{i}", who, c) for i, pair in enumerate(TWO) for who, c in zip("XY", pair, strict=True)]


def test_kappa_keeps_the_side_of_negligibly_better():
    # Side kept: X = a 5, b 10; Y = a 9, b 6. Same side on 3 + 1 + 3 = 7 of 15: po = 7/15;
    # pe = (5·9 + 10·6) / 225 = 105/225 = 7/15 → κ = 0.
    r = agreement(_two())
    assert r.cohen_kappa == pytest.approx(0.0, abs=1e-12)
    assert f"{r.cohen_kappa:.3f}" in ("0.000", "-0.000")
    assert (r.items, r.comparisons, r.comparisons_decided) == (15, 15, 15)
    assert r.raw_side == pytest.approx(7 / 15) and r.raw_side_decided == pytest.approx(7 / 15)
    assert r.raw_choice == 0.0  # no pair has the same side and level
    # What the old code computed (negligibly better as a tie): X = a 3, tie 11, b 1;
    # Y = a 3, tie 8, b 4; same on 3 + 1 + 8 = 12: po = 12/15, pe = (9 + 88 + 4)/225 = 101/225
    # → κ = 79/124 = 0.637. Kept here to show the two readings differ on this very data.
    old = {c: (c > 1) - (c < -1) for c in range(-4, 5)}
    assert cohen_kappa([old[x] for x, _ in TWO], [old[y] for _, y in TWO]) == pytest.approx(79 / 124)
    assert f"{79 / 124:.3f}" == "0.637"


def test_raw_agreement_on_the_side_and_on_the_choice():
    r = agreement(EXAMPLE)
    assert r.items == 4
    # side, unsure a third answer: i1 AB✓ (a, a) AC✗ BC✗, i2 AB✓, i3 AB✗ (a vs b), i4 AC✓ → 3 of 6
    assert (r.comparisons, r.raw_side) == (6, 0.5)
    # both decided (comparisons with an unsure left out): i1 AB✓, i2 AB✓, i3 AB✗ → 2 of 3
    assert r.comparisons_decided == 3
    assert r.raw_side_decided == pytest.approx(2 / 3)
    # same side and level: only i4 (unsure, unsure) → 1 of 6
    assert r.raw_choice == pytest.approx(1 / 6)


def test_cohen_kappa_per_annotator_pair_and_weighted_mean():
    r = agreement(EXAMPLE)
    kappas = {p.annotators: (p.items, p.kappa) for p in r.per_pair}
    # A,B on i1..i3: A = [a, b, a], B = [a, b, b]; po = 2/3, pe = 2/3·1/3 + 1/3·2/3 = 4/9 → 0.4
    assert kappas[("A", "B")][0] == 3 and kappas[("A", "B")][1] == pytest.approx(0.4)
    # A,C on i1,i4: A = [a, unsure], C = [unsure, unsure]; po = 1/2, pe = 1/2 → 0
    assert kappas[("A", "C")] == (2, pytest.approx(0.0))
    # B,C on i1: B = [a], C = [unsure]; po = 0, pe = 0 → 0
    assert kappas[("B", "C")] == (1, pytest.approx(0.0))
    assert r.cohen_kappa == pytest.approx((0.4 * 3 + 0 * 2 + 0 * 1) / 6)


def test_cohen_kappa_textbook_example():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 → po = 0.7, pe = 0.5, κ = 0.4
    x = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    y = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(x, y) == pytest.approx(0.4)
    assert cohen_kappa([1, 1], [1, 1]) is None  # chance agreement is 1: undefined


def test_krippendorff_alpha_on_the_nine_choices_unsure_in_the_middle():
    # u1 = (A negligibly, B negligibly) = (-1, 1), u2 = (unsure, unsure) = (0, 0).
    # Interval: Do = (4 + 4) / 4 = 2; De = (2·4 + 4·1 + 4·1) / (4·3) = 4/3 → α = -0.5.
    # Ordinal (counts n-1=1, n0=2, n1=1): δ(-1,1) = (4 - 1)² = 9 (the two unsure lie between),
    # δ(-1,0) = δ(0,1) = 1.5² = 2.25; Do = 18 / 4 = 4.5; De = (2·9 + 8·2.25) / 12 = 3 → α = -0.5.
    r = agreement([("u1", "A", -1), ("u1", "B", 1), ("u2", "A", 0), ("u2", "B", 0)])
    assert r.alpha_interval == pytest.approx(-0.5)
    assert r.alpha_ordinal == pytest.approx(-0.5)
    perfect = agreement(
        [("u1", "A", -4), ("u1", "B", -4), ("u2", "A", 1), ("u2", "B", 1), ("u3", "B", 0), ("u3", "C", 0)]
    )
    assert perfect.alpha_interval == pytest.approx(1.0) and perfect.alpha_ordinal == pytest.approx(1.0)
    assert perfect.raw_side == 1.0 and perfect.raw_choice == 1.0 and perfect.cohen_kappa == pytest.approx(1.0)


def test_ordinal_and_interval_alpha_differ_where_the_scale_is_uneven():
    # u1 = (1, 2), u2 = (2, 4): B negligibly … B significantly; values 1, 2, 2, 4 (n1=1, n2=2, n4=1).
    # Interval: Do = (2·1 + 2·4) / 4 = 2.5; De = (4·1 + 2·9 + 4·4) / 12 = 38/12 → α = 4/19.
    # Ordinal: δ(1,2) = (3 - 1.5)² = 2.25, δ(2,4) = (3 - 1.5)² = 2.25 (3 unused), δ(1,4) = (4 - 1)² = 9;
    # Do = (2·2.25 + 2·2.25) / 4 = 2.25; De = (4·2.25 + 2·9 + 4·2.25) / 12 = 3 → α = 0.25.
    r = agreement([("u1", "A", 1), ("u1", "B", 2), ("u2", "A", 2), ("u2", "B", 4)])
    assert r.alpha_interval == pytest.approx(4 / 19)
    assert r.alpha_ordinal == pytest.approx(0.25)


def test_degenerate_inputs():
    empty = agreement([("i1", "A", 1), ("i2", "B", -1)])
    assert (empty.items, empty.comparisons) == (0, 0)
    assert empty.raw_side is None and empty.cohen_kappa is None and empty.alpha_interval is None
    unsure_only = agreement([("i1", "A", 0), ("i1", "B", 0)])
    assert unsure_only.raw_side == 1.0 and unsure_only.raw_side_decided is None
    assert unsure_only.alpha_interval is None  # no variation: alpha undefined
    with pytest.raises(ValueError, match="judged item 'i1' twice"):
        agreement([("i1", "A", 1), ("i1", "A", 2)])
    with pytest.raises(ValueError, match=r"choice must be -4\.\.4"):
        agreement([("i1", "A", 5)])


APP = Path(__file__).resolve().parents[2] / "annotate" / "app.py"


def _pairs(n: int) -> list[Pair]:
    return [Pair(Prompt(f"Câu {i}?"), Response(f"A {i}"), Response(f"B {i}")) for i in range(n)]


def judge_two(store: Store, project: str = "p") -> None:
    """Annotators x and y judge the 15 pairs of `TWO` (choices in generation order), each through
    the page's own route: claim, the choice as shown (left/right), submit."""
    store.create_project(project, overlap=2)
    pairs = _pairs(len(TWO))
    store.import_pairs(project, pairs)
    wanted = {p.pair_id: choices for p, choices in zip(pairs, TWO, strict=True)}
    for who, k in (("x", 0), ("y", 1)):
        store.add_user(who)
        while (a := store.claim(project, who)) is not None:
            choice = wanted[a.pair.pair_id][k]  # negative prefers a (generation order)
            shown = choice if a.shown_order[0] == a.pair.a.id else -choice  # negative: the left one
            store.submit(a.id, who, Judgement.from_choice(a.pair.pair_id, who, shown, a.shown_order))


def test_store_dashboard_agreement_keeps_the_side_of_negligibly_better(db_url: str) -> None:
    with Store.open(db_url) as store:
        judge_two(store)
        r = store.dashboard("p").agreement
    assert (r.items, r.comparisons) == (15, 15)
    assert r.cohen_kappa == pytest.approx(0.0, abs=1e-12)  # the 7-point reading said 0.637
    assert r.raw_side == pytest.approx(7 / 15) and r.raw_choice == 0.0
    # Interval alpha on the nine choices, by hand: within pairs the squared differences are
    # 3·1 + 1 + 3·9 + 2·4 + 6·4 = 63, Do = 2·63 / 30 = 4.2; over all 30 values Σv = -1, Σv² = 155,
    # Σ_{i≠j} (vi - vj)² = 2·30·155 - 2·1 = 9298, De = 9298 / (30·29) → α = 1 - 4.2·870 / 9298.
    # The levels agree far more than the sides: the nine-choice alpha is well above the side's kappa.
    assert r.alpha_interval == pytest.approx(1 - 4.2 * 870 / 9298)
    assert r.alpha_ordinal is not None and r.alpha_ordinal > 0.3


def test_dashboard_page_shows_the_nine_choice_figures(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store.open(sqlite_url) as store:
        judge_two(store)
        token = store.add_user("lead", admin=True)
    monkeypatch.setenv("PREFKIT_DB", sqlite_url)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="sign_in_token").input(token)
    at.button[0].click().run()
    at.switch_page("ui/dashboard.py").run()
    assert not at.exception, at.exception
    (table,) = [d.value for d in at.dataframe if "measure" in getattr(d.value, "columns", [])]
    figures = dict(zip(table["measure"], table["value"], strict=True))
    assert figures["Cohen's kappa (side: A / unsure / B)"] == "0.000"
    assert figures["same side (unsure a third answer)"] == "0.467"
    assert figures["same choice (side and level)"] == "0.000"
    assert figures["pairs with ≥ 2 judgements"] == "15"
    page_text = " ".join(str(e.value) for e in (*at.markdown, *at.caption)) + " ".join(figures)
    assert "7-point" not in page_text
    assert "Negligibly better* is a side" in page_text and "Unsure" in page_text
