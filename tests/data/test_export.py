"""Export: DatasetDict round-trips (save_to_disk, Parquet, JSONL), split by prompt, the card."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from prefkit.core.errors import DataError
from prefkit.data.export import export_dataset, split_by_prompt
from prefkit.data.readers import read_preferences
from prefkit.data.schema import EXPORT_COLUMNS, PreferenceRow, Strength


def rows(n_prompts: int = 12, per_prompt: int = 3) -> list[PreferenceRow]:
    levels = list(Strength)
    return [
        PreferenceRow(
            f"Câu hỏi số {p}?",
            f"tốt {p}.{k}",
            f"kém {p}.{k}",
            strength=levels[(p + k) % 4],
            chosen_meta={"model": "m", "temperature": 0.7, "seed": k},
            source="test",
        )
        for p in range(n_prompts)
        for k in range(per_prompt)
    ]


def test_export_round_trips_through_disk_parquet_and_jsonl(tmp_path: Path) -> None:
    src = rows()
    out = tmp_path / "ds"
    dsdict = export_dataset(
        src,
        out,
        test_size=0.25,
        seed=7,
        margin="large",
        parquet=True,
        jsonl=True,
        name="thử nghiệm",
        provenance={"source": "unit test", "format": "vi_alpaca_preference"},
    )
    loaded = datasets.load_from_disk(str(out))
    assert set(loaded) == {"train", "test"}
    assert loaded["train"].features == dsdict["train"].features
    for split, ds in loaded.items():
        assert tuple(ds.column_names) == EXPORT_COLUMNS
        assert ds.features["margin"].dtype == "float64" and ds.features["chosen_seed"].dtype == "int64"
        assert ds.num_rows == dsdict[split].num_rows
        from_parquet = datasets.Dataset.from_parquet(str(out / "data" / f"{split}-00000-of-00001.parquet"))
        assert from_parquet.to_list() == ds.to_list()
        assert [r.to_record() for r in read_preferences(out / "jsonl" / f"{split}.jsonl")] == ds.to_list()
    assert loaded["train"].num_rows + loaded["test"].num_rows == len(src)
    by_id = {r.id: r for r in src}
    for rec in loaded["train"]:
        original = by_id[rec["id"]]
        assert rec["margin"] == Strength(rec["strength"]).margin("large")
        assert (rec["question"], rec["chosen"], rec["chosen_model"]) == (original.question, original.chosen, "m")
    # loads through the card's `configs` too, the way the Hub will
    via_card = datasets.load_dataset(str(out))
    assert via_card["test"].num_rows == loaded["test"].num_rows


def test_no_prompt_in_both_splits_and_split_is_seeded() -> None:
    src = rows(n_prompts=20)
    a, b = split_by_prompt(src, 0.2, seed=3), split_by_prompt(src, 0.2, seed=3)
    assert a == b
    assert {r.question for r in a["train"]}.isdisjoint({r.question for r in a["test"]})
    assert len({r.question for r in a["test"]}) == 4
    assert split_by_prompt(src, 0.2, seed=4)["test"] != a["test"]


@settings(max_examples=60, deadline=None)
@given(
    prompts=st.lists(st.integers(0, 15), min_size=1, max_size=40),
    test_size=st.floats(0, 0.9),
    seed=st.integers(0, 2**16),
)
def test_split_by_prompt_property(prompts: list[int], test_size: float, seed: int) -> None:
    src = [PreferenceRow(f"q{p}", f"c{i}", f"r{i}") for i, p in enumerate(prompts)]
    splits = split_by_prompt(src, test_size, seed)
    train_q = {r.question for r in splits["train"]}
    test_q = {r.question for r in splits["test"]}
    assert train_q.isdisjoint(test_q)
    assert sorted(r.id for s in splits.values() for r in s) == sorted(r.id for r in src)
    assert train_q  # train is never empty
    if test_size > 0 and len(set(prompts)) > 1:
        assert test_q


def test_dataset_card_metadata_and_prose(tmp_path: Path) -> None:
    out = tmp_path / "card"
    provenance = {
        "source": "pairs.parquet",
        "format": "pairs",
        "judgements": "j.jsonl",
        "license": "cc-by-4.0",
        "language": ["vi"],
        "aggregate": {
            "rule": "majority",
            "pairs": 40,
            "judgements": 90,
            "exported": 36,
            "ties_dropped": 3,
            "unsafe_chosen_dropped": 1,
            "unjudged_pairs": 0,
        },
    }
    dsdict = export_dataset(rows(), out, test_size=0.25, seed=1, margin="small", name="vi-pref", provenance=provenance)
    text = (out / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    meta = yaml.safe_load(front)
    assert meta["license"] == "cc-by-4.0" and meta["language"] == ["vi"]
    assert meta["task_categories"] == ["text-generation"] and meta["pretty_name"] == "vi-pref"
    assert [f["name"] for f in meta["dataset_info"]["features"]] == list(EXPORT_COLUMNS)
    assert {s["name"]: s["num_examples"] for s in meta["dataset_info"]["splits"]} == {
        s: ds.num_rows for s, ds in dsdict.items()
    }
    # no --parquet: the card points at the Arrow files that exist, so load_dataset(OUT) works ...
    assert meta["configs"][0]["data_files"] == [
        {"split": "train", "path": "train/data-*.arrow"},
        {"split": "test", "path": "test/data-*.arrow"},
    ]
    assert (
        datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))["test"].num_rows == dsdict["test"].num_rows
    )
    # ... and the pushed card at the Parquet files push_to_hub writes
    from prefkit.data.card import hub_card

    pushed = yaml.safe_load(hub_card(text)[4:].split("\n---\n", 1)[0])
    assert pushed["configs"][0]["data_files"] == [
        {"split": "train", "path": "data/train-*"},
        {"split": "test", "path": "data/test-*"},
    ]
    assert hub_card(text).split("\n---\n", 1)[1] == body
    assert "`majority` rule" in body and "3 ties dropped" in body and "1 dropped as unsafe-chosen" in body
    assert "| better | 0.667 |" in body and "split**: by prompt" in body.lower()
    assert json.loads((out / "prefkit_provenance.json").read_text())["judgements"] == "j.jsonl"
    from huggingface_hub import DatasetCard

    assert DatasetCard(text).data.to_dict()["license"] == "cc-by-4.0"


def test_failed_export_leaves_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    export_dataset(rows(4), out, test_size=0.25, seed=1)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(DataError, match="unknown margin scheme"):
        export_dataset(rows(4), out, margin="huge")
    with pytest.raises(DataError, match="test_size"):
        export_dataset(rows(4), out, test_size=1.5)
    with pytest.raises(DataError, match="nothing to export"):
        export_dataset([], tmp_path / "empty")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_export_judged_card_counts_match_the_aggregation(tmp_path):
    from prefkit.data.export import export_judged
    from prefkit.data.schema import Judgement, Pair, Prompt, Response

    pairs = [
        Pair(Prompt(f"Câu hỏi số {i}?"), Response(f"trả lời tốt {i}", model="m"), Response(f"tệ {i}", model="m"))
        for i in range(4)
    ]
    judgements = [
        Judgement(pairs[0].pair_id, "an", pairs[0].a.id, "better"),
        Judgement(pairs[0].pair_id, "binh", pairs[0].a.id, "significantly_better"),
        Judgement(pairs[1].pair_id, "an", pairs[1].b.id, "slightly_better"),
        Judgement(pairs[2].pair_id, "an", None, "negligibly_better"),  # unsure only: a tie, dropped
    ]
    dsdict, report = export_judged(pairs, judgements, tmp_path / "out", test_size=0.0, provenance={"source": "test"})
    assert (report.pairs, report.judgements, report.exported, report.ties_dropped, report.unjudged_pairs) == (
        4,
        4,
        2,
        1,
        1,
    )
    assert dsdict["train"].num_rows == 2
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "**Aggregation counts**: 4 pairs, 4 judgements, 2 exported, 1 ties dropped" in card
    assert "1 pairs not yet judged" in card
    assert "`4 judgements`" in card and "`mean` rule" in card
