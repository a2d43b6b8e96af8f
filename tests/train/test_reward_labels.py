"""The reward model's soft labels and edit rankings (`prefkit.train.reward_labels`): the loss the real
trainer computes on a batch equals a hand computation from the model's own rewards to 1e-6 —
soft labels −[p·log σ(Δ) + (1−p)·log σ(−Δ)], Δ = r_c − r_r − m, p the share preferring chosen with
unsure counting half; InstructGPT's ranking loss over edited > chosen > rejected — and hard labels
without edits are TRL's own loss. The stage trains end to end with both and says so in its summary."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from prefkit.core.config import load_config
from prefkit.data.export import export_dataset
from prefkit.data.schema import PreferenceRow, Strength
from prefkit.train import reward
from prefkit.train.config import RewardConfig
from prefkit.train.datasets import load_split, preference_dataset
from prefkit.train.reward_labels import PreferenceRewardTrainer, add_label_columns, without_derived

ROWS = [
    PreferenceRow(  # 2 for chosen, 1 unsure: p = (2 + 0.5) / 3
        question="Phở là gì?",
        chosen="Phở là món nước của Việt Nam.",
        rejected="Không biết.",
        strength=Strength.BETTER,
        n_annotators=3,
        agreement=2 / 3,
        votes_chosen=2,
        votes_rejected=0,
        edited="Phở là món bánh phở chan nước dùng bò, một món nổi tiếng của Việt Nam.",
    ),
    PreferenceRow(  # 3 for chosen, 1 for rejected: p = 3 / 4
        question="Thủ đô của Việt Nam?",
        chosen="Hà Nội.",
        rejected="Huế.",
        strength=Strength.SIGNIFICANTLY_BETTER,
        n_annotators=4,
        agreement=0.75,
        votes_chosen=3,
        votes_rejected=1,
    ),
    PreferenceRow(  # no votes (a file without judgements): p = 1
        question="Kể về trà.",
        chosen="Trà là thức uống quen thuộc.",
        rejected="Trà.",
        strength=Strength.SLIGHTLY_BETTER,
    ),
]
SOFT = [2.5 / 3, 0.75, 1.0]


@pytest.fixture(scope="module")
def three_rows(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("three") / "ds"
    export_dataset(ROWS, out, test_size=0.0, seed=0, margin="small", edit_pairs="three")
    return out


def _cfg(tiny_model_path, source, out, *extra: str) -> RewardConfig:
    return load_config(
        RewardConfig,
        None,
        [f"model.path={tiny_model_path}", f"data.source={source}", f"output_dir={out}", "data.test_split=null", *extra],
    )


def _reward(model, tok, prompt, answer: str) -> float:
    ids = tok.apply_chat_template(prompt + [{"role": "assistant", "content": answer}], tokenize=True, return_dict=True)
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids["input_ids"]])).logits[0, 0].item()


def _setup(cfg: RewardConfig, tiny_model_path, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig as TrlRewardConfig

    raw = load_split(cfg.data, "train")
    raw = without_derived(raw) if cfg.edits == "rank" else raw
    ds = add_label_columns(preference_dataset(raw, cfg.data, margin_scheme=cfg.margin), raw, cfg)
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1, dtype=torch.float64)
    model.config.pad_token_id = tok.pad_token_id
    torch.manual_seed(0)
    torch.nn.init.normal_(model.score.weight, std=1.0)  # rewards far from 0, so every term counts
    trainer = PreferenceRewardTrainer(
        label=cfg.label,
        ranking=cfg.edits == "rank",
        model=model,
        args=TrlRewardConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", bf16=False),
        train_dataset=ds,
        processing_class=tok,
    )
    return trainer, model, tok, ds, raw


@pytest.mark.parametrize("edits", ["ignore", "rank"])
@pytest.mark.parametrize("label", ["soft", "hard"])
def test_loss_matches_a_hand_computation(tiny_model_path, three_rows, tmp_path, label, edits):
    cfg = _cfg(tiny_model_path, three_rows, tmp_path / "cfg", f"label={label}", f"edits={edits}", "margin=large")
    trainer, model, tok, ds, raw = _setup(cfg, tiny_model_path, tmp_path)
    rows = {r["question"]: i for i, r in enumerate(raw)}
    assert len(ds) == (3 if edits == "rank" else 5)  # rank: the two pairs made from the edit leave
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ds))])
    loss = trainer.compute_loss(model, dict(batch)).item()

    total = 0.0
    for i in range(len(ds)):
        prompt = ds[i]["prompt"]
        rc = _reward(model, tok, prompt, ds[i]["chosen"][0]["content"])
        rr = _reward(model, tok, prompt, ds[i]["rejected"][0]["content"])
        m = Strength(ds[i]["strength"]).margin("large")
        d = rc - rr - m
        judged = raw[i]["derived_from"] is None
        p = (
            SOFT[[r.question for r in ROWS].index(ds[i]["prompt"][-1]["content"])]
            if label == "soft" and judged
            else 1.0
        )
        term = -(p * math.log(1 / (1 + math.exp(-d))) + (1 - p) * math.log(1 / (1 + math.exp(d))))
        if edits == "rank" and raw[i]["edited"]:
            re_ = _reward(model, tok, prompt, raw[i]["edited"])
            term = (term + math.log1p(math.exp(-(re_ - rc))) + math.log1p(math.exp(-(re_ - rr)))) / 3
        total += term
    expected = total / len(ds)
    assert abs(loss - expected) < 1e-6, (loss, expected)
    assert rows  # every row was read


def test_hard_labels_without_edits_are_trls_own_loss(tiny_model_path, three_rows, tmp_path):
    from trl import RewardTrainer

    cfg = _cfg(tiny_model_path, three_rows, tmp_path / "cfg", "label=soft")
    trainer, model, *_ = _setup(cfg, tiny_model_path, tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    plain = {k: v for k, v in batch.items() if k != "soft_label"}
    trls = RewardTrainer.compute_loss(trainer, model, dict(plain)).item()
    batch["soft_label"] = torch.ones_like(batch["soft_label"])  # every pair unanimous: the hard loss
    assert abs(trainer.compute_loss(model, dict(batch)).item() - trls) < 1e-9


@pytest.mark.slow
def test_the_stage_trains_with_soft_labels_and_rankings(tiny_model_path, make_marker_rows, tmp_path):
    rows = make_marker_rows(40, seed=2)
    for i, r in enumerate(rows):  # overlap and a few edits, as an annotation project would export them
        r.n_annotators, r.votes_chosen, r.votes_rejected = 3, 3 - i % 2, i % 2
        if i % 4 == 0:
            r.edited = r.chosen + " Chúc bạn một ngày tốt lành."
    export_dataset(rows, tmp_path / "ds", test_size=0.25, seed=1, edit_pairs="two")
    cfg = load_config(
        RewardConfig,
        None,
        [
            f"model.path={tiny_model_path}",
            f"data.source={tmp_path / 'ds'}",
            f"output_dir={tmp_path / 'run'}",
            "max_steps=4",
            "batch_size=8",
            "lora.r=4",
            "label=soft",
            "edits=rank",
        ],
    )
    m = reward.run(cfg)["metrics"]
    assert m["label"] == "soft" and m["edits"] == "rank"
    assert m["test_pairs"] == 10  # the pairs made from edits left the test split too
    assert math.isfinite(m["train_loss"]) and m["train_loss"] > 0
