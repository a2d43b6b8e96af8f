"""The margin reward model: its loss is -log σ(r_c − r_r − m), it learns a preference length cannot
tell (a marker word in place of a distractor of the same token count) with held-out accuracy far
above the start model's, reports accuracy per strength, and `prefkit train score` scores files with it."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from prefkit.cli import app
from prefkit.core.config import load_config
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.schema import Strength
from prefkit.train import reward
from prefkit.train.config import RewardConfig
from prefkit.train.datasets import load_split, preference_dataset


def _cfg(tiny_model_path, dataset, out, *extra):
    return load_config(
        RewardConfig,
        None,
        [
            f"model.path={tiny_model_path}",
            f"data.source={dataset}",
            f"output_dir={out}",
            "max_steps=20",
            "lr=3e-3",
            "batch_size=8",
            "logging_steps=5",
            "save_steps=1000",
            "lora.r=8",
            "lora.dropout=0",
            *extra,
        ],
    )


LEARN_STEPS = 30


@pytest.fixture(scope="module")
def trained(tiny_model_path, make_marker_rows, held_out, learning_seed, tmp_path_factory):
    """The reward stage on 160 length-balanced marker pairs (120 train, 40 held out; the data, the
    split, the head and the LoRA init all drawn from `learning_seed`), and the start model's own
    margins on the held-out pairs: the baseline."""
    from transformers import AutoTokenizer, set_seed

    from prefkit.data.export import export_dataset
    from prefkit.train.models import load_reward_model

    root = tmp_path_factory.mktemp(f"reward-seed{learning_seed}")
    export_dataset(
        make_marker_rows(160, seed=learning_seed), root / "ds", test_size=0.25, seed=learning_seed, margin="small"
    )
    cfg = _cfg(
        tiny_model_path,
        root / "ds",
        root / "run",
        f"max_steps={LEARN_STEPS}",
        f"seed={learning_seed}",
    )
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    pairs = held_out.pairs(root / "ds")
    set_seed(cfg.seed)  # as the stage does before it draws the new head: the start model exactly
    before = held_out.reward_margins(load_reward_model(cfg, pad_token_id=tok.pad_token_id), tok, pairs)
    return {**reward.run(cfg), "before": before, "pairs": pairs}


def test_margin_loss_is_minus_log_sigmoid_of_delta_minus_margin(tiny_model_path, marker_dataset, tmp_path):
    """The loss the trainer optimises, on a hand-computed batch: the real RewardTrainer and model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig as TrlRewardConfig
    from trl import RewardTrainer

    cfg = _cfg(tiny_model_path, marker_dataset, tmp_path)
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    ds = preference_dataset(load_split(cfg.data, "train"), cfg.data, margin_scheme="large").select(range(3))
    trainer = RewardTrainer(
        model=model,
        args=TrlRewardConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none"),
        train_dataset=ds,
        processing_class=tok,
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    batch["margin"] = torch.tensor([0.0, 1.0, 3.0])

    # a zero head gives every answer reward 0, so the loss is mean(log(1 + e^m)): by hand
    torch.nn.init.zeros_(model.score.weight)
    loss = trainer.compute_loss(model, dict(batch))
    by_hand = (math.log(2) + math.log(1 + math.e) + math.log(1 + math.e**3)) / 3
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)

    # any head: the loss is -log σ(r_c − r_r − m) of the model's own rewards, and a larger margin costs more
    torch.manual_seed(0)
    torch.nn.init.normal_(model.score.weight, std=1.0)
    with torch.no_grad():
        r = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
    rc, rr = r[:3], r[3:]
    expected = -torch.nn.functional.logsigmoid(rc - rr - batch["margin"]).mean()
    assert trainer.compute_loss(model, dict(batch)).item() == pytest.approx(expected.item(), rel=1e-5)
    batch["margin"] = batch["margin"] + 1
    assert trainer.compute_loss(model, dict(batch)).item() > expected.item()


@pytest.mark.slow
@pytest.mark.seeds(0)
def test_reward_model_learns_the_marker_preference(trained, held_out, record_property):
    """Held-out pairs of equal token count whose chosen answer holds a marker where the rejected one
    holds a distractor (length tells nothing: a length-only or constant scorer ties every pair). The
    saved reward model, scored here one conversation at a time, ranks chosen first in ≥ 0.85 of them
    with at most half the start model's error on the same pairs (the start model: same head seed,
    0.28–0.85 over seeds), ≥ 0.6 at every strength level, a higher mean margin and a lower held-out
    loss than the start model's; the stage's own report agrees.
    Seeds (data, split, head, LoRA, order together; `PREFKIT_TEST_SEEDS=0-19`): 20 of 20 pass."""
    model, tok = reward.load_trained_reward_model(trained["model_dir"])
    after = held_out.reward_margins(model, tok, trained["pairs"])
    acc_after = held_out.learned(trained["before"], after, record_property)[1]
    m = trained["metrics"]
    assert m["test_pairs"] == len(after) == 40
    assert m["test_accuracy"] == pytest.approx(acc_after, abs=1 / 40)  # one pair apart at most (bf16 on a GPU)
    assert m["test_reward_margin"] == pytest.approx(sum(after) / len(after), rel=1e-3, abs=1e-4)
    assert set(m["test_accuracy_by_strength"]) == {s.value for s in Strength}
    assert sum(m["test_pairs_by_strength"].values()) == 40
    assert all(acc >= 0.6 for acc in m["test_accuracy_by_strength"].values()), m["test_accuracy_by_strength"]
    # below the start model's loss on the same pairs and margins (Table 27, small)
    start_loss = [
        -math.log(1 / (1 + math.exp(-(d - TABLE_27["small"][s]))))
        for d, (*_, s) in zip(trained["before"], trained["pairs"], strict=True)
    ]
    assert m["eval_loss"] < sum(start_loss) / len(start_loss), (m["eval_loss"], start_loss)
    # our scoring path agrees with the trainer's own evaluation
    assert m["test_reward_margin"] == pytest.approx(m["eval_reward_margin"], rel=1e-3)


@pytest.mark.slow
def test_reward_run_writes_summary_and_adapter(trained):
    out = trained["output_dir"]
    summary = json.loads((__import__("pathlib").Path(out) / "summary.json").read_text())
    assert summary["stage"] == "reward" and summary["metrics"]["test_accuracy"] == trained["metrics"]["test_accuracy"]
    assert summary["steps"] == LEARN_STEPS and summary["tokens"] > 0 and summary["tokens_per_s"] > 0
    assert summary["losses"]["final_train_loss"] < summary["losses"]["first_train_loss"]
    assert summary["durations"]["train_s"] > 0 and summary["config"]["margin"] == "small"
    model_dir = __import__("pathlib").Path(summary["model_dir"])
    adapter = json.loads((model_dir / "adapter_config.json").read_text())
    assert "score" in adapter["modules_to_save"]  # the new head was trained and saved


@pytest.mark.slow
def test_score_command_scores_pairs_and_responses(trained, make_marker_rows, tmp_path):
    """`prefkit train score` on pairs and on single responses with the trained model: every row kept
    in order, the printed accuracy and sigmoid quantiles those of the written scores, the safety
    threshold table counted from the flags, and a response scored alone as in its pair."""
    rows = [r.to_record() for r in make_marker_rows(12, seed=7)]
    for i, r in enumerate(rows):  # safety flags on some rows: the threshold table counts only those
        r["chosen_unsafe"], r["rejected_unsafe"] = (False, i % 2 == 0) if i < 8 else (None, None)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = tmp_path / "scored.jsonl"
    runner = CliRunner()
    result = runner.invoke(app, ["train", "score", "--model", trained["model_dir"], str(pairs), str(out)])
    assert result.exit_code == 0, result.output
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [{k: s[k] for k in rows[0]} for s in scored] == rows  # every row, in order, with its fields
    printed = json.loads(result.stdout)
    assert printed["pairs"] == 12
    assert printed["accuracy"] == sum(s["chosen_reward"] > s["rejected_reward"] for s in scored) / 12
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    answers = sorted(sig(s[k]) for s in scored for k in ("chosen_reward", "rejected_reward"))
    assert printed["sigmoid_quantiles"]["p50"] == pytest.approx(answers[11]) and len(answers) == 24
    flagged = [(sig(s["chosen_reward"]), False) for s in scored[:8]] + [
        (sig(s["rejected_reward"]), i % 2 == 0) for i, s in enumerate(scored[:8])
    ]
    for row in printed["safety_threshold_table"]:
        below = [unsafe for r, unsafe in flagged if r < row["threshold"]]
        assert row["below"] == len(below) and row["recall"] == pytest.approx(sum(below) / 4)

    responses = tmp_path / "responses.jsonl"
    responses.write_text(
        "".join(
            json.dumps({"question": r["question"], "response": r[k]}, ensure_ascii=False) + "\n"
            for r in rows
            for k in ("chosen", "rejected")
        )
    )
    out2 = tmp_path / "scored.parquet"
    result = runner.invoke(app, ["train", "score", "--model", trained["model_dir"], str(responses), str(out2)])
    assert result.exit_code == 0, result.output
    import pandas as pd

    rewards = pd.read_parquet(out2)["reward"].tolist()
    # one answer at a time, the same scores as in the pairs (how well the model learned is the test above)
    assert rewards[0::2] == pytest.approx([s["chosen_reward"] for s in scored], rel=1e-4, abs=1e-5)
    assert rewards[1::2] == pytest.approx([s["rejected_reward"] for s in scored], rel=1e-4, abs=1e-5)


def test_score_command_checks_rows_before_loading_a_model(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl, row 0, field 'response'"):
        reward.score_command(tmp_path / "no-model", str(f), tmp_path / "o.jsonl")
    rows = [{"question": "q", "chosen": "a", "rejected": "b", "strength": s} for s in ("better", "way better")]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"row 1, field 'strength'"):
        reward.score_command(tmp_path / "no-model", str(f), tmp_path / "o.jsonl")
    rows = [{"question": "q", "chosen": "a", "rejected": "b", "rejected_unsafe": v} for v in (True, "maybe")]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"row 1, field 'rejected_unsafe'"):
        reward.score_command(tmp_path / "no-model", str(f), tmp_path / "o.jsonl")
    assert not (tmp_path / "o.jsonl").exists()


def test_missing_column_and_qlora_on_cpu_fail_before_training(tiny_model_path, tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"question": "q", "chosen": "a", "loser": "b"}) + "\n")
    with pytest.raises(DataError, match="field 'rejected'"):
        reward.run(_cfg(tiny_model_path, f, tmp_path / "o", "data.test_split=null"))
    if not torch.cuda.is_available():
        f.write_text(json.dumps({"question": "q", "chosen": "a", "rejected": "b"}) + "\n")
        with pytest.raises(ConfigError, match="qlora"):
            reward.run(_cfg(tiny_model_path, f, tmp_path / "o", "data.test_split=null", "quant.qlora=true"))
    assert not (tmp_path / "o" / "summary.json").exists()


@pytest.fixture(scope="module")
def sft_like_adapter(tiny_model_path, tmp_path_factory):
    """A causal-LM LoRA adapter with non-zero weights, as the SFT stage saves one (chain: reward_from sft)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    lora = LoraConfig(r=8, lora_alpha=32, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    out = tmp_path_factory.mktemp("sft-adapter") / "model"
    get_peft_model(base, lora).save_pretrained(out)
    return out


def test_reward_from_an_adapter_is_saved_so_scoring_reproduces_its_test_metrics(
    tiny_model_path, marker_dataset, sft_like_adapter, tmp_path
):
    """Started from the SFT adapter, the reward stage keeps training it (as a SEQ_CLS adapter with the
    new head); saved as an adapter over the bare base, scoring the saved folder gives the stage's own
    test accuracy and margin."""
    summary = reward.run(
        _cfg(
            tiny_model_path,
            marker_dataset,
            tmp_path / "run",
            "max_steps=4",
            f"model.adapter={sft_like_adapter}",
            "data.max_rows=24",
        )
    )
    model_dir = summary["model_dir"]
    adapter = json.loads((tmp_path / "run" / "model" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_model_path) and "score" in adapter["modules_to_save"]
    cfg = _cfg(tiny_model_path, marker_dataset, tmp_path, "data.max_rows=24")
    test = load_split(cfg.data, "test")
    test.to_json(tmp_path / "test.jsonl", force_ascii=False)
    result = reward.score_command(
        model_dir, str(tmp_path / "test.jsonl"), tmp_path / "scored.jsonl", max_length=cfg.data.max_length
    )
    m = summary["metrics"]
    assert result["pairs"] == m["test_pairs"] == 24
    assert result["accuracy"] == m["test_accuracy"]
    assert result["reward_margin"] == pytest.approx(m["test_reward_margin"], rel=1e-4, abs=1e-5)


def test_reward_model_scorer_uses_the_gpu_in_bf16_where_there_is_one(tiny_model_path, tmp_path):
    """GRPO/RLOO/best-of-K score through RewardModelScorer: on a GPU it must not sit on the CPU in fp32."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from prefkit.data.schema import Prompt
    from prefkit.train.scoring import RewardModelScorer

    folder = tmp_path / "rm"
    AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_path).save_pretrained(folder)
    scorer = RewardModelScorer(folder)
    gpu = torch.cuda.is_available()
    assert scorer.model.device.type == ("cuda" if gpu else "cpu")
    assert scorer.model.dtype == (torch.bfloat16 if gpu and torch.cuda.is_bf16_supported() else torch.float32)
    scores = scorer([Prompt("Nói về trà."), Prompt("Kể về phở.")], ["Trà ngon.", "Phở ngon."])
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)


# Llama 2, Table 27, written out here (not read from prefkit): the margin of each strength per scheme
TABLE_27 = {
    "none": {s.value: 0.0 for s in Strength},
    "small": {"significantly_better": 1.0, "better": 2 / 3, "slightly_better": 1 / 3, "negligibly_better": 0.0},
    "large": {"significantly_better": 3.0, "better": 2.0, "slightly_better": 1.0, "negligibly_better": 0.0},
}


@pytest.mark.slow
def test_the_stage_trains_with_the_configured_margin_scheme(tiny_model_path, marker_dataset, tmp_path):
    """What `reward.run` hands the trainer, for each scheme: the training loss (one step over all 24
    training pairs, at lr 0 so the saved model is the one that step scored with) and the held-out loss
    both equal mean −log σ(r_c − r_r − m) worked out here from the saved model's scores and Table 27's
    margins of each pair's strength; the schemes' losses differ (the pairs cycle through every strength)."""
    losses = {}
    for scheme in TABLE_27:
        cfg = _cfg(
            tiny_model_path,
            marker_dataset,
            tmp_path / scheme,
            f"margin={scheme}",
            "max_steps=1",
            "lr=0",
            "batch_size=24",
            "data.max_rows=24",
        )
        summary = reward.run(cfg)
        model, tok = reward.load_trained_reward_model(summary["model_dir"])
        for split, key in ((cfg.data.split, "train_loss"), (cfg.data.test_split, "eval_loss")):
            pairs = preference_dataset(load_split(cfg.data, split), cfg.data)
            assert len(pairs) == 24 and len(set(pairs["strength"])) == 4
            chosen, rejected = (
                torch.tensor(
                    reward.score_conversations(
                        model, tok, [p + a for p, a in zip(pairs["prompt"], pairs[col], strict=True)]
                    )
                )
                for col in ("chosen", "rejected")
            )
            margin = torch.tensor([TABLE_27[scheme][s] for s in pairs["strength"]])
            by_hand = -torch.nn.functional.logsigmoid(chosen - rejected - margin).mean().item()
            assert summary["metrics"][key] == pytest.approx(by_hand, rel=1e-4), (scheme, key)
            losses[scheme, key] = by_hand
    for key in ("train_loss", "eval_loss"):
        values = [losses[scheme, key] for scheme in TABLE_27]
        assert min(abs(a - b) for a, b in itertools.combinations(values, 2)) > 0.05, losses
