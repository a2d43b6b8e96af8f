"""prefkit's PPO for language models (InstructGPT / Llama 2), on transformers + peft + accelerate.

One copy of the weights: `model.path` is the frozen base (4-bit under QLoRA); LoRA adapters sit on
it: `default` for the policy and `value` for the critic (plus a linear value head on the critic's
last hidden state). Started from a previous stage's adapter (`model.adapter`, e.g. SFT's), the
policy *is* that adapter, trained further, and a frozen copy of it (`ref`) is the reference: the
SFT model. Otherwise the policy is a new adapter and the reference is the base with the adapters
disabled. Either way the per-token KL penalty costs no second model.

Each step: sample a rollout batch of prompts, generate, score with the reward function, compute
per-token KL-penalised rewards (the final score optionally whitened first, `whiten`), GAE advantages (whitened) and returns, then
run `ppo_epochs` passes of clipped policy and value losses over shuffled mini-batches.
Checkpoints hold both adapters, the value head, optimizer, scheduler, RNG and log history, so a
resumed run continues exactly where the last checkpoint left it. The maths is in `ppo_losses`.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from data.atomic import atomic_path
from data.config import to_dict
from data.errors import ConfigError
from data.schema import Prompt
from train.config import RunConfig
from train.datasets import load_prompts
from train.ppo_losses import gae, masked_mean, policy_loss, shaped_rewards, value_loss, whiten
from train.scoring import RewardFn, RewardSection, load_reward, messages

POLICY = "default"  # peft's default name, so the saved policy adapter is a plain adapter folder
VALUE = "value"
REF = "ref"  # a frozen copy of `model.adapter` when the run continues one: the KL reference
STATE_FILE = "trainer_state.pt"


@dataclass
class PpoConfig(RunConfig):
    """PPO settings on top of the shared run settings.

    `batch_size` is prompts per rollout; `max_steps` counts rollouts (PPO iterations); each
    rollout is trained `ppo_epochs` times in mini-batches of `mini_batch_size`, one optimizer
    step per `grad_accum` mini-batches. Prompts come from `data.source` (any prompt format).
    """

    reward: RewardSection = field(default_factory=RewardSection)
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    mini_batch_size: int = 4
    ppo_epochs: int = 4
    kl_coef: float = 0.05
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    # whitening of the reward before GAE: `sequence` (Llama 2) standardises the final score over the
    # rollout batch before the per-token KL penalty is added; `tokens` whitens the per-token KL-penalised
    # rewards, mean kept (TRL's `whiten_rewards`, length-biased); `none` leaves them as they are
    whiten: Literal["none", "sequence", "tokens"] = "none"
    whiten_rewards: bool | None = None  # replaced by `whiten`; kept only to name the replacement
    rollout_batch_size: int | None = None  # prompts generated at once (None: batch_size)
    forward_batch_size: int | None = None  # rows per forward pass, rollout and loss (None: mini_batch_size)
    missing_eos_penalty: float | None = None  # subtracted from the score of a response that never ended
    max_grad_norm: float = 1.0
    lr: float = 1e-5
    logging_steps: int = 1
    save_steps: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lora.enabled:
            raise ConfigError("ppo needs lora.enabled: the reference policy is the base with the adapters disabled")
        if self.batch_size % self.mini_batch_size:
            raise ConfigError(f"batch_size ({self.batch_size}) must be a multiple of mini_batch_size ({self.mini_batch_size})")
        if self.temperature <= 0:
            raise ConfigError("temperature must be > 0 (PPO samples)")
        if self.whiten_rewards is not None:
            raise ConfigError(
                f"whiten_rewards: {str(self.whiten_rewards).lower()} is replaced by whiten: sequence (Llama 2: the "
                "final score whitened over the batch), tokens (the old whiten_rewards: true, as TRL) or none "
                "(the old false)")
        for name in ("rollout_batch_size", "forward_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 (or null)")


class ValueHead(nn.Module):
    """Hidden state -> scalar value, in float32 whatever the base dtype."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.linear.weight, std=1.0 / math.sqrt(hidden_size + 1))
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


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


LOGIT_CHUNK_TOKENS = 1024  # real tokens per vocabulary projection: 1024 × 128,256 × 4 B = 0.5 GB of fp32 logits


def _chunk_logprobs(head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    from trl.trainer.utils import selective_log_softmax

    return selective_log_softmax(head(hidden).float() / temperature, labels)


def token_logprobs(head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                   temperature: float = 1.0, *, with_entropy: bool = False,
                   chunk_tokens: int = LOGIT_CHUNK_TOKENS) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token `log softmax(head(hidden) / T)[label]` (float32, 0 where `mask` is 0), and the entropy
    when asked, without materialising `rows × length × vocab` logits: only the real tokens are projected,
    `chunk_tokens` at a time. With gradients on, each chunk is checkpointed, so backward recomputes its
    logits instead of keeping them: at most one chunk of fp32 logits exists at any moment."""
    keep = mask.bool()
    flat_h, flat_y = hidden[keep], labels[keep]
    lps, ents = [], []
    for i in range(0, flat_h.shape[0], chunk_tokens):
        h, y = flat_h[i:i + chunk_tokens], flat_y[i:i + chunk_tokens]
        if torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            lps.append(checkpoint(_chunk_logprobs, head, h, y, temperature, use_reentrant=False))
            continue
        from trl.trainer.utils import entropy_from_logits, selective_log_softmax

        logits = head(h).float() / temperature
        lps.append(selective_log_softmax(logits, y))
        if with_entropy:
            ents.append(entropy_from_logits(logits))
        del logits
    zeros = torch.zeros(labels.shape, dtype=torch.float32, device=hidden.device)
    logprobs = zeros.masked_scatter(keep, torch.cat(lps)) if lps else zeros
    entropy = (zeros.masked_scatter(keep, torch.cat(ents)) if ents else zeros.clone()) if with_entropy else None
    return logprobs, entropy


class PpoTrainer:
    """Build with a config (and optionally a reward function / prompts for tests), then `train()`."""

    def __init__(self, cfg: PpoConfig, *, reward_fn: RewardFn | None = None, prompts: list[Prompt] | None = None) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        from peft import get_peft_model
        from trl.trainer.utils import disable_dropout_in_model

        from train.models import check_save_mode, continues_adapter, load_policy, load_tokenizer, peft_config, use_bf16

        check_save_mode(cfg)
        self.cfg = cfg
        set_seed(cfg.seed)
        self.accelerator = Accelerator(
            mixed_precision="bf16" if use_bf16(cfg) else "no",
            log_with=None if cfg.report_to == "none" else cfg.report_to,
            project_dir=str(cfg.output_dir),
            cpu=not torch.cuda.is_available(),
        )
        self.prompts = prompts if prompts is not None else load_prompts(cfg.data)
        self.tokenizer = load_tokenizer(cfg, padding_side="left")
        if continues_adapter(cfg):
            # started from a previous stage's adapter (e.g. SFT): the policy keeps training exactly that
            # adapter over the bare (4-bit with QLoRA) base, and a frozen copy of it is the KL reference:
            # the SFT model itself, never a merge into 4-bit
            model = load_policy(cfg, adapter_name=POLICY)
            model.load_adapter(cfg.model.adapter, adapter_name=REF, is_trainable=False)
            self.ref_adapter: str | None = REF
        else:
            model = get_peft_model(load_policy(cfg), peft_config(cfg), adapter_name=POLICY)
            self.ref_adapter = None  # the reference is the base with the adapters disabled
        model.add_adapter(VALUE, peft_config(cfg))
        model.set_requires_grad([POLICY, VALUE], True)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        disable_dropout_in_model(model)  # rollout and training must see the same policy
        self.value_head = ValueHead(model.config.hidden_size)
        params = [p for p in model.parameters() if p.requires_grad] + list(self.value_head.parameters())
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        from transformers import get_scheduler

        self.total_steps = self._total_steps()
        minibatches = cfg.batch_size // cfg.mini_batch_size
        opt_steps = self.total_steps * cfg.ppo_epochs * math.ceil(minibatches / cfg.grad_accum)
        scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=int(cfg.warmup if cfg.warmup >= 1 else cfg.warmup * opt_steps),
                                  num_training_steps=opt_steps)
        self.model, self.value_head, self.optimizer, self.scheduler = self.accelerator.prepare(
            model, self.value_head, optimizer, scheduler)
        self.reward_fn = reward_fn or load_reward(cfg.reward)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.tokens = 0

    # ---------------------------------------------------------------------------------- setup

    def _total_steps(self) -> int:
        if self.cfg.max_steps > 0:
            return self.cfg.max_steps
        return max(1, math.ceil(self.cfg.epochs * len(self.prompts) / self.cfg.batch_size))

    def _batch_prompts(self, step: int) -> list[Prompt]:
        """The prompts of rollout `step`: a fresh seeded shuffle per pass, so resume needs only the step."""
        n, bs = len(self.prompts), self.cfg.batch_size
        orders: dict[int, list[int]] = {}  # one permutation per pass over the prompts, not one per prompt
        out: list[Prompt] = []
        for i in range(step * bs, (step + 1) * bs):
            epoch, pos = divmod(i, n)
            if epoch not in orders:
                orders[epoch] = list(range(n))
                random.Random(self.cfg.seed + epoch).shuffle(orders[epoch])
            out.append(self.prompts[orders[epoch][pos]])
        return out

    @property
    def _peft(self) -> Any:
        return self.accelerator.unwrap_model(self.model)

    # ------------------------------------------------------------------------------ forwards

    def _forward(self, query: torch.Tensor, query_mask: torch.Tensor, response: torch.Tensor, mask: torch.Tensor,
                 adapter: str | None, *, entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token (log-probs, entropy or None) under `adapter` (POLICY, REF, or None: the adapters
        disabled) or (values, None) for VALUE, for the rows given (at most `forward_batch_size` rows).

        The decoder runs once; the vocabulary projection runs only on the real response tokens, a few
        thousand at a time (`token_logprobs`), so full `rows × length × vocab` logits never exist."""
        ids = torch.cat([query, response], dim=1)
        attn = torch.cat([query_mask, mask.long()], dim=1)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)  # left padding: positions count real tokens only
        P = query.shape[1]
        peft_model = self._peft
        base = peft_model.get_base_model()
        if adapter is not None:
            peft_model.set_adapter(adapter, inference_mode=adapter == REF)  # REF stays frozen
        with self.accelerator.autocast(), (peft_model.disable_adapter() if adapter is None else nullcontext()):
            hidden = base.get_decoder()(input_ids=ids, attention_mask=attn, position_ids=pos).last_hidden_state
            hidden = hidden[:, P - 1:-1]  # the state that predicts each response token
            if adapter == VALUE:
                return self.value_head(hidden), None
            return token_logprobs(base.get_output_embeddings(), hidden, response, mask, self.cfg.temperature,
                                  with_entropy=entropy)

    def _chunked(self, query: torch.Tensor, query_mask: torch.Tensor, response: torch.Tensor, mask: torch.Tensor,
                 adapter: str | None, *, entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`_forward` over all rows, `forward_batch_size` rows at a time (the rollout's no-grad passes)."""
        step = self.forward_batch_size
        outs, ents = [], []
        for i in range(0, response.shape[0], step):
            sl = slice(i, i + step)
            out, ent = self._forward(query[sl], query_mask[sl], response[sl], mask[sl], adapter, entropy=entropy)
            outs.append(out)
            ents.append(ent)
        return torch.cat(outs), (torch.cat(ents) if entropy else None)

    @property
    def forward_batch_size(self) -> int:
        return self.cfg.forward_batch_size or self.cfg.mini_batch_size

    # ------------------------------------------------------------------------------- rollout

    @torch.no_grad()
    def _generate(self, enc: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sampled response ids for every prompt row, `rollout_batch_size` prompts at a time, right-padded."""
        cfg, tok = self.cfg, self.tokenizer
        peft_model = self._peft
        peft_model.set_adapter(POLICY)
        P = enc["input_ids"].shape[1]
        step = cfg.rollout_batch_size or cfg.batch_size
        parts = []
        for i in range(0, enc["input_ids"].shape[0], step):
            out = peft_model.generate(
                input_ids=enc["input_ids"][i:i + step], attention_mask=enc["attention_mask"][i:i + step],
                do_sample=True, temperature=cfg.temperature, top_k=cfg.top_k or None, top_p=cfg.top_p,
                max_new_tokens=cfg.max_new_tokens, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            )
            parts.append(out[:, P:])
        width = max(p.shape[1] for p in parts)
        return torch.cat([nn.functional.pad(p, (0, width - p.shape[1]), value=tok.pad_token_id) for p in parts])

    @torch.no_grad()
    def rollout(self, prompts: list[Prompt]) -> Rollout:
        cfg, tok = self.cfg, self.tokenizer
        texts = [tok.apply_chat_template(messages(p), tokenize=False, add_generation_prompt=True) for p in prompts]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.accelerator.device)
        query, query_mask = enc["input_ids"], enc["attention_mask"]
        response = self._generate(enc)
        is_eos = response == tok.eos_token_id
        ended = is_eos.any(dim=1)
        first_eos = torch.where(ended, is_eos.float().argmax(dim=1), torch.full_like(ended, response.shape[1], dtype=torch.long))
        mask = (torch.arange(response.shape[1], device=response.device)[None, :] <= first_eos[:, None]).float()
        response = torch.where(mask.bool(), response, torch.full_like(response, tok.pad_token_id))

        logprobs, entropy = self._chunked(query, query_mask, response, mask, POLICY, entropy=True)
        ref_logprobs, _ = self._chunked(query, query_mask, response, mask, self.ref_adapter)
        values, _ = self._chunked(query, query_mask, response, mask, VALUE)
        completions = tok.batch_decode(response, skip_special_tokens=True)
        scores = torch.tensor(self.reward_fn(prompts, completions), dtype=torch.float32, device=response.device)
        raw_scores = scores.clone()
        if cfg.missing_eos_penalty is not None:
            scores = scores - cfg.missing_eos_penalty * (~ended).float()

        rewards, kl = shaped_rewards(scores, logprobs, ref_logprobs, mask, cfg.kl_coef, whitening=cfg.whiten)
        advantages, returns = gae(rewards, values, mask, gamma=cfg.gamma, lam=cfg.lam)
        advantages = whiten(advantages, mask)
        self.tokens += int(query_mask.sum() + mask.sum())
        stats = {
            "reward": raw_scores.mean().item(),
            "reward_std": raw_scores.std().item() if len(raw_scores) > 1 else 0.0,
            "kl": kl.sum(dim=1).mean().item(),
            "entropy": masked_mean(entropy, mask).item(),
            "response_length": mask.sum(dim=1).mean().item(),
            "ended": ended.float().mean().item(),
        }
        return Rollout(query, query_mask, response, mask, logprobs, values, advantages, returns, stats)

    # --------------------------------------------------------------------------------- train

    def ppo_update(self, ro: Rollout) -> dict[str, float]:
        """`ppo_epochs` passes of clipped policy and value losses over shuffled mini-batches."""
        cfg = self.cfg
        sums: dict[str, float] = {}
        count = 0
        micro = 0
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(ro.query.shape[0], device=ro.query.device)
            for start in range(0, len(order), cfg.mini_batch_size):
                i = order[start:start + cfg.mini_batch_size]
                # the mini-batch's losses are token means over all its rows; each `forward_batch_size`
                # slice adds its tokens' share, so the gradient equals one pass over the whole mini-batch
                tokens = ro.mask[i].sum().clamp(min=1)
                parts: dict[str, torch.Tensor] = {}
                for j in range(0, len(i), self.forward_batch_size):
                    c = i[j:j + self.forward_batch_size]
                    q, qm, r, m = ro.query[c], ro.query_mask[c], ro.response[c], ro.mask[c]
                    share = m.sum() / tokens
                    # separate graphs for the two adapters: each backward sees only its own adapter active
                    logprobs, _ = self._forward(q, qm, r, m, POLICY)
                    pg, clipfrac, approx_kl = policy_loss(logprobs, ro.logprobs[c], ro.advantages[c], m,
                                                          cliprange=cfg.cliprange)
                    self.accelerator.backward(pg * share / cfg.grad_accum)
                    values, _ = self._forward(q, qm, r, m, VALUE)
                    vf, vf_clipfrac = value_loss(values, ro.values[c], ro.returns[c], m,
                                                 cliprange_value=cfg.cliprange_value)
                    self.accelerator.backward(cfg.vf_coef * vf * share / cfg.grad_accum)
                    for k, v in (("policy_loss", pg), ("clipfrac", clipfrac), ("approx_kl", approx_kl),
                                 ("value_loss", vf), ("value_clipfrac", vf_clipfrac)):
                        parts[k] = parts.get(k, 0.0) + (v.detach() * share)
                micro += 1
                if micro % cfg.grad_accum == 0 or start + cfg.mini_batch_size >= len(order):
                    if cfg.max_grad_norm:
                        self.accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    micro = 0
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
        return {k: v / count for k, v in sums.items()}

    def train(self) -> dict[str, Any]:
        """Run to `total_steps` rollouts (resuming when asked); write the model and summary.json."""
        from train.models import FINAL_DIR, resolve_resume

        cfg = self.cfg
        started = time.perf_counter()
        resume = resolve_resume(cfg)
        if resume:
            self.load_checkpoint(Path(resume))
        first_step, first_tokens = self.step, self.tokens
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        if cfg.report_to != "none":
            self.accelerator.init_trackers("ppo")
        t0 = time.perf_counter()
        while self.step < self.total_steps:
            ts = time.perf_counter()
            ro = self.rollout(self._batch_prompts(self.step))
            stats = {**ro.stats, **self.ppo_update(ro)}
            self.step += 1
            stats.update(step=self.step, lr=self.scheduler.get_last_lr()[0], step_s=time.perf_counter() - ts)
            self.history.append(stats)
            if self.step % cfg.logging_steps == 0 or self.step == self.total_steps:
                self.accelerator.log({k: v for k, v in stats.items() if k != "step"}, step=self.step)
                self.accelerator.print(" ".join(f"{k}={v:.4g}" for k, v in stats.items()))
            if cfg.save_steps > 0 and self.step % cfg.save_steps == 0 and self.step < self.total_steps:
                self.save_checkpoint()
        train_s = time.perf_counter() - t0
        self.accelerator.end_training()
        model_dir = self.save_final(Path(cfg.output_dir) / FINAL_DIR)
        return self._write_summary(model_dir, first_step, first_tokens, train_s, started)

    # ----------------------------------------------------------------------- saving, resuming

    def save_checkpoint(self) -> Path:
        """`checkpoint-<step>/`: both adapters, value head, optimizer, scheduler, RNG, history."""
        target = Path(self.cfg.output_dir) / f"checkpoint-{self.step}"
        peft_model = self._peft
        with atomic_path(target, directory=True) as tmp:
            peft_model.save_pretrained(tmp / "policy", selected_adapters=[POLICY])
            peft_model.save_pretrained(tmp / "value_adapter", selected_adapters=[VALUE])
            torch.save({
                "step": self.step,
                "tokens": self.tokens,
                "history": self.history,
                "value_head": self.accelerator.unwrap_model(self.value_head).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": {"python": random.getstate(), "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            }, tmp / STATE_FILE)
        self._prune_checkpoints()
        return target

    def _prune_checkpoints(self) -> None:
        limit = self.cfg.save_total_limit
        if not limit:
            return
        ckpts = sorted(Path(self.cfg.output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        for old in ckpts[:-limit]:
            shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, path: Path) -> None:
        from peft import load_peft_weights, set_peft_model_state_dict

        state_file = path / STATE_FILE
        if not state_file.exists():
            raise ConfigError(f"resume_from_checkpoint {str(path)!r}: not a PPO checkpoint (no {STATE_FILE})")
        peft_model = self._peft
        device = self.accelerator.device
        # peft saves a non-default adapter in a sub-folder named after it
        for name, folder in ((POLICY, path / "policy"), (VALUE, path / "value_adapter" / VALUE)):
            set_peft_model_state_dict(peft_model, load_peft_weights(str(folder), device=str(device)), adapter_name=name)
        state = torch.load(state_file, map_location=device, weights_only=False)
        self.accelerator.unwrap_model(self.value_head).load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        random.setstate(state["rng"]["python"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step, self.tokens, self.history = state["step"], state["tokens"], state["history"]

    def save_final(self, target: Path) -> Path:
        """The policy adapter (over the bare `model.path`, also when the run continued `model.adapter`),
        or with `save: merged` a full model: merged at full precision, from a fresh bf16/fp32 copy of
        `model.path` under QLoRA, never from the 4-bit one (`train.models.save_model_final`)."""
        from train.models import save_model_final

        with atomic_path(target, directory=True) as tmp:
            save_model_final(self._peft, self.cfg, tmp, adapter_name=POLICY)
            self.tokenizer.save_pretrained(tmp)
        return target

    def _write_summary(self, model_dir: Path, first_step: int, first_tokens: int, train_s: float,
                       started: float) -> dict[str, Any]:
        import transformers

        from train.summary import write_summary

        steps = self.step - first_step
        first = self.history[0] if self.history else {}
        last = self.history[-1] if self.history else {}
        summary = {
            "stage": "ppo",
            "output_dir": str(self.cfg.output_dir),
            "model_dir": str(model_dir),
            "metrics": {k: last.get(k) for k in ("reward", "kl", "entropy", "clipfrac", "value_loss", "policy_loss")}
            | {"first_reward": first.get("reward"), "resumed_from_step": first_step or None},
            "losses": {"train": [{"step": h["step"], "loss": h["policy_loss"] + self.cfg.vf_coef * h["value_loss"]}
                                 for h in self.history]},
            "steps": self.step,
            "durations": {"train_s": train_s, "total_s": time.perf_counter() - started},
            "steps_per_s": steps / train_s if train_s > 0 else 0.0,
            "tokens": self.tokens - first_tokens,  # this session's, like the other stages
            "tokens_per_s": (self.tokens - first_tokens) / train_s if train_s > 0 else 0.0,
            "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
            "log_history": self.history,
            "config": to_dict(self.cfg),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        }
        if self.accelerator.is_main_process:
            write_summary(self.cfg.output_dir, summary)
        return summary


CONFIG = PpoConfig


def run(cfg: PpoConfig, *, reward_fn: RewardFn | None = None, prompts: list[Prompt] | None = None) -> dict[str, Any]:
    """Train PPO from a config (the reward from `cfg.reward` unless given); returns the summary."""
    from train.output_dir import claim_output_dir

    claim_output_dir(cfg, "ppo")
    return PpoTrainer(cfg, reward_fn=reward_fn, prompts=prompts).train()
