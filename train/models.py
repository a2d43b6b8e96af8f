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

from prefkit.core.atomic import atomic_path
from prefkit.core.errors import ConfigError
from prefkit.core.threads import one_thread_for_small_models
from prefkit.data.hub import check_model_source
from prefkit.train.config import RunConfig

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


def quantization_config(cfg: RunConfig) -> BitsAndBytesConfig | None:
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


def peft_config(
    cfg: RunConfig, *, task_type: str = "CAUSAL_LM", modules_to_save: list[str] | None = None
) -> LoraConfig | None:
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


def continues_adapter(cfg: RunConfig) -> bool:
    """True when the stage keeps training `model.adapter` itself (LoRA or QLoRA started from a previous stage).

    That adapter is loaded trainable (as the seed recipe's `load_adapter(..., is_trainable=True)`), so
    training starts from exactly the previous stage's model, 4-bit base or not; its r/alpha/targets
    are the previous stage's, the `lora` section's are not used. The trainers then get no new
    `peft_config` (see `trainer_peft_config`), and TRL's DPO/GRPO/RLOO keep a frozen copy of the
    adapter named "ref" as their reference: the previous stage's model, not the bare base.
    """
    return bool(cfg.model.adapter) and cfg.lora.enabled


def trainer_peft_config(cfg: RunConfig, **kwargs: Any) -> LoraConfig | None:
    """The `peft_config` to hand a TRL trainer: a new adapter, or None when the model already carries
    the trainable `model.adapter` (`continues_adapter`)."""
    return None if continues_adapter(cfg) else peft_config(cfg, **kwargs)


def _from_pretrained(
    auto_cls: Any,
    cfg: RunConfig,
    *,
    task_type: str = "CAUSAL_LM",
    modules_to_save: list[str] | None = None,
    adapter_name: str = "default",
    **extra: Any,
) -> PreTrainedModel:
    """The base from `model.path` (4-bit with QLoRA), then `model.adapter`: merged at full precision for
    full fine-tuning, else loaded as a trainable adapter named `adapter_name` (never merged into 4-bit)."""
    check_model_source(cfg.model.path, "model.path")
    try:
        model = auto_cls.from_pretrained(cfg.model.path, **_model_kwargs(cfg), **extra)
    except OSError as e:  # missing folder / not a model / unreachable Hub id
        raise ConfigError(f"model.path {cfg.model.path!r}: cannot load a model: {e}") from None
    if cfg.model.adapter and not cfg.lora.enabled:  # full fine-tuning: exact merge (never 4-bit: qlora needs lora)
        model = _merge_adapter(model, cfg.model.adapter)
    if cfg.quant.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    if cfg.model.adapter and continues_adapter(cfg):
        model = load_trainable_adapter(
            model, cfg.model.adapter, task_type=task_type, modules_to_save=modules_to_save, adapter_name=adapter_name
        )
    one_thread_for_small_models(model)
    return model


def _adapter_config(adapter: str) -> Any:
    from peft import PeftConfig

    if not (Path(adapter) / "adapter_config.json").exists() and Path(adapter).exists():
        raise ConfigError(f"model.adapter {adapter!r}: no adapter_config.json there")
    try:
        return PeftConfig.from_pretrained(adapter)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.adapter {adapter!r}: cannot load a peft adapter: {e}") from None


def load_trainable_adapter(
    model: PreTrainedModel,
    adapter: str,
    *,
    task_type: str = "CAUSAL_LM",
    modules_to_save: list[str] | None = None,
    adapter_name: str = "default",
) -> Any:
    """`model` wrapped as a PeftModel whose adapter `adapter_name` is `adapter`, trainable.

    `task_type` may differ from the adapter's own (a causal-LM SFT adapter continued as a reward
    model: "SEQ_CLS", with the new `score` head in `modules_to_save`).
    """
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    config = _adapter_config(adapter)
    config.task_type = task_type
    if modules_to_save:
        config.modules_to_save = list(dict.fromkeys([*(config.modules_to_save or []), *modules_to_save]))
    config.inference_mode = False
    peft_model = get_peft_model(model, config, adapter_name=adapter_name)
    # modules the adapter did not save (a new `score` head) keep their fresh weights
    weights = {**get_peft_model_state_dict(peft_model, adapter_name=adapter_name), **load_peft_weights(adapter)}
    # torch's (missing_keys, unexpected_keys) named tuple; peft annotates it as a bare `namedtuple`
    result: Any = set_peft_model_state_dict(peft_model, weights, adapter_name=adapter_name)
    missing = [k for k in result.missing_keys if f".{adapter_name}." in k and "lora_" in k]
    if missing or result.unexpected_keys:
        raise ConfigError(
            f"model.adapter {adapter!r}: does not fit model.path (missing {missing[:2]}, "
            f"unexpected {list(result.unexpected_keys)[:2]})"
        )
    return peft_model


def is_quantized(model: Any) -> bool:
    """A bitsandbytes 4/8-bit base (merging into it would re-quantise, and round away, the adapter)."""
    return getattr(model, "hf_quantizer", None) is not None or bool(getattr(model, "is_loaded_in_4bit", False))


def _merge_adapter(model: PreTrainedModel, adapter: str) -> PreTrainedModel:
    """Fold a trained LoRA adapter into a full-precision base (full fine-tuning from it, or a merged save)."""
    from peft import PeftModel

    if is_quantized(model):
        raise ConfigError(
            f"model.adapter {adapter!r}: refusing to merge an adapter into a quantised base (it would be rounded away)"
        )
    config = _adapter_config(adapter)
    # task-agnostic wrapper: lets a causal-LM (SFT) adapter merge into a reward model's trunk too
    config.task_type = None
    return PeftModel.from_pretrained(model, adapter, config=config).merge_and_unload()


def load_tokenizer(cfg: RunConfig, *, padding_side: str | None = None) -> PreTrainedTokenizerBase:
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


def load_policy(cfg: RunConfig, *, adapter_name: str = "default") -> PreTrainedModel:
    """A causal LM from `model.path` in the run's dtype (4-bit with QLoRA), with `model.adapter`:
    a PeftModel training that adapter (named `adapter_name`) when LoRA is on, else merged in."""
    from transformers import AutoModelForCausalLM

    model = _from_pretrained(AutoModelForCausalLM, cfg, adapter_name=adapter_name)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = model.config.pad_token_id
    return model


def load_reward_model(cfg: RunConfig, *, pad_token_id: int | None = None) -> PreTrainedModel:
    """A one-label sequence classifier (the reward model) from `model.path`.

    From a causal-LM checkpoint the `score` head is new (random); train it through
    `trainer_peft_config(cfg, task_type="SEQ_CLS", modules_to_save=["score"])`. With `model.adapter`
    and LoRA, that (e.g. SFT) adapter is continued as a SEQ_CLS adapter with `score` trainable.
    """
    from transformers import AutoModelForSequenceClassification

    model = _from_pretrained(
        AutoModelForSequenceClassification, cfg, task_type="SEQ_CLS", modules_to_save=["score"], num_labels=1
    )
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
    if "8bit" in cfg.optim and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"optim: {cfg.optim} needs bitsandbytes (pip install 'prefkit[gpu]'); use adamw_torch here")
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
        "optim": cfg.optim,
        "max_grad_norm": cfg.max_grad_norm,
        "adam_beta1": cfg.adam_beta1,
        "adam_beta2": cfg.adam_beta2,
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

    A run started from `model.adapter` kept training that adapter over the bare base
    (`continues_adapter`), so its adapter save, too, is right over the bare `model.path`.
    Full fine-tuning saves a full model.
    """
    return "adapter" if cfg.lora.enabled and cfg.save == "adapter" else "merged"


def sharded_run() -> bool:
    """Launched by `accelerate launch` with a DeepSpeed or FSDP config (weights sharded across ranks)."""
    return any(
        os.environ.get(v, "false").lower() in ("1", "true") for v in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP")
    )


def check_save_mode(cfg: RunConfig) -> None:
    """Before training: a merged LoRA save cannot be made from sharded weights here (only the adapter would be)."""
    if cfg.lora.enabled and saved_as(cfg) == "merged" and sharded_run():
        raise ConfigError(
            "save: merged under DeepSpeed/FSDP: sharded runs save the adapter only. Use save: adapter "
            "(merge it into a model folder after the run), or run without DeepSpeed/FSDP"
        )


def save_final(trainer: Any, cfg: RunConfig) -> Path:
    """Write the final adapter (or merged model, see `saved_as`) and tokenizer to <output_dir>/model, atomically.

    Call it on every process (sharded runs gather weights collectively); only rank 0 writes.
    """

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
        save_model_final(model, cfg, tmp)
        if trainer.processing_class is not None:
            trainer.processing_class.save_pretrained(tmp)
    return target


def save_model_final(model: Any, cfg: RunConfig, folder: Path, *, adapter_name: str = "default") -> None:
    """Save `model` into `folder`: the adapter `adapter_name` alone (not TRL's "ref" copy, nor PPO's
    value adapter), or merged (`saved_as`). A merged save never comes out of a 4-bit model: the
    adapter is merged into a fresh full-precision base loaded from `model.path`."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        model.save_pretrained(folder)
        return
    if saved_as(cfg) == "adapter":
        model.save_pretrained(str(folder), selected_adapters=[adapter_name])
        _fix_adapter_folder(folder, adapter_name)
        return
    if cfg.quant.qlora or is_quantized(model.get_base_model()):
        merged = _merged_from_adapter(model, cfg, folder, adapter_name=adapter_name)
    else:
        for name in [n for n in model.peft_config if n != adapter_name]:
            model.delete_adapter(name)
        model.set_adapter(adapter_name)
        merged = model.merge_and_unload()
    merged.save_pretrained(folder)


def _fix_adapter_folder(folder: Path, adapter_name: str) -> None:
    """peft writes a non-"default" adapter into <folder>/<name>/: move it up, so the folder is the adapter."""
    sub = Path(folder) / adapter_name
    if adapter_name != "default" and sub.is_dir() and not (Path(folder) / "adapter_config.json").exists():
        for item in sub.iterdir():
            item.rename(Path(folder) / item.name)
        sub.rmdir()


def _merged_from_adapter(model: Any, cfg: RunConfig, tmp: Path, *, adapter_name: str = "default") -> PreTrainedModel:
    """The trained adapter merged into `model.path` loaded afresh in the compute dtype (not 4-bit)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    adapter_dir = tmp / "_adapter"
    model.save_pretrained(adapter_dir, selected_adapters=[adapter_name])
    _fix_adapter_folder(adapter_dir, adapter_name)
    is_seq_cls = model.peft_config[adapter_name].task_type == "SEQ_CLS"
    auto_cls = AutoModelForSequenceClassification if is_seq_cls else AutoModelForCausalLM
    extra = {"num_labels": 1} if is_seq_cls else {}
    base = auto_cls.from_pretrained(
        cfg.model.path,
        dtype=getattr(torch, cfg.quant.compute_dtype),
        trust_remote_code=cfg.model.trust_remote_code,
        **extra,
    )
    # the adapter was trained over the bare model.path (a started-from adapter was continued, not merged)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    shutil.rmtree(adapter_dir)
    return merged
