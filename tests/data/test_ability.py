"""The `ability` aggregation rule (Dawid and Skene, 1979) and decisions made outside the rule.

On simulated annotators whose truth is known (`dev/annotator_sim.py`: two good, one careless,
one always choosing the left response, one adversarial) the ability rule must recover the true
side of more pairs than the majority rule (and the mean rule), at overlap 2 and 3 and on several
seeds, and its estimated reliabilities must rank the annotators by kind. `bench/ability_sim.py`
prints the same figures."""

from __future__ import annotations

import pytest

from dev.annotator_sim import ranks_right, recovery, right_rows, simulate
from prefkit.core.errors import DataError
from prefkit.data.aggregate import Decision, aggregate, dawid_skene
from prefkit.data.schema import Judgement, Pair, Prompt, Response, Strength


def _pair(i: int) -> Pair:
    return Pair(Prompt(f"Q{i}?"), Response(f"one {i}"), Response(f"two {i}"))


def _j(p: Pair, who: str, side: str | None, strength: Strength = Strength.BETTER) -> Judgement:
    preferred = None if side is None else (p.a.id if side == "a" else p.b.id)
    return Judgement(p.pair_id, who, preferred, Strength.NEGLIGIBLY_BETTER if side is None else strength)


@pytest.mark.parametrize("overlap", [2, 3])
def test_ability_recovers_the_truth_better_than_majority_and_ranks_the_annotators(overlap: int) -> None:
    for seed in range(5):
        sim = simulate(800, overlap, seed)
        got = {}
        for rule in ("majority", "mean", "ability"):
            rows, report = aggregate(sim.pairs, sim.judgements, rule=rule)
            got[rule] = (recovery(rows, sim), right_rows(rows, sim) / len(rows))
        # More pairs with the true side, and no less right among the pairs exported.
        assert got["ability"][0] > got["majority"][0] + 0.1, (seed, got)
        assert got["ability"][0] > got["mean"][0] + 0.1, (seed, got)
        assert got["ability"][1] > got["majority"][1], (seed, got)
        assert report.reliability is not None and set(report.reliability) == set(sim.kinds)
        assert ranks_right(report.reliability, sim.kinds), (seed, report.reliability)


def test_an_adversarial_vote_counts_against_the_side_it_chose() -> None:
    """Two annotators who agree, and a third who always says the opposite: on a pair the third
    judged alone, the ability rule takes the other side (majority takes theirs)."""
    pairs = [_pair(i) for i in range(41)]
    js = []
    for i, p in enumerate(pairs[:40]):
        side, other = ("a", "b") if i % 2 else ("b", "a")
        js += [_j(p, "lan", side), _j(p, "minh", side), _j(p, "trolling", other)]
    last = pairs[40]
    js.append(_j(last, "trolling", "a", Strength.SIGNIFICANTLY_BETTER))
    rows, report = aggregate(pairs, js, rule="ability")
    assert report.reliability is not None
    assert report.reliability["trolling"] < 0.1 < 0.9 < min(report.reliability["lan"], report.reliability["minh"])
    row = {r.id: r for r in rows}[last.pair_id]
    assert row.chosen == last.b.text and row.decided_by == "ability"
    # Nobody chose the winner: the lowest level, margin 0.
    assert row.strength is Strength.NEGLIGIBLY_BETTER and row.agreement == 0.0
    (majority,) = [r for r in aggregate(pairs, js, rule="majority")[0] if r.id == last.pair_id]
    assert majority.chosen == last.a.text


def test_ability_level_is_the_most_reliable_voters_and_all_unsure_is_no_winner() -> None:
    pairs = [_pair(i) for i in range(31)]
    js = []
    for i, p in enumerate(pairs[:30]):  # lan and minh always agree; careless one time in three
        side, other = ("a", "b") if i % 2 else ("b", "a")
        js += [_j(p, "lan", side), _j(p, "minh", side), _j(p, "careless", other if i % 3 == 0 else side)]
    p = pairs[30]
    js += [_j(p, "lan", "b", Strength.SLIGHTLY_BETTER), _j(p, "careless", "b", Strength.SIGNIFICANTLY_BETTER)]
    js += [_j(pairs[0], "quiet", None)]  # an unsure vote tells nothing
    rows, report = aggregate(pairs, js, rule="ability")
    assert report.reliability is not None and report.reliability["lan"] > report.reliability["careless"]
    row = {r.id: r for r in rows}[p.pair_id]
    assert row.chosen == p.b.text and row.strength is Strength.SLIGHTLY_BETTER  # lan's level weighs more

    q = _pair(99)
    rows, report = aggregate([q], [_j(q, "lan", None), _j(q, "minh", None)], rule="ability")
    assert rows == [] and report.ties_dropped == 1


def test_dawid_skene_alone() -> None:
    votes = {f"i{i}": [("x", i % 2), ("y", i % 2), ("z", 1 - i % 2)] for i in range(20)}
    ability = dawid_skene(votes)
    assert ability.iterations >= 1 and 0.4 < ability.prior_b < 0.6
    assert all(abs(ability.posterior_b[f"i{i}"] - i % 2) < 0.05 for i in range(20))
    assert ability.confusion["z"][0][1] > 0.9  # z answers b when the truth is a


def test_decisions_win_over_the_rule_and_rows_say_who_decided() -> None:
    p, q, r = _pair(1), _pair(2), _pair(3)
    js = [_j(p, "lan", "a"), _j(p, "minh", "b"), _j(q, "lan", "a"), _j(q, "minh", "a"), _j(r, "lan", "a")]
    decisions = {
        p.pair_id: Decision(p.b.id, Strength.BETTER, "review"),  # a tie under the rule: settled
        r.pair_id: Decision(None, Strength.NEGLIGIBLY_BETTER, "review"),  # the reviewer was unsure: left out
    }
    rows, report = aggregate([p, q, r], js, rule="majority", decisions=decisions)
    by = {row.id: row for row in rows}
    assert set(by) == {p.pair_id, q.pair_id}
    assert (by[p.pair_id].chosen, by[p.pair_id].strength, by[p.pair_id].decided_by) == (
        p.b.text,
        Strength.BETTER,
        "review",
    )
    assert by[p.pair_id].agreement == 0.5 and by[q.pair_id].decided_by == "majority"
    assert report.decided_by == {"review": 1, "majority": 1} and report.decided_unsure_dropped == 1
    assert report.ties_dropped == 0
    # A decided pair nobody judged (a gold pair) is exported with no agreement.
    g = _pair(4)
    rows, report = aggregate([g], [], decisions={g.pair_id: Decision(g.a.id, Strength.SLIGHTLY_BETTER, "gold")})
    (row,) = rows
    assert (row.chosen, row.decided_by, row.n_annotators, row.agreement) == (g.a.text, "gold", 0, None)
    assert report.unjudged_pairs == 0


def test_unknown_rule_names_the_three() -> None:
    with pytest.raises(DataError, match="mean, majority, ability"):
        aggregate([], [], rule="median")
