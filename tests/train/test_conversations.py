"""Training over whole conversations: the chat template over the history for SFT, reward and DPO
rows, an `export --trl` folder fed to TRL's trainers as it is, Llama 2's sets (`data.set`), and
accuracy per safety bin; on the real hh-rlhf harmless data, a tiny safety reward model."""

from __future__ import annotations

import gzip
from pathlib import Path

import datasets
import pytest

from prefkit.core.config import load_config
from prefkit.core.errors import DataError
from prefkit.data.export import export_dataset, export_sets
from prefkit.data.readers import read_preferences
from prefkit.data.schema import PreferenceRow
from prefkit.train.config import DataConfig, RewardConfig
from prefkit.train.datasets import load_prompts, load_split, preference_dataset, sft_dataset

HISTORY = (("user", "Vì sao trời xanh?"), ("assistant", "Do tán xạ ánh sáng."))


def rows() -> list[PreferenceRow]:
    out = []
    for i in range(12):
        out.append(
            PreferenceRow(
                f"Còn mùa đông thì sao? ({i})",
                f"Vẫn xanh nhưng nhạt hơn {i}.",
                f"Không {i}.",
                system="Ngắn gọn.",
                history=HISTORY if i % 2 else (),
                strength="better",
                adversarial=i % 3 == 0,
                chosen_unsafe=i % 4 == 1,
                rejected_unsafe=i % 4 in (1, 2),
            )
        )
    return out


@pytest.mark.parametrize("trl", [False, True])
def test_rows_carry_the_whole_conversation(tmp_path, trl):
    out = tmp_path / "ds"
    export_dataset(rows(), out, test_size=0.25, seed=1, trl=trl)
    cfg = DataConfig(source=str(out))
    ds = load_split(cfg, "train")
    pref = preference_dataset(ds, cfg, margin_scheme="small")
    sft = sft_dataset(ds, cfg)
    for rec, conv, q in zip(pref, sft["messages"], ds["question"], strict=True):
        multi = q.startswith("Còn") and len(rec["prompt"]) == 4
        if multi:
            assert rec["prompt"] == [
                {"role": "system", "content": "Ngắn gọn."},
                {"role": "user", "content": "Vì sao trời xanh?"},
                {"role": "assistant", "content": "Do tán xạ ánh sáng."},
                {"role": "user", "content": q},
            ]
        assert rec["prompt"][-1] == {"role": "user", "content": q}
        assert rec["chosen"][0]["role"] == "assistant" and isinstance(rec["chosen"][0]["content"], str)
        assert conv[:-1] == rec["prompt"] and conv[-1] == rec["chosen"][0]
    assert any(len(p) == 4 for p in pref["prompt"]) and any(len(p) == 2 for p in pref["prompt"])
    assert set(pref["safety_bin"]) <= {"safe_vs_unsafe", "both_safe", "both_unsafe", "unsafe_vs_safe"}
    # PPO / GRPO / best-of-K prompts keep the history too
    prompts = load_prompts(cfg)
    assert any(p.history == HISTORY for p in prompts)


def test_data_set_selects_llama2_sets(tmp_path):
    export_sets(rows(), tmp_path / "sets", test_size=0.25, seed=1)
    export_dataset(rows(), tmp_path / "plain", test_size=0.25, seed=1)
    whole = [len(load_split(DataConfig(source=str(tmp_path / "plain"), set=None), s)) for s in ("train", "test")]
    for source in ("sets", "plain"):
        safety = [load_split(DataConfig(source=str(tmp_path / source), set="safety"), s) for s in ("train", "test")]
        for ds in safety:
            for a, c, r in zip(ds["adversarial"], ds["chosen_unsafe"], ds["rejected_unsafe"], strict=True):
                assert (a or c or r) and not (c and not r)
        assert 0 < sum(len(d) for d in safety) < sum(whole)
    helpful = [
        len(load_split(DataConfig(source=str(tmp_path / "sets"), set="helpfulness"), s)) for s in ("train", "test")
    ]
    assert sum(helpful) == sum(whole) == 12
    plain_only = tmp_path / "plain-benign"
    export_dataset([PreferenceRow("q?", "a", "b")], plain_only, test_size=0)
    with pytest.raises(DataError, match=r"field 'set'.*adversarial"):
        load_split(DataConfig(source=str(plain_only), set="safety"), "train")


def test_trl_export_feeds_trls_dpo_trainer_as_it_is(tiny_model_path, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    out = tmp_path / "trl"
    export_dataset(rows(), out, test_size=0.25, seed=1, trl=True)
    train = datasets.load_from_disk(str(out))["train"]
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_path),
        args=DPOConfig(
            output_dir=str(tmp_path / "dpo"),
            max_steps=2,
            per_device_train_batch_size=4,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            logging_steps=1,
        ),
        train_dataset=train,
        processing_class=tok,
    )
    # the prompt went through the chat template with its history
    first = trainer.train_dataset[0]
    text = tok.decode(first["prompt_ids"] if "prompt_ids" in first else first["input_ids"])
    assert "<|user|>" in text
    trainer.train()
    assert trainer.state.global_step == 2


def _harmless_file(shared_data: Path, tmp_path: Path, n: int) -> Path:
    with gzip.open(shared_data / "hh_rlhf_harmless_test.jsonl.gz", "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(n)]
    path = tmp_path / "hh-rlhf-harmless.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.mark.slow
def test_tiny_safety_reward_model_on_hh_rlhf_harmless(shared_data, tiny_model_path, tmp_path):
    from prefkit.train import reward

    src = _harmless_file(shared_data, tmp_path, 80)
    export_sets(read_preferences(src), tmp_path / "hh", ("safety",), test_size=0.25, seed=1, trl=True)
    cfg = load_config(
        RewardConfig,
        None,
        [
            f"model.path={tiny_model_path}",
            f"data.source={tmp_path / 'hh'}",
            "data.set=safety",
            f"output_dir={tmp_path / 'rm'}",
            "max_steps=3",
            "batch_size=4",
            "lr=1e-3",
            "save_steps=1000",
            "lora.r=4",
            "lora.dropout=0",
            "data.max_length=512",
            "margin=none",
        ],
    )
    summary = reward.run(cfg)
    m = summary["metrics"]
    assert m["data_set"] == "safety" and m["test_pairs"] == 20 and 0 <= m["test_accuracy"] <= 1
    assert m["test_pairs_by_strength"] == {"none": 20}  # hh-rlhf has no strength
    assert (tmp_path / "rm" / "model" / "adapter_config.json").exists()


def test_reward_reports_accuracy_per_safety_bin(tiny_model_path, tmp_path):
    from prefkit.train import reward

    export_dataset(rows() * 1, tmp_path / "ds", test_size=0.5, seed=2)
    cfg = load_config(
        RewardConfig,
        None,
        [
            f"model.path={tiny_model_path}",
            f"data.source={tmp_path / 'ds'}",
            f"output_dir={tmp_path / 'rm'}",
            "max_steps=1",
            "batch_size=4",
            "save_steps=1000",
            "lora.r=4",
            "lora.dropout=0",
        ],
    )
    m = reward.run(cfg)["metrics"]
    test = load_split(cfg.data, "test")
    expected: dict[str, int] = {}
    for b in test["safety_bin"]:
        expected[b] = expected.get(b, 0) + 1
    assert m["test_pairs_by_safety_bin"] == expected
    assert set(m["test_accuracy_by_safety_bin"]) == set(expected)
    assert all(0 <= v <= 1 for v in m["test_accuracy_by_safety_bin"].values())
