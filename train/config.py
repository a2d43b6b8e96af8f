"""Typed configs for every training stage, loaded with `prefkit.core.config.load_config` (strict YAML).

Sections shared by all stages (`model`, `lora`, `quant`, `data`) nest inside `RunConfig`, which
holds the trainer settings every stage has; each stage's config extends `RunConfig` with its own
knobs. Address nested keys with dots: `--set lora.r=16 --set data.source=out/ds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prefkit.core.config import setting
from prefkit.core.errors import ConfigError


@dataclass
class ModelConfig:
    """What to start from: a local folder or Hub id, optionally with a peft adapter merged in."""

    path: str = setting("", "The model: a local folder or Hub id.")
    adapter: str | None = setting(None, "A LoRA adapter (e.g. the SFT stage's) merged into `path` before training.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = setting(
        "auto", "Weights' dtype; auto: bf16 on a capable GPU, else fp32."
    )
    trust_remote_code: bool = setting(False, "Run the checkpoint's own code (off: never, unless asked).")
    attn_implementation: str | None = setting(
        None, "Attention kernel, e.g. sdpa or flash_attention_2 (None: transformers' default)."
    )


@dataclass
class LoraSection:
    """peft LoRA settings. `enabled: false` trains all weights (full fine-tuning)."""

    enabled: bool = setting(True, "Train a LoRA adapter (false: full fine-tuning of every weight).")
    r: int = setting(16, "LoRA rank.")
    alpha: int = setting(32, "LoRA alpha (the update is scaled by alpha / r).")
    dropout: float = setting(0.05, "Dropout on the LoRA branch.")
    target_modules: list[str] = setting(
        help="Modules that get an adapter (peft's names; all-linear: every linear layer but the head).",
        factory=lambda: ["all-linear"],
    )
    modules_to_save: list[str] | None = setting(
        None, "Modules trained in full beside the adapter (the reward stage adds its new head, score, itself)."
    )


@dataclass
class QuantConfig:
    """QLoRA: the frozen base in 4-bit NF4 with double quantisation and bf16 compute (GPU only)."""

    qlora: bool = setting(False, "Load the frozen base in 4 bits (bitsandbytes, GPU only); needs lora.enabled.")
    quant_type: Literal["nf4", "fp4"] = setting("nf4", "4-bit data type.")
    double_quant: bool = setting(True, "Quantise the quantisation constants too (saves ~0.4 bits per weight).")
    compute_dtype: Literal["bfloat16", "float16", "float32"] = setting(
        "bfloat16", "Dtype the 4-bit weights are computed in."
    )


@dataclass
class DataConfig:
    """Where the exported preference dataset is and which columns hold what.

    `source` is a `save_to_disk` folder, a Parquet/JSONL/JSON file (or a folder of per-split
    files as `prefkit data export --parquet/--jsonl` writes them), or a Hub id.
    """

    source: str = setting("", "The dataset: a save_to_disk folder, a Parquet/JSONL/JSON file or folder, or a Hub id.")
    split: str = setting("train", "Split to train on.")
    test_split: str | None = setting("test", "Split to evaluate on (None: no evaluation).")
    question_column: str = setting("question", "Column with the prompt.")
    chosen_column: str = setting("chosen", "Column with the preferred answer.")
    rejected_column: str = setting("rejected", "Column with the other answer.")
    system_column: str | None = setting(
        "system", "Column with a row's system prompt, used when the column exists and the row has one."
    )
    strength_column: str = setting("strength", "Column with the preference strength (the reward stage's margins).")
    margin_column: str = setting("margin", "Column with the margin (the reward stage's `margin: column`).")
    max_length: int = setting(512, "Most tokens of prompt + response; longer rows are truncated.")
    max_rows: int | None = setting(None, "Take the first N rows of each split (quick runs).")
    set: Literal["helpfulness", "safety"] | None = setting(
        None,
        "Llama 2's sets: a `data export --sets` folder is entered at this set; on a plain export, "
        "safety keeps the adversarial / flagged pairs (train/datasets.py).",
    )
    system_prompt: str | None = setting(
        None,
        "The system message of every SFT / reward / DPO conversation (a row's own system column wins); "
        "None: no system message. Recorded in the run summary (metrics.system_prompt).",
    )
    answer_prefix: str | None = setting(
        None,
        "Text every chosen and rejected answer starts with, e.g. `TL;DR:` in CarperAI/openai_summarize_comparisons: "
        "taken off each answer and moved or dropped as `answer_prefix_to` says (an answer without it is an error).",
    )
    answer_prefix_to: Literal["prompt", "strip"] = setting(
        "prompt",
        "prompt: the prefix ends the prompt, on a line of its own (where the TL;DR prompts of SFT and PPO have "
        "it, so the reward model is trained on the shape PPO scores); strip: it is dropped.",
    )


@dataclass
class RunConfig:
    """Trainer settings every stage shares. Each stage's config extends this."""

    output_dir: Path = setting(Path("runs/out"), "Folder for checkpoints, the model and summary.json.")
    seed: int = setting(42, "Seed of the run (data order, initialisation, sampling).")
    max_steps: int = setting(-1, "Optimizer steps; > 0 overrides epochs.")
    epochs: float = setting(1.0, "Passes over the training split (when max_steps <= 0).")
    lr: float = setting(2e-4, "Peak learning rate.")
    lr_scheduler: str = setting("linear", "Any transformers SchedulerType: linear, cosine, constant_with_warmup, ...")
    warmup: float = setting(0.0, "Warmup steps (>= 1) or a share of all steps (< 1).")
    weight_decay: float = setting(0.0, "AdamW weight decay.")
    optim: str = setting(
        "adamw_torch", "Any transformers optimizer name: adamw_torch, paged_adamw_8bit (bitsandbytes), adafactor, ..."
    )
    max_grad_norm: float = setting(1.0, "Gradient clipping norm (0: none).")
    adam_beta1: float = setting(0.9, "Adam beta1.")
    adam_beta2: float = setting(0.999, "Adam beta2.")
    batch_size: int = setting(8, "Rows per device per step (before grad_accum).")
    eval_batch_size: int | None = setting(None, "Rows per evaluation batch (None: batch_size).")
    grad_accum: int = setting(1, "Batches accumulated per optimizer step.")
    gradient_checkpointing: bool = setting(False, "Recompute activations in the backward pass (less memory, slower).")
    bf16: bool | Literal["auto"] = setting("auto", "Train in bf16 (auto: on when a GPU supports it).")
    logging_steps: int = setting(10, "Log the metrics every N steps.")
    save_steps: int = setting(500, "Save a checkpoint every N steps.")
    save_total_limit: int | None = setting(2, "Checkpoints kept (the oldest go; None: all).")
    eval_steps: int | None = setting(None, "Evaluate every N steps (None: once, at the end).")
    report_to: Literal["none", "tensorboard", "wandb"] = setting(
        "none", "Where the trainer logs: none, tensorboard or wandb."
    )
    resume_from_checkpoint: str | None = setting(
        None, "A checkpoint folder to continue from, or latest (the newest in output_dir)."
    )
    save: Literal["adapter", "merged"] = setting(
        "adapter", "What the model folder holds: the adapter, or merged (LoRA folded into a full model folder)."
    )
    model: ModelConfig = setting(help="The model to start from (see ModelConfig).", factory=ModelConfig)
    lora: LoraSection = setting(help="LoRA settings (see LoraSection).", factory=LoraSection)
    quant: QuantConfig = setting(help="QLoRA settings (see QuantConfig).", factory=QuantConfig)
    data: DataConfig = setting(help="The dataset and its columns (see DataConfig).", factory=DataConfig)
    audit: Literal["warn", "strict", "off"] = setting(
        "warn",
        "The data audit's red flags before sft, reward and dpo (`prefkit data audit`; read from audit_file): warn "
        "logs them, strict stops with exit 2 naming them, off skips the check.",
    )
    audit_file: str | None = setting(
        None, "The audit to read (None: audit.json in data.source, as `prefkit data export` writes it, when present)."
    )

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

    assistant_only_loss: bool = setting(
        True,
        "Loss on the assistant turn only; a template without {% generation %} markers (Llama 3.x, Qwen, "
        "Gemma) is trained with a variant that renders the same text (prefkit.train.chat_templates).",
    )
    packing: bool = setting(False, "Pack several rows into one sequence of max_length tokens.")
    neftune_noise_alpha: float | None = setting(
        None, "NEFTune embedding noise (None: off), as TrainingArguments has it."
    )
    rouge: bool = setting(False, "ROUGE-1/2/L of generated answers vs chosen on the test split (summarisation sets).")
    rouge_samples: int = setting(64, "Test rows to generate for ROUGE.")
    rouge_max_new_tokens: int = setting(128, "Most new tokens per generated answer for ROUGE.")
    rouge_tokenizer: Literal["standard", "whitespace"] = setting(
        "whitespace",
        "standard: rouge-score's tokenizer + Porter stemming (English, the TL;DR figure); "
        "whitespace: keeps Vietnamese words.",
    )


@dataclass
class RewardConfig(RunConfig):
    """Reward model (one-label sequence classifier) with Llama 2's margin ranking loss.

    `margin`: none / small / large recompute each pair's margin from its `strength` (Llama 2,
    Table 27; rows without a strength get 0); `column` uses the dataset's margin column as is.
    """

    margin: Literal["none", "small", "large", "column"] = setting(
        "small",
        "none, small or large: each pair's margin from its strength (Llama 2, Table 27; no strength: 0); "
        "column: the dataset's margin column as is.",
    )
    center_rewards_coefficient: float | None = setting(
        None,
        "Weight of TRL's centring penalty mean((r_chosen + r_rejected)²), pushing rewards towards mean 0 "
        "(e.g. 0.01; None: off).",
    )
    lr: float = setting(1e-4, "Peak learning rate.")
    label: Literal["hard", "soft"] = setting(
        "hard",
        "hard: chosen is better (Llama 2); soft: the share of annotators who preferred chosen, unsure counting "
        "half, as the target probability: -[p·log σ(Δ−m) + (1−p)·log σ(−(Δ−m))] (train/reward_labels.py).",
    )
    edits: Literal["ignore", "rank"] = setting(
        "ignore",
        "rank: a row with an annotator's edit (the `edited` column) is the ranking edited > chosen > rejected, "
        "trained with InstructGPT's loss over its three comparisons; pairs the export made from edits "
        "(`derived_from`) are then left out. ignore: pairs only.",
    )


@dataclass
class DpoConfig(RunConfig):
    """DPO. With LoRA the reference is the same model with the adapter disabled."""

    beta: float = setting(0.1, "DPO's beta: how far the policy may move from the reference.")
    loss_type: str = setting("sigmoid", "Any of TRL's DPO loss types (sigmoid, ipo, hinge, robust, ...).")
    label_smoothing: float = setting(0.0, "Assumed share of flipped labels (robust / conservative DPO).")
    precompute_ref_log_probs: bool = setting(
        False, "Compute the reference's log-probabilities once before training (less memory during it)."
    )
    lr: float = setting(5e-5, "Peak learning rate.")
    strength: Literal["none", "offset", "weight"] = setting(
        "none",
        "What the annotated strength does (train/pair_terms.py): none (plain DPO); offset: ODPO's "
        "-log σ(β·Δ − m), m = offset_scale × the pair's margin; weight: each pair's loss times a weight from its "
        "level (and agreement), mean 1. Needs loss_type sigmoid.",
    )
    margin: Literal["small", "large", "column"] = setting(
        "small",
        "strength: offset's margin per pair, as the reward stage's: small or large from the strength (Llama 2, "
        "Table 27), or column (the dataset's margin column).",
    )
    offset_scale: float = setting(1.0, "strength: offset: ODPO's α, the offset is α × margin.")
    level_weights: list[float] = setting(
        help="strength: weight: relative weights of negligibly, slightly, better, significantly better "
        "(normalised to mean 1 over the split).",
        factory=lambda: [1.0, 2.0, 3.0, 4.0],
    )
    agreement_weight: bool = setting(
        True, "strength: weight: scale pairs judged by 2+ people by 2p − 1 (p: share preferring chosen)."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.strength != "none" and self.loss_type != "sigmoid":
            raise ConfigError(f"strength: {self.strength} needs loss_type: sigmoid (got {self.loss_type})")
        if len(self.level_weights) != 4 or any(w < 0 for w in self.level_weights):
            raise ConfigError("level_weights needs four weights >= 0 (negligibly, slightly, better, significantly)")


@dataclass
class ScoreConfig:
    """`prefkit train score`: score a file's responses (or pairs) with a trained reward model."""

    question_column: str = setting("question", "Column with the prompt.")
    response_column: str = setting("response", "Column with the response to score (when not pairs).")
    base_model: str | None = setting(None, "Base model for an adapter-only folder (default: from adapter_config.json).")
    batch_size: int = setting(16, "Responses scored per forward pass.")
    max_length: int = setting(1024, "Truncate prompt + response to this many tokens.")


STAGE_CONFIGS: dict[str, type[RunConfig]] = {"sft": SftConfig, "reward": RewardConfig, "dpo": DpoConfig}
