"""The margin reward model: its loss is -log σ(r_c − r_r − m), it learns an easy preference
(answers that end with a marker) with held-out accuracy far above chance, reports accuracy per
strength, and `prefkit train score` scores files with it."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def trained(tiny_model_path, marker_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("reward") / "run"
    return reward.run(_cfg(tiny_model_path, marker_dataset, out))


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
def test_reward_model_learns_the_marker_preference(trained):
    m = trained["metrics"]
    assert m["test_pairs"] == 40
    assert m["test_accuracy"] >= 0.9  # chance is 0.5
    assert m["eval_accuracy"] >= 0.9 and m["test_reward_margin"] > 0
    assert set(m["test_accuracy_by_strength"]) == {s.value for s in Strength}
    assert sum(m["test_pairs_by_strength"].values()) == 40
    assert m["eval_loss"] < math.log(2)  # below the loss of a reward model that knows nothing
    # our scoring path agrees with the trainer's own evaluation
    assert m["test_reward_margin"] == pytest.approx(m["eval_reward_margin"], rel=1e-3)


@pytest.mark.slow
def test_reward_run_writes_summary_and_adapter(trained):
    out = trained["output_dir"]
    summary = json.loads((__import__("pathlib").Path(out) / "summary.json").read_text())
    assert summary["stage"] == "reward" and summary["metrics"]["test_accuracy"] == trained["metrics"]["test_accuracy"]
    assert summary["steps"] == 20 and summary["tokens"] > 0 and summary["tokens_per_s"] > 0
    assert summary["losses"]["final_train_loss"] < summary["losses"]["first_train_loss"]
    assert summary["durations"]["train_s"] > 0 and summary["config"]["margin"] == "small"
    model_dir = __import__("pathlib").Path(summary["model_dir"])
    adapter = json.loads((model_dir / "adapter_config.json").read_text())
    assert "score" in adapter["modules_to_save"]  # the new head was trained and saved


@pytest.mark.slow
def test_score_command_scores_pairs_and_responses(trained, make_marker_rows, tmp_path):
    rows = [r.to_record() for r in make_marker_rows(12, seed=7)]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = tmp_path / "scored.jsonl"
    runner = CliRunner()
    result = runner.invoke(app, ["train", "score", "--model", trained["model_dir"], str(pairs), str(out)])
    assert result.exit_code == 0, result.output
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(s["chosen_reward"] > s["rejected_reward"] for s in scored) >= 11
    assert '"accuracy"' in result.output

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
    assert all(c > r for c, r in zip(rewards[0::2], rewards[1::2], strict=True))


def test_score_command_checks_rows_before_loading_a_model(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl, row 0, field 'response'"):
        reward.score_command(tmp_path / "no-model", str(f), tmp_path / "o.jsonl")
    rows = [{"question": "q", "chosen": "a", "rejected": "b", "strength": s} for s in ("better", "way better")]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"row 1, field 'strength'"):
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


@pytest.mark.slow
def test_reward_model_reads_a_marker_not_the_length(tiny_model_path, make_balanced_rows, tmp_path):
    """The marker sits at a random place, in place of a distractor of the same token count, so length
    carries no signal: held-out accuracy (overall and per strength level) must beat the untrained
    model's (same head seed), which is near chance."""
    from transformers import AutoTokenizer

    from prefkit.data.export import export_dataset
    from prefkit.train.models import load_reward_model

    rows = make_balanced_rows(160, seed=0)
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    assert all(len(tok(r.chosen)["input_ids"]) == len(tok(r.rejected)["input_ids"]) for r in rows)
    export_dataset(rows, tmp_path / "ds", test_size=0.25, seed=1, margin="small")
    cfg = _cfg(tiny_model_path, tmp_path / "ds", tmp_path / "run", "max_steps=60", "logging_steps=20")
    test = preference_dataset(load_split(cfg.data, "test"), cfg.data)
    convs = lambda col: [p + c for p, c in zip(test["prompt"], test[col], strict=True)]  # noqa: E731

    torch.manual_seed(cfg.seed)
    untrained = load_reward_model(cfg, pad_token_id=tok.pad_token_id)
    before = reward.pair_metrics(
        reward.score_conversations(untrained, tok, convs("chosen")),
        reward.score_conversations(untrained, tok, convs("rejected")),
        test["strength"],
    )
    m = reward.run(cfg)["metrics"]
    assert m["test_pairs"] == 40
    assert m["test_accuracy"] >= 0.85 and m["test_accuracy"] >= before["accuracy"] + 0.2, (
        before["accuracy"],
        m["test_accuracy"],
    )
    assert set(m["test_accuracy_by_strength"]) == {s.value for s in Strength}
    assert all(acc >= 0.6 for acc in m["test_accuracy_by_strength"].values()), m["test_accuracy_by_strength"]
