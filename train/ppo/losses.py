"""The maths of PPO for language models, as pure tensor functions (no model, no I/O).

Shapes: `(batch, response_len)` per-token tensors with a 0/1 `mask` over real response tokens
(padding after EOS is 0). Names follow InstructGPT / Llama 2 and the original
`lm-human-preferences` code: per-token KL penalty against the reference, the sequence score
added on the last real token, GAE, clipped surrogate and clipped value losses.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

BatchSum = Callable[[torch.Tensor], torch.Tensor]  # a tensor summed over the whole rollout batch (all processes)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over the masked elements (Bessel's correction, as in the reference code)."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_mean((x - mean) ** 2, mask)
    return var * n / (n - 1).clamp(min=1)


def whiten(
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    shift_mean: bool = True,
    eps: float = 1e-8,
    batch_sum: BatchSum | None = None,
) -> torch.Tensor:
    """Scale to unit variance over the masked elements; `shift_mean=False` keeps the mean (for rewards,
    so that whitening does not turn a good sequence's reward negative). `batch_sum` makes the mean and
    variance those of the whole batch when each process holds a share of it (data-parallel PPO): it sums
    a tensor over all processes; none, the statistics are `masked_mean` / `masked_var` of `x` itself."""
    if mask is None:
        mask = torch.ones_like(x)
    total = batch_sum or (lambda t: t)
    n = total(mask.sum())
    mean = total((x * mask).sum()) / n.clamp(min=1)
    var = total(((x - mean) ** 2 * mask).sum()) / n.clamp(min=1) * n / (n - 1).clamp(min=1)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token per row (0 for an empty row)."""
    return (mask.long().sum(dim=1) - 1).clamp(min=0)


def kl_penalised_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards `-kl_coef * (log π - log π_ref)`, plus the sequence score on the last real token.

    Returns `(rewards, kl)`; `kl` is the per-token estimate `log π - log π_ref` (masked).
    """
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    idx = last_token_index(mask)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, idx] += scores.to(rewards.dtype)
    return rewards * mask, kl


def shaped_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    *,
    whitening: str = "none",
    batch_sum: BatchSum | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-token rewards GAE sees, with the batch's whitening. Returns `(rewards, kl)`.

    - `none`: `kl_penalised_rewards` as is.
    - `sequence` (Llama 2, §3.2.3): the final scores are whitened over the batch, `(s − mean) / std`
      (unbiased std), *then* the per-token KL penalty is added. Only the score's scale and offset
      change, the same for every answer, so the ranking of answers is untouched and length plays no part.
    - `tokens` (TRL's `whiten_rewards`): the KL-penalised per-token rewards are whitened over all real
      tokens of the batch, mean kept. Every token of a long answer then gets a share of the shift, so an
      answer's return depends on its length with a sign set by the reward model's arbitrary offset.

    `batch_sum`: the batch is shared across processes (see `whiten`).
    """
    if whitening == "sequence":
        scores = whiten(scores.float().reshape(1, -1), batch_sum=batch_sum).reshape(scores.shape)
    elif whitening not in ("none", "tokens"):
        raise ValueError(f"whitening must be none, sequence or tokens, got {whitening!r}")
    rewards, kl = kl_penalised_rewards(scores, logprobs, ref_logprobs, mask, kl_coef)
    if whitening == "tokens":
        rewards = whiten(rewards, mask, shift_mean=False, batch_sum=batch_sum)
    return rewards, kl


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation. Returns `(advantages, returns)`, `returns = advantages + values`.

    δ_t = r_t + γ V_{t+1} − V_t,  A_t = δ_t + γλ A_{t+1}; the value after the last real token is 0
    (the episode ends there), which `mask` enforces.
    """
    values = values * mask
    T = rewards.shape[1]
    last = torch.zeros_like(rewards[:, 0])
    adv = torch.zeros_like(rewards)
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        last = last * mask[:, t]  # padding contributes nothing and carries nothing back
        adv[:, t] = last
    returns = adv + values
    return adv * mask, returns * mask


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    cliprange: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate objective, as a loss. Returns `(loss, clip_fraction, approx_kl)`.

    loss = mean(max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε))), ρ = exp(log π − log π_old).
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)
    return loss, clip_fraction, approx_kl


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    cliprange_value: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss. Returns `(loss, clip_fraction)`.

    loss = ½ mean(max((V − R)², (V_old + clip(V − V_old, ±ε) − R)²)).
    """
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped_err = (values - returns) ** 2
    clipped_err = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_err, clipped_err), mask)
    clip_fraction = masked_mean((clipped_err > unclipped_err).float(), mask)
    return loss, clip_fraction
