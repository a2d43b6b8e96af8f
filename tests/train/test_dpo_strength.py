"""Strength-aware DPO (`prefkit.train.dpo_strength`): the per-pair offset (ODPO) and weight enter the
loss as −w·log σ(β·Δ − m), checked against a hand computation on two pairs to 1e-6 — with LoRA (the
reference is the adapter-less model), without (a second model is the reference), and with the
reference's log-probabilities precomputed — and `strength: none` stays TRL's own loss. Then the
whole stage runs end to end with each mode and reports held-out accuracy per strength level."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from prefkit.core.config import load_config
from prefkit.core.errors import ConfigError
from prefkit.data.export import export_dataset
from prefkit.data.schema import PreferenceRow, Strength
from prefkit.train import dpo
from prefkit.train.config import DpoConfig
from prefkit.train.datasets import load_split, preference_dataset
from prefkit.train.dpo_strength import StrengthDPOTrainer, add_pair_columns

BETA = 0.1  # small enough that float32 log-probs (TRL computes them so) stay within 1e-6 of float64
ROWS = [
    PreferenceRow(
        question="Giải thích phở là gì?",
        chosen="Phở là món bánh phở với nước dùng bò. Cảm ơn bạn!",
        rejected="Phở ngon.",
        strength=Strength.SIGNIFICANTLY_BETTER,
        n_annotators=3,
        agreement=2 / 3,
        votes_chosen=2,
        votes_rejected=1,
    ),
    PreferenceRow(
        question="Kể về Hà Nội.",
        chosen="Hà Nội là thủ đô.",
        rejected="Hà Nội có nhiều hồ và phố cổ rất đẹp.",
        strength=Strength.SLIGHTLY_BETTER,
        n_annotators=2,
        agreement=1.0,
        votes_chosen=2,
        votes_rejected=0,
    ),
]


@pytest.fixture(scope="module")
def two_pairs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two") / "ds"
    export_dataset(ROWS, out, test_size=0.0, seed=0, margin="small")
    return out


def _cfg(tiny_model_path, source, out, *extra: str) -> DpoConfig:
    return load_config(
        DpoConfig,
        None,
        [
            f"model.path={tiny_model_path}",
            f"data.source={source}",
            f"output_dir={out}",
            "data.test_split=null",
            f"beta={BETA}",
            *extra,
        ],
    )


def _sequence_logp(model, tok, prompt, answer) -> float:
    """log π(answer | prompt), summed over the answer's tokens, with the chat template: by hand."""
    n_prompt = len(
        tok.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
    )
    ids = torch.tensor([tok.apply_chat_template(prompt + answer, tokenize=True, return_dict=True)["input_ids"]])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
    return logp.gather(-1, ids[0, 1:, None]).squeeze(-1)[n_prompt - 1 :].sum().item()


def _logps(model, tok, ds) -> list[tuple[float, float]]:
    return [
        (
            _sequence_logp(model, tok, ds[i]["prompt"], ds[i]["chosen"]),
            _sequence_logp(model, tok, ds[i]["prompt"], ds[i]["rejected"]),
        )
        for i in range(len(ds))
    ]


def _by_hand(policy, reference, offsets, weights) -> float:
    """mean_i w_i · −log σ(β·Δ_i − m_i) from the log-probabilities of chosen and rejected."""
    total = 0.0
    for (pc, pr), (rc, rr), m, w in zip(policy, reference, offsets, weights, strict=True):
        total += w * math.log1p(math.exp(-(BETA * ((pc - rc) - (pr - rr)) - m)))
    return total / len(policy)


def _trainer(cfg: DpoConfig, tiny_model_path, tmp_path, *, lora: bool, precompute: bool):
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig

    raw = load_split(cfg.data, "train")
    ds = add_pair_columns(preference_dataset(raw, cfg.data).remove_columns("strength"), raw, cfg)
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    # float64 throughout: the hand computation and the trainer agree to 1e-6 on sums of ~50 log-probs
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float64)
    ref = None
    if not lora:  # full fine-tuning: the policy moves away from its reference before any step
        ref = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float64)
        torch.manual_seed(1)
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(0.05 * torch.randn_like(p))
    trainer = StrengthDPOTrainer(
        strength=cfg.strength,
        model=policy,
        ref_model=ref,
        args=DPOConfig(
            output_dir=str(tmp_path),
            use_cpu=True,
            report_to="none",
            bf16=False,  # as prefkit runs on a CPU (TRL's default would autocast the reference pass to bf16)
            beta=BETA,
            max_length=512,
            precompute_ref_log_probs=precompute,
            per_device_train_batch_size=2,
        ),
        train_dataset=ds,
        processing_class=tok,
        peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear") if lora else None,
    )
    if lora:  # a fresh adapter is the identity: move the policy away from the adapter-less reference
        torch.manual_seed(2)
        with torch.no_grad():
            for name, p in trainer.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(std=0.3)
    return trainer, tok, ds


@pytest.mark.parametrize(("lora", "precompute"), [(True, False), (False, False), (True, True), (False, True)], ids=str)
@pytest.mark.parametrize("strength", ["offset", "weight"])
def test_per_pair_loss_matches_a_hand_computation(tiny_model_path, two_pairs, tmp_path, strength, lora, precompute):
    from transformers import AutoModelForCausalLM

    cfg = _cfg(tiny_model_path, two_pairs, tmp_path / "cfg", f"strength={strength}", "margin=large", "offset_scale=0.5")
    trainer, tok, ds = _trainer(cfg, tiny_model_path, tmp_path, lora=lora, precompute=precompute)
    by_level = {s.level: s for s in Strength}
    levels = list(trainer.train_dataset["pair_level"])
    if strength == "offset":  # α · Llama 2's large margin: significantly better 3, slightly better 1
        offsets = [0.5 * by_level[lv].margin("large") for lv in levels]
        weights = [1.0, 1.0]
        assert sorted(offsets) == [0.5, 1.5]
    else:  # level weights 4 and 2; the 2-of-3 pair times 2·(2/3) − 1 = 1/3; mean 1
        raw = [4.0 / 3.0 if lv == 3 else 2.0 for lv in levels]
        weights = [w / (sum(raw) / 2) for w in raw]
        offsets = [0.0, 0.0]
        assert sorted(weights) == pytest.approx([0.8, 1.2])

    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    loss = trainer.compute_loss(trainer.model, batch).item()

    base = _logps(AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float64), tok, ds)  # start model
    policy = _logps(trainer.model, tok, ds)
    if lora:  # TRL's reference is the adapter disabled: the start model
        with trainer.model.disable_adapter():
            disabled = _logps(trainer.model, tok, ds)
        assert max(abs(a - b) for x, y in zip(disabled, base, strict=True) for a, b in zip(x, y, strict=True)) < 1e-9
    expected = _by_hand(policy, base, offsets, weights)
    assert abs(loss - expected) < 1e-6, (loss, expected)
    # the policy really differs from its reference (the loss is not the Δ = 0 value log(1 + e^m))
    assert abs(expected - sum(w * math.log1p(math.exp(m)) for w, m in zip(weights, offsets, strict=True)) / 2) > 1e-3


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_zero_offsets_and_unit_weights_are_trls_own_loss(tiny_model_path, two_pairs, tmp_path, lora):
    """With every offset 0 and weight 1 the per-pair loss is exactly TRL's sigmoid DPO loss."""
    from trl import DPOTrainer

    cfg = _cfg(tiny_model_path, two_pairs, tmp_path / "cfg", "strength=offset", "offset_scale=0")
    trainer, _, _ = _trainer(cfg, tiny_model_path, tmp_path, lora=lora, precompute=False)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    ours = trainer.compute_loss(trainer.model, dict(batch)).item()
    plain = {k: v for k, v in batch.items() if not k.startswith("pair_")}
    trls = DPOTrainer._compute_loss(trainer, trainer.model, plain, False).item()
    assert abs(ours - trls) < 1e-6 and ours > 0


def test_strength_needs_the_sigmoid_loss(tiny_model_path, two_pairs, tmp_path):
    with pytest.raises(ConfigError, match="loss_type: sigmoid"):
        _cfg(tiny_model_path, two_pairs, tmp_path, "strength=weight", "loss_type=ipo")
    with pytest.raises(ConfigError, match="four weights"):
        _cfg(tiny_model_path, two_pairs, tmp_path, "strength=weight", "level_weights=[1,2]")


@pytest.mark.slow
@pytest.mark.parametrize("strength", ["none", "offset", "weight"])
def test_the_stage_trains_with_each_mode_and_reports_accuracy_per_level(
    tiny_model_path, make_marker_rows, tmp_path, strength
):
    export_dataset(make_marker_rows(48, seed=5), tmp_path / "ds", test_size=0.25, seed=1)
    cfg = load_config(
        DpoConfig,
        None,
        [
            f"model.path={tiny_model_path}",
            f"data.source={tmp_path / 'ds'}",
            f"output_dir={tmp_path / 'run'}",
            "max_steps=6",
            "lr=5e-3",
            "batch_size=8",
            "logging_steps=1",
            "lora.r=8",
            "lora.dropout=0",
            f"strength={strength}",
        ],
    )
    summary = dpo.run(cfg)
    m = summary["metrics"]
    assert m["strength"] == strength
    assert set(m["eval_pairs_by_strength"]) == {s.value for s in Strength}
    assert sum(m["eval_pairs_by_strength"].values()) == 12
    assert 0 <= m["eval_implicit_accuracy"] <= 1
    logged = [h for h in summary["log_history"] if "rewards/margins" in h]
    assert logged and (("pair/offset" in logged[0]) == (strength == "offset"))
    if strength == "weight":
        assert logged[0]["pair/weight"] == pytest.approx(1.0, abs=0.6)  # per-batch mean of mean-1 weights
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["config"]["strength"] == strength
