"""Sampling keyed by (seed, step, row, position): exact samples of softmax(warped logits), and a row's
draws do not depend on the rows sampled with it (what lets data-parallel PPO equal one process)."""

import math

import pytest
import torch

from prefkit.train.seeded_sampling import SeededSampling, row_keys, uniform


def test_draws_follow_the_softmax_of_the_warped_logits():
    """20,000 rows, one draw each: every token's frequency is within 5 binomial standard errors of its
    probability (a wrong sampler, e.g. without the temperature, is off by dozens of them)."""
    n = 20_000
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5])
    for temperature in (1.0, 0.7):
        sampler = SeededSampling(row_keys(3, 0, torch.arange(n)), 0, temperature=temperature)
        picks = sampler(torch.zeros(n, 0, dtype=torch.long), logits.repeat(n, 1)).argmax(-1)
        freq = torch.bincount(picks, minlength=5).double() / n
        p = torch.softmax(logits.double() / temperature, -1)
        se = (p * (1 - p) / n).sqrt()
        assert ((freq - p).abs() <= 5 * se).all(), (temperature, freq, p)


def test_top_k_and_top_p_leave_only_their_tokens():
    n = 2_000
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0]).repeat(n, 1)
    ids = torch.zeros(n, 0, dtype=torch.long)
    top2 = SeededSampling(row_keys(0, 0, torch.arange(n)), 0, top_k=2)(ids, logits.clone()).argmax(-1)
    assert set(top2.tolist()) == {0, 1}
    # p = softmax: 0.636, 0.234, 0.086, ...: top_p 0.8 keeps the two first tokens
    nucleus = SeededSampling(row_keys(0, 0, torch.arange(n)), 0, top_p=0.8)(ids, logits.clone()).argmax(-1)
    assert set(nucleus.tolist()) == {0, 1}


def test_a_rows_draw_depends_on_its_key_and_position_only():
    logits = torch.randn(8, 50, generator=torch.Generator().manual_seed(0))
    ids = torch.zeros(8, 5, dtype=torch.long)  # position 5 after a prompt of 0 tokens
    keys = row_keys(1, 4, torch.arange(8))
    whole = SeededSampling(keys, 0)(ids, logits.clone())
    halves = torch.cat(
        [
            SeededSampling(keys[:3], 0)(ids[:3], logits[:3].clone()),
            SeededSampling(keys[3:], 0)(ids[3:], logits[3:].clone()),
        ]
    )
    assert torch.equal(whole, halves)
    # another step, row, or position draws other noise
    assert not torch.equal(whole, SeededSampling(row_keys(1, 5, torch.arange(8)), 0)(ids, logits.clone()))
    assert not torch.equal(whole, SeededSampling(row_keys(1, 4, torch.arange(1, 9)), 0)(ids, logits.clone()))
    assert not torch.equal(whole, SeededSampling(keys, 1)(ids, logits.clone()))


def test_uniforms_are_uniform_and_streams_uncorrelated():
    u = uniform(row_keys(0, 0, torch.arange(4)), 50_000)
    assert ((u > 0) & (u < 1)).all()
    # mean 1/2 and variance 1/12 within 5 standard errors of 50,000 draws per stream
    assert (u.mean(1) - 0.5).abs().max() < 5 * math.sqrt(1 / 12 / 50_000)
    corr = torch.corrcoef(u)
    assert (corr - torch.eye(4, dtype=corr.dtype)).abs().max() < 5 / math.sqrt(50_000)


@pytest.mark.parametrize("seed", [0, 123456789012])
def test_keys_take_any_seed_and_step(seed):
    a = row_keys(seed, 10**12, torch.arange(3))
    assert a.dtype == torch.int64 and len(set(a.tolist())) == 3
