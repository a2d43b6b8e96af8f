"""PPO's rollout: which prompts a step samples, the sampled answers, their scores, and the per-token
rewards, advantages and returns the update trains on (everything detached).

Each step's prompts are a slice of a fresh seeded shuffle per pass over the prompts, so a resumed
run needs only the step. A data-parallel run splits each step's batch across the processes (process
r takes rows r·batch_size … (r+1)·batch_size−1 of the `batch_size × world_size` rows); the answers
are sampled with `prefkit.train.seeded_sampling`, so a row's answer depends on (seed, step, row) only, not on
how the batch was split; the whitening statistics (`whiten`, advantages) and the logged statistics
are those of the whole batch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from prefkit.data.schema import Prompt
from prefkit.train.data_parallel import DataParallel
from prefkit.train.ppo.losses import gae, shaped_rewards, whiten
from prefkit.train.ppo.model import POLICY, VALUE
from prefkit.train.scoring import messages
from prefkit.train.seeded_sampling import SeededSampling, row_keys

if TYPE_CHECKING:
    from prefkit.train.ppo import PpoTrainer


@dataclass
class Rollout:
    """One batch of sampled responses and everything PPO needs about them (all detached)."""

    query: torch.Tensor  # (B, P) left-padded prompt ids
    query_mask: torch.Tensor
    response: torch.Tensor  # (B, R) response ids, pad after EOS
    mask: torch.Tensor  # (B, R) 1 for real response tokens (EOS included)
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    stats: dict[str, float]
    ref_logprobs: torch.Tensor  # (B, R) the reference's per-token log-probs the KL penalty used
    rewards: torch.Tensor  # (B, R) the per-token rewards GAE saw: the KL penalty, the score on the last token


def batch_prompts(
    prompts: list[Prompt], step: int, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1
) -> tuple[list[Prompt], int]:
    """This process's prompts of rollout `step` and the index of its first row in the step's whole
    batch (`batch_size × world_size` rows): a fresh seeded shuffle per pass over the prompts."""
    n, total = len(prompts), batch_size * world_size
    orders: dict[int, list[int]] = {}  # one permutation per pass over the prompts, not one per prompt
    out: list[Prompt] = []
    first = step * total + rank * batch_size
    for i in range(first, first + batch_size):
        epoch, pos = divmod(i, n)
        if epoch not in orders:
            orders[epoch] = list(range(n))
            random.Random(seed + epoch).shuffle(orders[epoch])
        out.append(prompts[orders[epoch][pos]])
    return out, rank * batch_size


@torch.no_grad()
def generate(trainer: PpoTrainer, enc: dict[str, torch.Tensor], step: int, first_row: int) -> torch.Tensor:
    """Sampled response ids for every prompt row, `rollout_batch_size` prompts at a time, right-padded.
    Row i's draws are keyed by (seed, step, first_row + i) (`prefkit.train.seeded_sampling`)."""
    cfg, tok = trainer.cfg, trainer.tokenizer
    peft_model = trainer._peft
    peft_model.set_adapter(POLICY)
    P = enc["input_ids"].shape[1]
    rows = enc["input_ids"].shape[0]
    keys = row_keys(cfg.seed, step, torch.arange(first_row, first_row + rows))
    chunk = cfg.rollout_batch_size or cfg.batch_size
    parts = []
    for i in range(0, rows, chunk):
        sampler = SeededSampling(keys[i : i + chunk], P, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p)
        out = peft_model.generate(
            input_ids=enc["input_ids"][i : i + chunk],
            attention_mask=enc["attention_mask"][i : i + chunk],
            do_sample=False,
            logits_processor=[sampler],
            max_new_tokens=cfg.max_new_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        parts.append(out[:, P:])
    width = max(p.shape[1] for p in parts)
    return torch.cat([nn.functional.pad(p, (0, width - p.shape[1]), value=tok.pad_token_id) for p in parts])


@torch.no_grad()
def rollout(trainer: PpoTrainer, prompts: list[Prompt], step: int, first_row: int = 0) -> Rollout:
    """Sample, score, and turn the scores into per-token advantages and returns for `prompts`."""
    cfg, tok, dp = trainer.cfg, trainer.tokenizer, trainer.dp
    texts = [tok.apply_chat_template(messages(p), tokenize=False, add_generation_prompt=True) for p in prompts]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(trainer.accelerator.device)
    query, query_mask = enc["input_ids"], enc["attention_mask"]
    response = generate(trainer, enc, step, first_row)
    is_eos = response == tok.eos_token_id
    ended = is_eos.any(dim=1)
    first_eos = torch.where(
        ended, is_eos.float().argmax(dim=1), torch.full_like(ended, response.shape[1], dtype=torch.long)
    )
    mask = (torch.arange(response.shape[1], device=response.device)[None, :] <= first_eos[:, None]).float()
    response = torch.where(mask.bool(), response, torch.full_like(response, tok.pad_token_id))

    logprobs, entropy = trainer._chunked(query, query_mask, response, mask, POLICY, entropy=True)
    assert entropy is not None  # asked for above
    ref_logprobs, _ = trainer._chunked(query, query_mask, response, mask, trainer.ref_adapter)
    values, _ = trainer._chunked(query, query_mask, response, mask, VALUE)
    completions = tok.batch_decode(response, skip_special_tokens=True)
    scores = torch.tensor(trainer.reward_fn(prompts, completions), dtype=torch.float32, device=response.device)
    raw_scores = scores.clone()
    if cfg.missing_eos_penalty is not None:
        scores = scores - cfg.missing_eos_penalty * (~ended).float()

    batch_sum = dp.sum if dp.active else None  # whitening over the whole batch, all processes' rows
    rewards, kl = shaped_rewards(
        scores, logprobs, ref_logprobs, mask, cfg.kl_coef, whitening=cfg.whiten, batch_sum=batch_sum
    )
    advantages, returns = gae(rewards, values, mask, gamma=cfg.gamma, lam=cfg.lam)
    advantages = whiten(advantages, mask, batch_sum=batch_sum)
    trainer.tokens += int(dp.sum(query_mask.sum() + mask.sum()))
    return Rollout(
        query,
        query_mask,
        response,
        mask,
        logprobs,
        values,
        advantages,
        returns,
        batch_stats(dp, raw_scores, kl, entropy, mask, ended),
        ref_logprobs,
        rewards,
    )


def batch_stats(
    dp: DataParallel,
    scores: torch.Tensor,
    kl: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    ended: torch.Tensor,
) -> dict[str, float]:
    """The logged statistics of the whole batch (every process's rows), the same on every process."""
    per_row = dp.gather(torch.stack([scores, kl.sum(dim=1), mask.sum(dim=1), ended.float()], dim=1))
    ent = dp.sum(torch.stack([(entropy * mask).sum(), mask.sum()]))
    all_scores = per_row[:, 0]
    return {
        "reward": all_scores.mean().item(),
        "reward_std": all_scores.std().item() if len(all_scores) > 1 else 0.0,
        "kl": per_row[:, 1].mean().item(),
        "entropy": (ent[0] / ent[1].clamp(min=1)).item(),
        "response_length": per_row[:, 2].mean().item(),
        "ended": per_row[:, 3].mean().item(),
        "rollouts": float(len(all_scores)),
    }
