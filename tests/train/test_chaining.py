"""Stage chaining: a stage started from a previous stage's adapter trains on top of exactly that model,
its DPO reference is that model, and a merged save never comes out of a (4-bit) rounded base.

bitsandbytes 4-bit does not run here, so the 4-bit base is stood in for by rounding every linear
weight to NF4 (block-wise absmax, the 16 NF4 levels of the QLoRA paper), which is what a 4-bit
base computes with after dequantisation. The real QLoRA path is in `test_gpu.py` (marked gpu).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prefkit.core.config import load_config
from prefkit.data.export import export_dataset
from prefkit.train import dpo
from prefkit.train.config import DpoConfig, SftConfig
from prefkit.train.models import load_policy, save_model_final

# The 16 NF4 levels (QLoRA, appendix E; bitsandbytes' table).
NF4 = torch.tensor(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230731010437,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ]
)


def nf4_round(w: torch.Tensor, block: int = 64) -> torch.Tensor:
    """`w` quantised to NF4 and dequantised, block-wise absmax (what a 4-bit base computes with)."""
    flat = w.detach().float().reshape(-1, block)
    scale = flat.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    idx = (flat / scale).unsqueeze(-1).sub(NF4).abs().argmin(dim=-1)
    return (NF4[idx] * scale).reshape(w.shape).to(w.dtype)


def _round_linears(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and "lora_" not in name and module.weight.numel() % 64 == 0:
                module.weight.copy_(nf4_round(module.weight))


@pytest.fixture(scope="module")
def sft_adapter(tiny_model_path, tmp_path_factory) -> Path:
    """A causal-LM LoRA adapter with non-zero weights, saved as the SFT stage saves one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.05,
        target_modules="all-linear",
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    out = tmp_path_factory.mktemp("sft") / "model"
    get_peft_model(base, lora).save_pretrained(out)
    return out


def _logprobs(model, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)


def _sft_model(tiny_model_path, adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_path), adapter)


def test_a_stage_started_from_an_adapter_is_exactly_that_model_and_trains_it(tiny_model_path, sft_adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = load_config(SftConfig, None, [f"model.path={tiny_model_path}", f"model.adapter={sft_adapter}"])
    model = load_policy(cfg)
    assert isinstance(model, PeftModel)
    ids = torch.randint(10, 300, (3, 24), generator=torch.Generator().manual_seed(0))
    want = _logprobs(_sft_model(tiny_model_path, sft_adapter), ids)
    torch.testing.assert_close(_logprobs(model, ids), want, rtol=0, atol=1e-5)
    bare = _logprobs(AutoModelForCausalLM.from_pretrained(tiny_model_path), ids)
    assert (bare - want).abs().max() > 1e-2  # the adapter matters: the check above can fail
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)  # the SFT adapter itself keeps training


@pytest.mark.slow
def test_dpo_from_an_sft_adapter_uses_it_as_reference_and_saves_an_adapter_over_the_base(
    tiny_model_path, sft_adapter, make_marker_rows, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    export_dataset(make_marker_rows(32, seed=3), tmp_path / "ds", test_size=0.25, seed=1)
    cfg = load_config(
        DpoConfig,
        None,
        [
            f"model.path={tiny_model_path}",
            f"model.adapter={sft_adapter}",
            f"data.source={tmp_path / 'ds'}",
            f"output_dir={tmp_path / 'run'}",
            "max_steps=4",
            "lr=5e-3",
            "batch_size=8",
            "logging_steps=1",
        ],
    )
    summary = dpo.run(cfg)
    first = summary["metrics"]["first"]
    # the first step's implicit rewards are β·log(π/π_ref) before any update: exactly 0 when the
    # reference is the starting (SFT) model; with the bare base as reference they are far from 0
    assert abs(first["rewards/chosen"]) < 1e-4 and abs(first["rewards/rejected"]) < 1e-4
    last = summary["metrics"]["last"]
    assert abs(last["rewards/chosen"]) > 1e-3  # and training moved the policy away from it

    model_dir = Path(summary["model_dir"])
    adapter_cfg = json.loads((model_dir / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(tiny_model_path)
    assert not (model_dir / "ref").exists()  # TRL's frozen reference copy is not saved
    ids = torch.randint(10, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_path), model_dir)
    sft = _logprobs(_sft_model(tiny_model_path, sft_adapter), ids)
    moved = (_logprobs(trained, ids) - sft).abs().max()
    # DPO moved the SFT model a little: far less than the SFT adapter differs from the bare base
    bare = _logprobs(AutoModelForCausalLM.from_pretrained(tiny_model_path), ids)
    assert 1e-4 < moved < (bare - sft).abs().max()


def test_merged_qlora_save_comes_from_a_fresh_full_precision_base(tiny_model_path, sft_adapter, tmp_path):
    """A "4-bit" (NF4-rounded) base + trained adapter, saved merged: the saved weights are the
    full-precision base + the adapter's delta, not the rounded base, and never re-rounded."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = load_config(
        SftConfig,
        None,
        [f"model.path={tiny_model_path}", "quant.qlora=true", "save=merged", "quant.compute_dtype=float32"],
    )
    rounded = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    _round_linears(rounded)
    name = "model.layers.0.mlp.down_proj.weight"
    w_rounded = rounded.state_dict()[name].clone()
    model = PeftModel.from_pretrained(rounded, sft_adapter, is_trainable=True)
    model.add_adapter("ref", model.peft_config["default"])  # as TRL's DPO adds one: must not be merged
    save_model_final(model, cfg, tmp_path / "merged")
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    want = _sft_model(tiny_model_path, sft_adapter).merge_and_unload()
    w_saved, w_want = saved.state_dict()[name], want.state_dict()[name]
    torch.testing.assert_close(w_saved, w_want, rtol=0, atol=1e-6)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path).state_dict()[name]
    # the rounded base differs from the full-precision one: the check above can fail
    assert (w_rounded - base).abs().max() > 1e-4


def test_merging_into_an_nf4_base_rounds_most_of_a_lora_update_away(tiny_model_path):
    """Why no adapter is merged into a 4-bit base: the re-quantised merge Q(W + Δ) keeps little of a
    small LoRA update Δ, while the kept adapter (Q(W) + Δ, what QLoRA trained on) keeps all of it."""
    from transformers import AutoModelForCausalLM

    w = AutoModelForCausalLM.from_pretrained(tiny_model_path).state_dict()["model.layers.0.mlp.down_proj.weight"]
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, w.shape[1], generator=g), torch.randn(w.shape[0], 8, generator=g)
    delta = b @ a
    delta *= 0.02 * w.norm() / delta.norm()  # a LoRA update 2% the size of the weight
    kept = (nf4_round(w + delta) - nf4_round(w) - delta).norm() / delta.norm()
    # the rounding error is larger than the update itself (≈3.4x here), so re-quantising loses it
    assert kept > 1.0, kept
