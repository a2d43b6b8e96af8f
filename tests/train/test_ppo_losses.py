"""PPO maths against values worked out by hand on fixed small batches."""

import math

import pytest
import torch

from train.ppo_losses import gae, kl_penalised_rewards, policy_loss, value_loss, whiten


def test_gae_three_step_example_by_hand():
    # γ=0.9, λ=0.8, reward only at the end. δ2 = 1 − 0.7 = 0.3; δ1 = 0.9·0.7 − 0.6 = 0.03;
    # δ0 = 0.9·0.6 − 0.5 = 0.04; A2 = 0.3, A1 = 0.03 + 0.72·0.3 = 0.246, A0 = 0.04 + 0.72·0.246.
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 5.0]])
    values = torch.tensor([[0.5, 0.6, 0.7], [0.1, 0.2, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # second row ends after two tokens
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    assert adv[0].tolist() == pytest.approx([0.04 + 0.72 * 0.246, 0.246, 0.3])
    assert ret[0].tolist() == pytest.approx([0.5 + 0.04 + 0.72 * 0.246, 0.846, 1.0])
    # padding neither earns reward nor bootstraps: δ1 = 2 − 0.2, δ0 = 0.9·0.2 − 0.1
    assert adv[1].tolist() == pytest.approx([0.08 + 0.72 * 1.8, 1.8, 0.0])
    assert ret[1, 2].item() == 0.0


def test_clipped_policy_loss_by_hand():
    old = torch.zeros(1, 4)
    new = torch.tensor([[math.log(1.5), math.log(0.5), math.log(1.1), 3.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    loss, clip_frac, approx_kl = policy_loss(new, old, adv, mask, cliprange=0.2)
    # ρ=1.5, A=1 → clipped to 1.2: −1.2; ρ=0.5, A=1 → −0.5 (min objective keeps unclipped);
    # ρ=1.1, A=−1 → 1.1 (inside the range). Masked token ignored.
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.1) / 3)
    assert clip_frac.item() == pytest.approx(1 / 3)
    expected_kl = 0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2 + math.log(1.1) ** 2) / 3
    assert approx_kl.item() == pytest.approx(expected_kl)


def test_policy_loss_gradient_vanishes_when_clipped():
    new = torch.tensor([[math.log(1.5)]], requires_grad=True)
    loss, _, _ = policy_loss(new, torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), cliprange=0.2)
    loss.backward()
    assert new.grad.item() == 0.0


def test_clipped_value_loss_by_hand():
    values = torch.tensor([[1.0, 0.0, 7.0]])
    old = torch.tensor([[0.5, 0.1, 0.0]])
    returns = torch.tensor([[2.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, clip_frac = value_loss(values, old, returns, mask, cliprange_value=0.2)
    # first: V clipped to 0.7, (0.7−2)² = 1.69 > (1−2)² = 1 → 1.69; second: inside range, error 0
    assert loss.item() == pytest.approx(0.5 * (1.69 + 0.0) / 2)
    assert clip_frac.item() == pytest.approx(0.5)


def test_whitening_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 50.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    std = math.sqrt(5.0 / 3.0)  # unbiased variance of 1..4 is 5/3
    w = whiten(x, mask)
    assert w[0, :4].tolist() == pytest.approx([(v - 2.5) / std for v in (1, 2, 3, 4)], rel=1e-5)
    assert w[0, 4].item() == 0.0
    kept = whiten(x, mask, shift_mean=False)
    assert kept[0, :4].tolist() == pytest.approx([(v - 2.5) / std + 2.5 for v in (1, 2, 3, 4)], rel=1e-5)


def test_kl_penalty_per_token_and_score_on_last_real_token():
    scores = torch.tensor([2.0])
    logprobs = torch.tensor([[-1.0, -2.0, -3.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    rewards, kl = kl_penalised_rewards(scores, logprobs, ref, mask, kl_coef=0.1)
    assert kl[0].tolist() == pytest.approx([0.5, 0.0, 0.0])
    assert rewards[0].tolist() == pytest.approx([-0.05, 2.0, 0.0])
