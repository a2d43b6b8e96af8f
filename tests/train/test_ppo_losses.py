"""PPO maths against values worked out by hand on fixed small batches."""

import math

import pytest
import torch

from prefkit.train.ppo.losses import gae, kl_penalised_rewards, policy_loss, value_loss, whiten


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


def test_sequence_whitening_whitens_the_final_score_then_adds_the_kl_penalty():
    from prefkit.train.ppo.losses import shaped_rewards

    scores = torch.tensor([1.0, 2.0, 3.0, 6.0])  # mean 3, unbiased variance (4 + 1 + 0 + 9) / 3 = 14/3
    std = math.sqrt(14 / 3)
    logprobs = torch.tensor([[-1.0, -1.0], [-1.0, -1.0], [-2.0, -1.0], [-1.0, -1.0]])
    ref = torch.tensor([[-1.5, -1.0], [-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    rewards, kl = shaped_rewards(scores, logprobs, ref, mask, kl_coef=0.1, whitening="sequence")
    # row 0: KL 0.5 on token 0 → −0.05, whitened score (1−3)/std on its last token
    assert rewards[0].tolist() == pytest.approx([-0.05, -2 / std], rel=1e-5)
    assert rewards[1].tolist() == pytest.approx([-1 / std, 0.0], rel=1e-5)  # ends after one token
    assert rewards[2].tolist() == pytest.approx([0.1, 0.0], abs=1e-6)  # KL −1 → +0.1; score 3 is the mean → 0
    assert rewards[3].tolist() == pytest.approx([0.0, 3 / std], rel=1e-5)
    assert kl[0].tolist() == pytest.approx([0.5, 0.0])
    none, _ = shaped_rewards(scores, logprobs, ref, mask, kl_coef=0.1, whitening="none")
    assert none[3].tolist() == pytest.approx([0.0, 6.0])


def test_token_whitening_lets_a_short_low_score_outrank_a_long_high_score_and_sequence_does_not():
    """The issue's example: an 8-token answer scored 1.0 and a 32-token answer scored 2.0, no KL.
    `tokens` whitens all 40 token rewards (mean 3/40 kept); `sequence` whitens the two scores."""
    from prefkit.train.ppo.losses import shaped_rewards

    scores = torch.tensor([1.0, 2.0])
    mask = torch.zeros(2, 32)
    mask[0, :8] = 1.0
    mask[1, :] = 1.0
    zeros = torch.zeros(2, 32)
    mean = 3 / 40
    std = math.sqrt((1.0 + 4.0 - 40 * mean**2) / 39)
    # return (γ = 1) of each answer = sum of its whitened token rewards = (score − n·mean)/std + n·mean
    short_return = (1.0 - 8 * mean) / std + 8 * mean  # 1.743
    long_return = (2.0 - 32 * mean) / std + 32 * mean  # 1.257
    tok, _ = shaped_rewards(scores, zeros, zeros, mask, kl_coef=0.1, whitening="tokens")
    assert tok.sum(dim=1).tolist() == pytest.approx([short_return, long_return], rel=1e-5)
    assert tok[0].sum() > tok[1].sum()  # the length bias: the worse answer now earns more
    seq, _ = shaped_rewards(scores, zeros, zeros, mask, kl_coef=0.1, whitening="sequence")
    assert seq.sum(dim=1).tolist() == pytest.approx([-math.sqrt(0.5), math.sqrt(0.5)], rel=1e-5)


def test_unknown_whitening_is_refused():
    from prefkit.train.ppo.losses import shaped_rewards

    with pytest.raises(ValueError, match="whitening"):
        shaped_rewards(torch.zeros(1), torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), 0.1, whitening="batch")
