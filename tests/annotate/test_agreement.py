"""Agreement statistics against figures computed by hand."""

from __future__ import annotations

import pytest

from prefkit.annotate.agreement import agreement, cohen_kappa

# item -> annotator -> 7-point score (negative prefers a, 0 tie, positive prefers b)
EXAMPLE = [
    ("i1", "A", -2),
    ("i1", "B", -1),
    ("i1", "C", 0),
    ("i2", "A", 3),
    ("i2", "B", 2),
    ("i3", "A", -1),
    ("i3", "B", 1),
    ("i4", "A", 0),
    ("i4", "C", 0),
    ("i5", "B", 2),  # judged once: not an overlapping item
]


def test_raw_agreement_with_and_without_ties():
    r = agreement(EXAMPLE)
    assert r.items == 4
    # with ties: i1 AB✓ AC✗ BC✗, i2 AB✓, i3 AB✗, i4 AC✓ → 3 of 6
    assert (r.comparisons, r.raw_with_ties) == (6, 0.5)
    # without ties (drop comparisons where either said tie): i1 AB✓, i2 AB✓, i3 AB✗ → 2 of 3
    assert r.comparisons_without_ties == 3
    assert r.raw_without_ties == pytest.approx(2 / 3)


def test_cohen_kappa_per_annotator_pair_and_weighted_mean():
    r = agreement(EXAMPLE)
    kappas = {p.annotators: (p.items, p.kappa) for p in r.per_pair}
    # A,B on i1..i3: A = [a, b, a], B = [a, b, b]; po = 2/3, pe = 2/3·1/3 + 1/3·2/3 = 4/9 → 0.4
    assert kappas[("A", "B")][0] == 3 and kappas[("A", "B")][1] == pytest.approx(0.4)
    # A,C on i1,i4: A = [a, tie], C = [tie, tie]; po = 1/2, pe = 1/2 → 0
    assert kappas[("A", "C")] == (2, pytest.approx(0.0))
    # B,C on i1: B = [a], C = [tie]; po = 0, pe = 0 → 0
    assert kappas[("B", "C")] == (1, pytest.approx(0.0))
    assert r.cohen_kappa == pytest.approx((0.4 * 3 + 0 * 2 + 0 * 1) / 6)


def test_cohen_kappa_textbook_example():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 → po = 0.7, pe = 0.5, κ = 0.4
    x = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    y = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(x, y) == pytest.approx(0.4)
    assert cohen_kappa([1, 1], [1, 1]) is None  # chance agreement is 1: undefined


def test_krippendorff_alpha_on_the_seven_point_scale():
    # u1 = (0, 2), u2 = (1, 1). Interval: Do = (4 + 4) / 4 = 2; De = 16 / (4·3) = 4/3 → α = -0.5.
    # Ordinal (counts n0=1, n1=2, n2=1): δ(0,2) = (4 - 1)² = 9, δ(0,1) = δ(1,2) = 1.5² = 2.25;
    # Do = 18 / 4 = 4.5; De = (2·9 + 8·2.25) / 12 = 3 → α = -0.5.
    r = agreement([("u1", "A", 0), ("u1", "B", 2), ("u2", "A", 1), ("u2", "B", 1)])
    assert r.alpha_interval == pytest.approx(-0.5)
    assert r.alpha_ordinal == pytest.approx(-0.5)
    perfect = agreement(
        [("u1", "A", -3), ("u1", "B", -3), ("u2", "A", 2), ("u2", "B", 2), ("u3", "B", 0), ("u3", "C", 0)]
    )
    assert perfect.alpha_interval == pytest.approx(1.0) and perfect.alpha_ordinal == pytest.approx(1.0)
    assert perfect.raw_with_ties == 1.0 and perfect.cohen_kappa == pytest.approx(1.0)


def test_ordinal_and_interval_alpha_differ_where_the_scale_is_uneven():
    # u1 = (0, 1), u2 = (1, 3); values 0, 1, 1, 3 (n0=1, n1=2, n3=1).
    # Interval: Do = (2·1 + 2·4) / 4 = 2.5; De = (4·1 + 2·9 + 4·4) / 12 = 38/12 → α = 4/19.
    # Ordinal: δ(0,1) = (3 - 1.5)² = 2.25, δ(1,3) = (3 - 1.5)² = 2.25, δ(0,3) = (4 - 1)² = 9;
    # Do = (2·2.25 + 2·2.25) / 4 = 2.25; De = (4·2.25 + 2·9 + 4·2.25) / 12 = 3 → α = 0.25.
    r = agreement([("u1", "A", 0), ("u1", "B", 1), ("u2", "A", 1), ("u2", "B", 3)])
    assert r.alpha_interval == pytest.approx(4 / 19)
    assert r.alpha_ordinal == pytest.approx(0.25)


def test_degenerate_inputs():
    empty = agreement([("i1", "A", 1), ("i2", "B", -1)])
    assert (empty.items, empty.comparisons) == (0, 0)
    assert empty.raw_with_ties is None and empty.cohen_kappa is None and empty.alpha_interval is None
    ties_only = agreement([("i1", "A", 0), ("i1", "B", 0)])
    assert ties_only.raw_with_ties == 1.0 and ties_only.raw_without_ties is None
    assert ties_only.alpha_interval is None  # no variation: alpha undefined
    with pytest.raises(ValueError, match="judged item 'i1' twice"):
        agreement([("i1", "A", 1), ("i1", "A", 2)])
    with pytest.raises(ValueError, match=r"score must be -3\.\.3"):
        agreement([("i1", "A", 4)])
