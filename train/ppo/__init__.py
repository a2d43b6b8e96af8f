"""prefkit's PPO for language models (InstructGPT / Llama 2), on transformers + peft + accelerate:
the config, the loop and the final save.

Each step: sample a rollout batch of prompts, generate, score with the reward function, compute
per-token KL-penalised rewards (the final score optionally whitened first, `whiten`), GAE advantages
(whitened) and returns (`ppo_rollout`), then run `ppo_epochs` passes of clipped policy and value
losses over shuffled mini-batches (`ppo_update`, the maths in `ppo_losses`). The weights are one
base with policy, value (and reference) LoRA adapters (`ppo_model`); checkpoints hold both adapters,
the value head, optimizer, scheduler, RNG and log history (`ppo_checkpoint`).

Data-parallel under `accelerate launch --multi_gpu --num_processes N` (no DeepSpeed/FSDP): each
process samples and scores `batch_size` prompts of the step's `N × batch_size`, gradients are summed
across processes before every optimizer step (`prefkit.train.data_parallel`), the logged statistics are the
whole batch's, and the main process writes the checkpoints, the model and summary.json.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from prefkit.core.atomic import atomic_path
from prefkit.core.config import setting, to_dict
from prefkit.core.errors import ConfigError
from prefkit.data.schema import Prompt
from prefkit.train.config import RunConfig
from prefkit.train.data_parallel import DataParallel
from prefkit.train.datasets import load_prompts
from prefkit.train.ppo.checkpoint import STATE_FILE, load_checkpoint, save_checkpoint
from prefkit.train.ppo.model import (
    LOGIT_CHUNK_TOKENS,
    POLICY,
    REF,
    VALUE,
    ValueHead,
    build_policy_and_value,
    forward,
    token_logprobs,
)
from prefkit.train.ppo.rollout import Rollout, batch_prompts, rollout
from prefkit.train.ppo.update import ppo_update
from prefkit.train.scoring import RewardFn, RewardSection, load_reward

log = logging.getLogger(__name__)

__all__ = [
    "CONFIG",
    "LOGIT_CHUNK_TOKENS",
    "POLICY",
    "REF",
    "STATE_FILE",
    "VALUE",
    "PpoConfig",
    "PpoTrainer",
    "Rollout",
    "ValueHead",
    "run",
    "token_logprobs",
]


@dataclass
class PpoConfig(RunConfig):
    """PPO settings on top of the shared run settings.

    `batch_size` is prompts per rollout (per process: N processes sample N × batch_size);
    `max_steps` counts rollouts (PPO iterations); each rollout is trained `ppo_epochs` times in
    mini-batches of `mini_batch_size` (per process), one optimizer step per `grad_accum`
    mini-batches. Prompts come from `data.source` (any prompt format).
    """

    reward: RewardSection = setting(help="Where rewards come from (see RewardSection).", factory=RewardSection)
    max_new_tokens: int = setting(64, "Most new tokens per rollout answer.")
    temperature: float = setting(1.0, "Rollout sampling temperature.")
    top_k: int = setting(0, "Rollout top-k (0: off).")
    top_p: float = setting(1.0, "Rollout nucleus sampling top-p.")
    mini_batch_size: int = setting(4, "Rollout rows per PPO mini-batch (per process).")
    ppo_epochs: int = setting(4, "PPO passes over each rollout.")
    kl_coef: float = setting(0.05, "Per-token KL penalty -kl_coef·(log π − log π_ref) added to the rewards.")
    gamma: float = setting(1.0, "GAE discount.")
    lam: float = setting(0.95, "GAE lambda.")
    cliprange: float = setting(0.2, "Policy ratio clipping.")
    cliprange_value: float = setting(0.2, "Value clipping around the rollout's values.")
    vf_coef: float = setting(0.1, "Weight of the value loss.")
    whiten: Literal["none", "sequence", "tokens"] = setting(
        "none",
        "Whitening of the reward before GAE: `sequence` (Llama 2) standardises the final score over the "
        "rollout batch before the per-token KL penalty is added; `tokens` whitens the per-token KL-penalised "
        "rewards, mean kept (TRL's `whiten_rewards`, length-biased); `none` leaves them as they are.",
    )
    whiten_rewards: bool | None = setting(None, "Replaced by `whiten`; kept only to name the replacement.")
    rollout_batch_size: int | None = setting(None, "Prompts generated at once (None: batch_size).")
    forward_batch_size: int | None = setting(None, "Rows per forward pass, rollout and loss (None: mini_batch_size).")
    missing_eos_penalty: float | None = setting(None, "Subtracted from the score of a response that never ended.")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm (0: none).")
    lr: float = setting(1e-5, "Peak learning rate.")
    logging_steps: int = setting(1, "Log the metrics every N rollouts.")
    save_steps: int = setting(20, "Save a checkpoint every N rollouts.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lora.enabled:
            raise ConfigError("ppo needs lora.enabled: the reference policy is the base with the adapters disabled")
        if self.batch_size % self.mini_batch_size:
            raise ConfigError(
                f"batch_size ({self.batch_size}) must be a multiple of mini_batch_size ({self.mini_batch_size})"
            )
        if self.temperature <= 0:
            raise ConfigError("temperature must be > 0 (PPO samples)")
        if self.whiten_rewards is not None:
            raise ConfigError(
                f"whiten_rewards: {str(self.whiten_rewards).lower()} is replaced by whiten: sequence (Llama 2: the "
                "final score whitened over the batch), tokens (the old whiten_rewards: true, as TRL) or none "
                "(the old false)"
            )
        for name in ("rollout_batch_size", "forward_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 (or null)")


def build_optimizer(cfg: PpoConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer `cfg.optim` names, with `lr`, `adam_beta1`, `adam_beta2` and `weight_decay`, built
    by the same transformers code that builds it for the TRL stages (`Trainer.get_optimizer_cls_and_kwargs`),
    so an optimizer name means the same thing in every stage (Llama 2's PPO: AdamW with β2 = 0.95)."""
    from types import SimpleNamespace

    from transformers import Trainer

    # the fields transformers' optimizer handlers read (a TrainingArguments would reset accelerate's state)
    args: Any = SimpleNamespace(
        optim=cfg.optim,
        learning_rate=cfg.lr,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        adam_epsilon=1e-8,
        weight_decay=cfg.weight_decay,
        warmup_steps=0,
        optim_args=None,
        optim_target_modules=None,
    )
    try:
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    except ImportError as e:
        raise ConfigError(f"optim: {cfg.optim}: {e}") from None
    except (AttributeError, ValueError, TypeError) as e:
        raise ConfigError(
            f"optim: {cfg.optim} is not supported by ppo (use adamw_torch, adafactor, ...): {e}"
        ) from None
    return optimizer_cls([{"params": params, "weight_decay": cfg.weight_decay}], **kwargs)


class PpoTrainer:
    """Build with a config (and optionally a reward function / prompts for tests), then `train()`."""

    def __init__(
        self, cfg: PpoConfig, *, reward_fn: RewardFn | None = None, prompts: list[Prompt] | None = None
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        from transformers import get_scheduler

        from prefkit.train.models import (
            check_save_mode,
            is_quantized,
            load_tokenizer,
            sharded_run,
            use_bf16,
        )

        check_save_mode(cfg)
        if sharded_run():
            raise ConfigError(
                "ppo runs data-parallel with whole copies of the weights (accelerate launch --multi_gpu "
                "--num_processes N); DeepSpeed and FSDP configs are not supported for ppo"
            )
        self.cfg = cfg
        set_seed(cfg.seed)
        self.accelerator = Accelerator(
            mixed_precision="bf16" if use_bf16(cfg) else "no",
            log_with=None if cfg.report_to == "none" else cfg.report_to,
            project_dir=str(cfg.output_dir),
            cpu=not torch.cuda.is_available(),
        )
        self.dp = DataParallel(self.accelerator)
        self.prompts = prompts if prompts is not None else load_prompts(cfg.data)
        self.tokenizer = load_tokenizer(cfg, padding_side="left")
        model, self.ref_adapter, value_head = build_policy_and_value(cfg)
        device = self.accelerator.device
        # no DDP wrapper: the gradients are summed by `DataParallel` (see train/data_parallel.py)
        self.model = model if is_quantized(model.get_base_model()) else model.to(device)  # 4-bit: placed on loading
        self.value_head = value_head.to(device)
        params = [p for p in self.model.parameters() if p.requires_grad] + list(self.value_head.parameters())
        self.dp.broadcast(params)  # every process starts from the main process's adapters and head
        self.optimizer = build_optimizer(cfg, params)
        self.total_steps = self._total_steps()
        minibatches = cfg.batch_size // cfg.mini_batch_size
        opt_steps = self.total_steps * cfg.ppo_epochs * math.ceil(minibatches / cfg.grad_accum)
        self.scheduler = get_scheduler(
            cfg.lr_scheduler,
            self.optimizer,
            num_warmup_steps=int(cfg.warmup if cfg.warmup >= 1 else cfg.warmup * opt_steps),
            num_training_steps=opt_steps,
        )
        self.reward_fn = reward_fn or load_reward(cfg.reward)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.tokens = 0
        self.weight_digests: list[str] = []

    # ---------------------------------------------------------------------------------- setup

    def _total_steps(self) -> int:
        if self.cfg.max_steps > 0:
            return self.cfg.max_steps
        per_step = self.cfg.batch_size * self.dp.world_size
        return max(1, math.ceil(self.cfg.epochs * len(self.prompts) / per_step))

    def _batch_prompts(self, step: int) -> list[Prompt]:
        """This process's prompts of rollout `step` (`ppo_rollout.batch_prompts`)."""
        return self._step_batch(step)[0]

    def _step_batch(self, step: int) -> tuple[list[Prompt], int]:
        return batch_prompts(
            self.prompts, step, self.cfg.batch_size, self.cfg.seed, rank=self.dp.rank, world_size=self.dp.world_size
        )

    @property
    def _peft(self) -> Any:
        return self.model

    @property
    def forward_batch_size(self) -> int:
        return self.cfg.forward_batch_size or self.cfg.mini_batch_size

    # ------------------------------------------------------------------------------ forwards

    def _forward(
        self,
        query: torch.Tensor,
        query_mask: torch.Tensor,
        response: torch.Tensor,
        mask: torch.Tensor,
        adapter: str | None,
        *,
        entropy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`ppo_model.forward` under `adapter` (POLICY, REF, VALUE, or None: the adapters disabled)."""
        return forward(
            self.model,
            self.value_head,
            query,
            query_mask,
            response,
            mask,
            adapter,
            temperature=self.cfg.temperature,
            autocast=self.accelerator.autocast,
            entropy=entropy,
        )

    def _chunked(
        self,
        query: torch.Tensor,
        query_mask: torch.Tensor,
        response: torch.Tensor,
        mask: torch.Tensor,
        adapter: str | None,
        *,
        entropy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`_forward` over all rows, `forward_batch_size` rows at a time (the rollout's no-grad passes)."""
        step = self.forward_batch_size
        outs: list[torch.Tensor] = []
        ents: list[Any] = []
        for i in range(0, response.shape[0], step):
            sl = slice(i, i + step)
            out, ent = self._forward(query[sl], query_mask[sl], response[sl], mask[sl], adapter, entropy=entropy)
            outs.append(out)
            ents.append(ent)
        return torch.cat(outs), (torch.cat(ents) if entropy else None)

    # ------------------------------------------------------------------------ rollout, update

    def rollout(self, prompts: list[Prompt], *, step: int | None = None, first_row: int = 0) -> Rollout:
        """Sample, score and compute advantages for `prompts` (`ppo_rollout.rollout`); the draws are
        keyed by (seed, `step` (default: the current one), `first_row` + row)."""
        return rollout(self, prompts, self.step if step is None else step, first_row)

    def ppo_update(self, ro: Rollout) -> dict[str, float]:
        """`ppo_epochs` passes of clipped policy and value losses over shuffled mini-batches (`ppo_update`)."""
        return ppo_update(self, ro)

    def train(self) -> dict[str, Any]:
        """Run to `total_steps` rollouts (resuming when asked); write the model and summary.json."""
        from prefkit.train.models import FINAL_DIR, resolve_resume

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
            prompts, first_row = self._step_batch(self.step)
            ro = self.rollout(prompts, first_row=first_row)
            stats = {**ro.stats, **self.ppo_update(ro)}
            self.step += 1
            stats.update(step=self.step, lr=self.scheduler.get_last_lr()[0], step_s=time.perf_counter() - ts)
            self.history.append(stats)
            if self.step % cfg.logging_steps == 0 or self.step == self.total_steps:
                self.accelerator.log({k: v for k, v in stats.items() if k != "step"}, step=self.step)
                if self.accelerator.is_main_process:
                    log.info(" ".join(f"{k}={v:.4g}" for k, v in stats.items()))
            if cfg.save_steps > 0 and self.step % cfg.save_steps == 0 and self.step < self.total_steps:
                self.save_checkpoint()
        train_s = time.perf_counter() - t0
        self.weight_digests = self.dp.digests(self._trained_tensors())  # before a merged save changes the model
        model_dir = self.save_final(Path(cfg.output_dir) / FINAL_DIR)
        summary = self._write_summary(model_dir, first_step, first_tokens, train_s, started)
        self.accelerator.end_training()  # last: it ends the process group too
        return summary

    # ----------------------------------------------------------------------- saving, resuming

    def save_checkpoint(self) -> Path:
        """`checkpoint-<step>/`: both adapters, value head, optimizer, scheduler, RNG, history (`ppo_checkpoint`)."""
        return save_checkpoint(self)

    def load_checkpoint(self, path: Path) -> None:
        load_checkpoint(self, path)

    def save_final(self, target: Path) -> Path:
        """The policy adapter (over the bare `model.path`, also when the run continued `model.adapter`),
        or with `save: merged` a full model: merged at full precision, from a fresh bf16/fp32 copy of
        `model.path` under QLoRA, never from the 4-bit one (`prefkit.train.models.save_model_final`).
        Written by the main process; every process must call it."""
        from prefkit.train.models import save_model_final

        if self.accelerator.is_main_process:
            with atomic_path(target, directory=True) as tmp:
                save_model_final(self._peft, self.cfg, tmp, adapter_name=POLICY)
                self.tokenizer.save_pretrained(tmp)
        self.dp.barrier()
        return target

    def _trained_tensors(self) -> list[torch.Tensor]:
        """The trained adapters' and value head's weights (what every process must hold alike)."""
        return [p for n, p in self.model.named_parameters() if f".{POLICY}." in n or f".{VALUE}." in n] + list(
            self.value_head.parameters()
        )

    def _write_summary(
        self, model_dir: Path, first_step: int, first_tokens: int, train_s: float, started: float
    ) -> dict[str, Any]:
        import transformers

        from prefkit.train.summary import write_summary

        steps = self.step - first_step
        first = self.history[0] if self.history else {}
        last = self.history[-1] if self.history else {}
        summary = {
            "stage": "ppo",
            "output_dir": str(self.cfg.output_dir),
            "model_dir": str(model_dir),
            "metrics": {k: last.get(k) for k in ("reward", "kl", "entropy", "clipfrac", "value_loss", "policy_loss")}
            | {"first_reward": first.get("reward"), "resumed_from_step": first_step or None},
            "losses": {
                "train": [
                    {"step": h["step"], "loss": h["policy_loss"] + self.cfg.vf_coef * h["value_loss"]}
                    for h in self.history
                ]
            },
            "steps": self.step,
            "durations": {"train_s": train_s, "total_s": time.perf_counter() - started},
            "steps_per_s": steps / train_s if train_s > 0 else 0.0,
            "tokens": self.tokens - first_tokens,  # this session's, all processes', like the other stages
            "tokens_per_s": (self.tokens - first_tokens) / train_s if train_s > 0 else 0.0,
            "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
            # the processes' share of each rollout and a digest of each one's trained weights (all equal)
            "data_parallel": {
                "world_size": self.dp.world_size,
                "rollouts_per_process": self.cfg.batch_size,
                "weights_sha256": self.weight_digests,
            },
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
    from prefkit.train.output_dir import claim_output_dir

    claim_output_dir(cfg, "ppo")
    return PpoTrainer(cfg, reward_fn=reward_fn, prompts=prompts).train()
