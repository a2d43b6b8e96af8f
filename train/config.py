"""Typed configs for every training stage, loaded with `data.config.load_config` (strict YAML).

Sections shared by all stages (`model`, `lora`, `quant`, `data`) nest inside `RunConfig`, which
holds the trainer settings every stage has; each stage's config extends `RunConfig` with its own
knobs. Address nested keys with dots: `--set lora.r=16 --set data.source=out/ds`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from data.errors import ConfigError


@dataclass
class ModelConfig:
    """What to start from: a local folder or Hub id, optionally with a peft adapter merged in."""

    path: str = ""
    adapter: str | None = None  # a LoRA adapter (e.g. the SFT stage's) merged into `path` before training
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on a capable GPU, else fp32
    trust_remote_code: bool = False  # off: never run a checkpoint's own code unless asked
    attn_implementation: str | None = None  # e.g. "sdpa", "flash_attention_2"; None: transformers' default


@dataclass
class LoraSection:
    """peft LoRA settings. `enabled: false` trains all weights (full fine-tuning)."""

    enabled: bool = True
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    modules_to_save: list[str] | None = None  # the reward stage adds "score" (its new head) itself


@dataclass
class QuantConfig:
    """QLoRA: the frozen base in 4-bit NF4 with double quantisation and bf16 compute (GPU only)."""

    qlora: bool = False
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


@dataclass
class DataConfig:
    """Where the exported preference dataset is and which columns hold what.

    `source` is a `save_to_disk` folder, a Parquet/JSONL/JSON file (or a folder of per-split
    files as `prefkit data export --parquet/--jsonl` writes them), or a Hub id.
    """

    source: str = ""
    split: str = "train"
    test_split: str | None = "test"  # None: no evaluation
    question_column: str = "question"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"
    system_column: str | None = "system"  # used when the column exists and the row has one
    strength_column: str = "strength"
    margin_column: str = "margin"
    max_length: int = 512  # tokens, prompt + response
    max_rows: int | None = None  # take the first N rows of each split (quick runs)
    # the system message of every SFT / reward / DPO conversation (a row's own `system_column` wins);
    # None: no system message. Recorded in the run summary (`metrics.system_prompt`).
    system_prompt: str | None = None


@dataclass
class RunConfig:
    """Trainer settings every stage shares. Each stage's config extends this."""

    output_dir: Path = Path("runs/out")
    seed: int = 42
    max_steps: int = -1  # > 0 overrides epochs
    epochs: float = 1.0
    lr: float = 2e-4
    lr_scheduler: str = "linear"  # any transformers SchedulerType: linear, cosine, constant_with_warmup, ...
    warmup: float = 0.0  # warmup steps (>= 1) or a share of all steps (< 1)
    weight_decay: float = 0.0
    optim: str = "adamw_torch"  # any transformers optimizer name: adamw_torch, paged_adamw_8bit (bitsandbytes), adafactor, ...
    max_grad_norm: float = 1.0  # gradient clipping (0: none)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    batch_size: int = 8
    eval_batch_size: int | None = None  # None: same as batch_size
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    bf16: bool | Literal["auto"] = "auto"  # auto: on when a GPU supports bf16
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    eval_steps: int | None = None  # None: evaluate once, at the end
    report_to: Literal["none", "tensorboard", "wandb"] = "none"
    resume_from_checkpoint: str | None = None  # a checkpoint folder, or "latest" (newest in output_dir)
    save: Literal["adapter", "merged"] = "adapter"  # merged: LoRA folded into a full model folder
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSection = field(default_factory=LoraSection)
    quant: QuantConfig = field(default_factory=QuantConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if self.quant.qlora and not self.lora.enabled:
            raise ConfigError("quant.qlora needs lora.enabled: a 4-bit base can only be trained through an adapter")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ConfigError("set max_steps > 0 or epochs > 0")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("batch_size and grad_accum must be at least 1")
        from transformers.trainer_utils import SchedulerType
        from transformers.training_args import OptimizerNames

        optims = [o.value for o in OptimizerNames]
        if self.optim not in optims:
            raise ConfigError(f"optim: unknown optimizer {self.optim!r} (known: {', '.join(optims)})")
        schedulers = [t.value for t in SchedulerType]
        if self.lr_scheduler not in schedulers:
            raise ConfigError(f"lr_scheduler: unknown scheduler {self.lr_scheduler!r} (known: {', '.join(schedulers)})")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):
            raise ConfigError("adam_beta1 and adam_beta2 must be in [0, 1)")
        if self.max_grad_norm < 0:
            raise ConfigError("max_grad_norm must be >= 0 (0: no clipping)")


@dataclass
class SftConfig(RunConfig):
    """Supervised fine-tuning on question → chosen with the chat template."""

    # loss on the assistant turn only; a template without {% generation %} markers (Llama 3.x, Qwen,
    # Gemma) is trained with a variant that renders the same text (`train.chat_templates`)
    assistant_only_loss: bool = True
    packing: bool = False
    neftune_noise_alpha: float | None = None  # NEFTune embedding noise (None: off), as TrainingArguments has it
    rouge: bool = False  # ROUGE-1/2/L of generated answers vs `chosen` on the test split (summarisation sets)
    rouge_samples: int = 64  # test rows to generate for ROUGE
    rouge_max_new_tokens: int = 128
    # standard: rouge-score's tokenizer + Porter stemming (English, the TL;DR figure); whitespace: keeps Vietnamese words
    rouge_tokenizer: Literal["standard", "whitespace"] = "whitespace"


@dataclass
class RewardConfig(RunConfig):
    """Reward model (one-label sequence classifier) with Llama 2's margin ranking loss.

    `margin`: none / small / large recompute each pair's margin from its `strength` (Llama 2,
    Table 28; rows without a strength get 0); `column` uses the dataset's margin column as is.
    """

    margin: Literal["none", "small", "large", "column"] = "small"
    center_rewards_coefficient: float | None = None
    lr: float = 1e-4


@dataclass
class DpoConfig(RunConfig):
    """DPO. With LoRA the reference is the same model with the adapter disabled."""

    beta: float = 0.1
    loss_type: str = "sigmoid"  # any of TRL's DPO loss types (sigmoid, ipo, hinge, robust, ...)
    label_smoothing: float = 0.0
    precompute_ref_log_probs: bool = False
    lr: float = 5e-5


STAGE_CONFIGS: dict[str, type[RunConfig]] = {"sft": SftConfig, "reward": RewardConfig, "dpo": DpoConfig}
