"""Loading models and tokenizers for every stage: device and dtype, LoRA, QLoRA, final saving.

All stages go through here so that a config means the same thing in SFT, reward, DPO and PPO:
`peft_config(cfg)` is the adapter the trainer wraps the model in, `quantization_config(cfg)` the
4-bit base (GPU only), `trainer_kwargs(cfg)` the settings every TRL `*Config` shares.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from data.atomic import atomic_path
from data.errors import ConfigError
from data.hub import check_model_source
from train.config import RunConfig

if TYPE_CHECKING:
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase

FINAL_DIR = "model"  # the final adapter or merged model: <output_dir>/model


def has_cuda() -> bool:
    return torch.cuda.is_available()


def use_bf16(cfg: RunConfig) -> bool:
    """`bf16: auto` means on exactly when a CUDA GPU supports it; `true` on a CPU is an error."""
    supported = has_cuda() and torch.cuda.is_bf16_supported()
    if cfg.bf16 == "auto":
        return supported
    if cfg.bf16 and not supported:
        raise ConfigError("bf16: true needs a CUDA GPU with bf16 support (use bf16: auto or false here)")
    return bool(cfg.bf16)


def model_dtype(cfg: RunConfig) -> torch.dtype:
    """The dtype the weights are loaded in: bf16 with a bf16 run, else fp32 (CPU-safe)."""
    if cfg.model.dtype == "auto":
        return torch.bfloat16 if use_bf16(cfg) else torch.float32
    return getattr(torch, cfg.model.dtype)


def quantization_config(cfg: RunConfig) -> "BitsAndBytesConfig | None":
    """NF4 4-bit base with double quantisation and bf16 compute (QLoRA), or None when not asked."""
    if not cfg.quant.qlora:
        return None
    if not has_cuda():
        raise ConfigError(
            "quant.qlora: true needs a CUDA GPU (bitsandbytes 4-bit); none is visible here. "
            "Set quant.qlora=false to train LoRA in full precision on this machine."
        )
    try:
        import bitsandbytes  # noqa: F401  (only to give a clear error when it is missing)
    except ImportError:
        raise ConfigError("quant.qlora: true needs bitsandbytes: pip install 'prefkit[gpu]'") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.quant.quant_type,
        bnb_4bit_use_double_quant=cfg.quant.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, cfg.quant.compute_dtype),
        # packed weights stored in the compute dtype: what sharded (FSDP) QLoRA needs, harmless on one GPU
        bnb_4bit_quant_storage=getattr(torch, cfg.quant.compute_dtype),
    )


def peft_config(cfg: RunConfig, *, task_type: str = "CAUSAL_LM", modules_to_save: list[str] | None = None) -> "LoraConfig | None":
    """The LoRA adapter from `cfg.lora` (None for full fine-tuning). `modules_to_save` adds to the config's."""
    if not cfg.lora.enabled:
        return None
    from peft import LoraConfig

    targets = cfg.lora.target_modules
    save = list(dict.fromkeys([*(cfg.lora.modules_to_save or []), *(modules_to_save or [])])) or None
    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        # peft wants the string "all-linear", not a one-item list
        target_modules="all-linear" if targets == ["all-linear"] else list(targets),
        modules_to_save=save,
        task_type=task_type,
    )


def _model_kwargs(cfg: RunConfig) -> dict[str, Any]:
    if not cfg.model.path:
        raise ConfigError("model.path is empty: give a local model folder or a Hub id")
    kw: dict[str, Any] = {"dtype": model_dtype(cfg), "trust_remote_code": cfg.model.trust_remote_code}
    if cfg.model.attn_implementation:
        kw["attn_implementation"] = cfg.model.attn_implementation
    quant = quantization_config(cfg)
    if quant is not None:
        from accelerate import PartialState

        kw["quantization_config"] = quant
        kw["device_map"] = {"": PartialState().local_process_index}  # one whole copy per process
    return kw


def _from_pretrained(auto_cls: Any, cfg: RunConfig, **extra: Any) -> "PreTrainedModel":
    check_model_source(cfg.model.path, "model.path")
    try:
        model = auto_cls.from_pretrained(cfg.model.path, **_model_kwargs(cfg), **extra)
    except OSError as e:  # missing folder / not a model / unreachable Hub id
        raise ConfigError(f"model.path {cfg.model.path!r}: cannot load a model: {e}") from None
    if cfg.model.adapter:
        model = _merge_adapter(model, cfg.model.adapter)
    if cfg.quant.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return model


def _merge_adapter(model: "PreTrainedModel", adapter: str) -> "PreTrainedModel":
    """Fold a trained LoRA adapter (e.g. SFT's) into the base, so the next stage starts from it."""
    from peft import PeftConfig, PeftModel

    if not (Path(adapter) / "adapter_config.json").exists() and Path(adapter).exists():
        raise ConfigError(f"model.adapter {adapter!r}: no adapter_config.json there")
    try:
        config = PeftConfig.from_pretrained(adapter)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.adapter {adapter!r}: cannot load a peft adapter: {e}") from None
    # task-agnostic wrapper: lets a causal-LM (SFT) adapter merge into a reward model's trunk too
    config.task_type = None
    return PeftModel.from_pretrained(model, adapter, config=config).merge_and_unload()


def load_tokenizer(cfg: RunConfig, *, padding_side: str | None = None) -> "PreTrainedTokenizerBase":
    """The tokenizer of `model.path`; a pad token is guaranteed (EOS when the model has none)."""
    from transformers import AutoTokenizer

    check_model_source(cfg.model.path, "model.path")
    try:
        tok = AutoTokenizer.from_pretrained(cfg.model.path, trust_remote_code=cfg.model.trust_remote_code)
    except OSError as e:
        raise ConfigError(f"model.path {cfg.model.path!r}: cannot load a tokenizer: {e}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if padding_side:
        tok.padding_side = padding_side
    return tok


def load_policy(cfg: RunConfig) -> "PreTrainedModel":
    """A causal LM from `model.path` (+ merged `model.adapter`), in the run's dtype (4-bit with QLoRA)."""
    from transformers import AutoModelForCausalLM

    model = _from_pretrained(AutoModelForCausalLM, cfg)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = model.config.pad_token_id
    return model


def load_reward_model(cfg: RunConfig, *, pad_token_id: int | None = None) -> "PreTrainedModel":
    """A one-label sequence classifier (the reward model) from `model.path`.

    From a causal-LM checkpoint the `score` head is new (random); train it through
    `peft_config(cfg, task_type="SEQ_CLS", modules_to_save=["score"])`.
    """
    from transformers import AutoModelForSequenceClassification

    model = _from_pretrained(AutoModelForSequenceClassification, cfg, num_labels=1)
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id  # the head reads the last non-pad token
    return model


def resolve_resume(cfg: RunConfig) -> str | None:
    """`resume_from_checkpoint`: a folder, or "latest" (the newest checkpoint in output_dir, if any)."""
    value = cfg.resume_from_checkpoint
    if not value:
        return None
    if value == "latest":
        from transformers.trainer_utils import get_last_checkpoint

        out = Path(cfg.output_dir)
        return get_last_checkpoint(str(out)) if out.is_dir() else None
    if not Path(value).is_dir():
        raise ConfigError(f"resume_from_checkpoint {value!r}: no such checkpoint folder")
    return value


def trainer_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """Arguments every TRL `*Config` (a `TrainingArguments`) takes, from the shared run settings."""
    has_eval = cfg.data.test_split is not None
    check_save_mode(cfg)
    if cfg.report_to != "none" and importlib.util.find_spec(cfg.report_to) is None:
        raise ConfigError(f"report_to: {cfg.report_to} needs the {cfg.report_to} package (pip install {cfg.report_to})")
    return {
        "output_dir": str(cfg.output_dir),
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "max_steps": cfg.max_steps,
        "num_train_epochs": cfg.epochs,
        "learning_rate": cfg.lr,
        "lr_scheduler_type": cfg.lr_scheduler,
        "warmup_steps": cfg.warmup,
        "weight_decay": cfg.weight_decay,
        "per_device_train_batch_size": cfg.batch_size,
        "per_device_eval_batch_size": cfg.eval_batch_size or cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "bf16": use_bf16(cfg),
        "logging_steps": cfg.logging_steps,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "eval_strategy": "steps" if (has_eval and cfg.eval_steps) else "no",
        "eval_steps": cfg.eval_steps if has_eval else None,
        "report_to": cfg.report_to,
        "include_num_input_tokens_seen": "non_padding",  # what ThroughputCallback turns into tokens/s
        "use_cpu": not has_cuda(),
        "disable_tqdm": True,
    }


def saved_as(cfg: RunConfig) -> str:
    """What <output_dir>/model will hold: "adapter" (a LoRA over the bare `model.path`) or "merged".

    A run that started from `model.adapter` trained over a base with that adapter merged in; its own
    adapter is only right over that merged base, so it is saved merged (an adapter folder would be
    loaded over the bare base and score with the wrong weights). Full fine-tuning saves a full model.
    """
    return "adapter" if cfg.lora.enabled and cfg.save == "adapter" and not cfg.model.adapter else "merged"


def sharded_run() -> bool:
    """Launched by `accelerate launch` with a DeepSpeed or FSDP config (weights sharded across ranks)."""
    return any(os.environ.get(v, "false").lower() in ("1", "true") for v in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"))


def check_save_mode(cfg: RunConfig) -> None:
    """Before training: a merged LoRA save cannot be made from sharded weights here (only the adapter would be)."""
    if cfg.lora.enabled and saved_as(cfg) == "merged" and sharded_run():
        why = "save: merged" if cfg.save == "merged" else f"model.adapter {cfg.model.adapter!r} (needs a merged save)"
        raise ConfigError(
            f"{why} under DeepSpeed/FSDP: sharded runs save the adapter only. Use save: adapter and no "
            "model.adapter (merge that adapter into a model folder first), or run without DeepSpeed/FSDP"
        )


def save_final(trainer: Any, cfg: RunConfig) -> Path:
    """Write the final adapter (or merged model, see `saved_as`) and tokenizer to <output_dir>/model, atomically.

    Call it on every process (sharded runs gather weights collectively); only rank 0 writes.
    """
    from peft import PeftModel

    target = Path(cfg.output_dir) / FINAL_DIR
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        # sharded weights (ZeRO-3 / FSDP): every rank must take part in gathering them, so the
        # trainer saves; a merged model is then made from <output_dir>/model after the run
        trainer.save_model(str(target))
        return target
    if not trainer.is_world_process_zero():
        return target
    model = trainer.accelerator.unwrap_model(trainer.model)
    with atomic_path(target, directory=True) as tmp:
        if saved_as(cfg) == "merged" and isinstance(model, PeftModel):
            if cfg.quant.qlora:  # a 4-bit base cannot hold merged weights: merge into a fresh full-precision base
                model = _merged_from_adapter(model, cfg, tmp)
            else:
                model = model.merge_and_unload()
        model.save_pretrained(tmp)
        if trainer.processing_class is not None:
            trainer.processing_class.save_pretrained(tmp)
    return target


def _merged_from_adapter(model: Any, cfg: RunConfig, tmp: Path) -> "PreTrainedModel":
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    adapter_dir = tmp / "_adapter"
    model.save_pretrained(adapter_dir)
    is_seq_cls = model.peft_config["default"].task_type == "SEQ_CLS"
    auto_cls = AutoModelForSequenceClassification if is_seq_cls else AutoModelForCausalLM
    extra = {"num_labels": 1} if is_seq_cls else {}
    base = auto_cls.from_pretrained(cfg.model.path, dtype=getattr(torch, cfg.quant.compute_dtype), **extra)
    if cfg.model.adapter:
        base = _merge_adapter(base, cfg.model.adapter)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    shutil.rmtree(adapter_dir)
    return merged
