"""The sampling plan: seeded, order-independent, and strict about impossible settings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefkit.core.errors import ConfigError
from prefkit.generate.plan import SamplingPlan, Setting

SETTINGS = (
    Setting("model-a", 0.6, 0.9),
    Setting("model-a", 1.2, 0.9),
    Setting("model-b", 0.9, 0.95, adapter="round-1"),
)
IDS = [f"p-{i}" for i in range(200)]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(["all_pairs", "random_pair", "samples"]))
def test_same_seed_same_plan_whatever_the_order(seed, mode):
    plan = SamplingPlan(SETTINGS, mode=mode, samples=3, seed=seed)
    forward = {pid: plan.assign(pid) for pid in IDS[:20]}
    again = SamplingPlan(SETTINGS, mode=mode, samples=3, seed=seed)
    backward = {pid: again.assign(pid) for pid in reversed(IDS[:20])}
    assert forward == backward


def test_another_seed_another_plan():
    a = [SamplingPlan(SETTINGS, seed=1).assign(pid) for pid in IDS]
    b = [SamplingPlan(SETTINGS, seed=2).assign(pid) for pid in IDS]
    assert [x.draws for x in a] != [x.draws for x in b]
    assert {d.seed for x in a for d in x.draws}.isdisjoint({d.seed for x in b for d in x.draws})


def test_random_pair_uses_two_distinct_settings_and_covers_all():
    plan = SamplingPlan(SETTINGS, mode="random_pair", seed=0)
    seen = set()
    for pid in IDS:
        a = plan.assign(pid)
        assert len(a.draws) == 2 and a.pairs == ((0, 1),)
        assert a.draws[0].setting != a.draws[1].setting
        seen.add((a.draws[0].setting.label, a.draws[1].setting.label))
    # All 6 ordered combinations of 3 settings turn up over 200 prompts.
    assert len(seen) == 6


def test_all_pairs_answers_once_per_setting_and_pairs_every_two():
    a = SamplingPlan(SETTINGS, mode="all_pairs").assign("p-1")
    assert [d.setting for d in a.draws] == list(SETTINGS)
    assert a.pairs == ((0, 1), (0, 2), (1, 2))
    assert len({d.seed for d in a.draws}) == 3


def test_samples_draws_one_setting_n_times_with_distinct_seeds():
    plan = SamplingPlan(SETTINGS, mode="samples", samples=4, seed=3)
    chosen = set()
    for pid in IDS[:50]:
        a = plan.assign(pid)
        assert len({d.setting for d in a.draws}) == 1
        assert len({d.seed for d in a.draws}) == 4
        assert len(a.pairs) == 6
        chosen.add(a.draws[0].setting)
    assert chosen == set(SETTINGS)


def test_seeds_fit_every_engine():
    plan = SamplingPlan(SETTINGS, mode="all_pairs", seed=2**40)
    for pid in IDS:
        assert all(0 <= d.seed < 2**31 for d in plan.assign(pid).draws)


@pytest.mark.parametrize("temperature", [-0.1, 2.5, float("nan")])
def test_temperature_out_of_range(temperature):
    with pytest.raises(ConfigError, match=r"temperature .* out of range"):
        Setting("m", temperature)


@pytest.mark.parametrize("top_p", [0.0, 1.5])
def test_top_p_out_of_range(top_p):
    with pytest.raises(ConfigError, match="top_p"):
        Setting("m", 0.7, top_p)


def test_impossible_plans():
    one = (Setting("m", 0.7),)
    with pytest.raises(ConfigError, match="only one is given"):
        SamplingPlan(one, mode="random_pair")
    with pytest.raises(ConfigError, match="samples >= 2"):
        SamplingPlan(one, mode="samples", samples=1)
    with pytest.raises(ConfigError, match="given twice"):
        SamplingPlan((Setting("m", 0.7), Setting("m", 0.7)), mode="all_pairs")
    with pytest.raises(ConfigError, match="no sampling settings"):
        SamplingPlan((), mode="all_pairs")
    assert len(SamplingPlan(one, mode="samples", samples=2).assign("x").draws) == 2
