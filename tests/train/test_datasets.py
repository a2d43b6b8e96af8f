"""Reading exported datasets into what each trainer wants, and the errors bad data gives."""

from __future__ import annotations

import json

import pytest

from prefkit.core.errors import DataError
from prefkit.data.schema import MARGINS, MarginScheme, Strength
from prefkit.train.config import DataConfig
from prefkit.train.datasets import load_split, margins, preference_dataset, sft_dataset


def test_exported_folder_gives_train_and_test(marker_dataset):
    cfg = DataConfig(source=str(marker_dataset))
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert len(train) + len(test) == 160 and len(test) > 0
    assert not set(train["question"]) & set(test["question"])  # split by prompt
    with pytest.raises(DataError, match="no split 'dev'"):
        load_split(cfg, "dev")


def test_split_placeholder_and_per_split_files(memorise_dataset):
    by_placeholder = load_split(DataConfig(source=str(memorise_dataset / "jsonl" / "{split}.jsonl")), "test")
    by_folder = load_split(DataConfig(source=str(memorise_dataset / "jsonl")), "test")
    assert by_placeholder["question"] == by_folder["question"] and len(by_folder) == 1


def test_single_file_has_no_test_split(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"question": "q", "chosen": "a", "rejected": "b"}) + "\n")
    cfg = DataConfig(source=str(f))
    assert len(load_split(cfg, "train")) == 1
    with pytest.raises(DataError, match=r"pairs\.jsonl.*test_split=null"):
        load_split(cfg, "test")


def test_missing_column_names_the_file_and_column(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"question": "q", "chosen": "a", "worse": "b"}) + "\n")
    cfg = DataConfig(source=str(f))
    with pytest.raises(DataError, match=r"pairs\.jsonl, field 'rejected': missing column\(s\) rejected"):
        preference_dataset(load_split(cfg, "train"), cfg)
    sft_dataset(load_split(cfg, "train"), cfg)  # SFT needs only question + chosen


def test_empty_field_names_its_row(tmp_path):
    f = tmp_path / "pairs.jsonl"
    rows = [{"question": "q1", "chosen": "a", "rejected": "b"}, {"question": "q2", "chosen": "  ", "rejected": "b"}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(source=str(f))
    with pytest.raises(DataError, match=r"row 1, field 'chosen'"):
        preference_dataset(load_split(cfg, "train"), cfg)


def test_margins_follow_strength_and_scheme(marker_dataset):
    cfg = DataConfig(source=str(marker_dataset))
    ds = load_split(cfg, "train")
    levels = [Strength.parse(s) for s in ds["strength"]]
    for scheme in MarginScheme:
        assert margins(ds, cfg, scheme.value) == [MARGINS[scheme][s] for s in levels]
    # the export used "small": the column scheme reads those numbers back
    assert margins(ds, cfg, "column") == pytest.approx([MARGINS[MarginScheme.SMALL][s] for s in levels])


def test_bad_strength_names_its_row(tmp_path):
    f = tmp_path / "pairs.jsonl"
    rows = [{"question": "q", "chosen": "a", "rejected": "b", "strength": s} for s in ("better", "much better")]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(source=str(f))
    with pytest.raises(DataError, match=r"row 1, field 'strength'.*not a strength"):
        margins(load_split(cfg, "train"), cfg, "small")


def test_rows_become_chat_conversations(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(
        json.dumps({"question": "Hỏi?", "chosen": "Đáp. Cảm ơn!", "rejected": "Đáp.", "system": "Hệ thống."}) + "\n"
    )
    cfg = DataConfig(source=str(f))
    ds = load_split(cfg, "train")
    assert sft_dataset(ds, cfg)[0]["messages"] == [
        {"role": "system", "content": "Hệ thống."},
        {"role": "user", "content": "Hỏi?"},
        {"role": "assistant", "content": "Đáp. Cảm ơn!"},
    ]
    row = preference_dataset(ds, cfg, margin_scheme="large")[0]
    assert row["prompt"][-1] == {"role": "user", "content": "Hỏi?"}
    assert row["rejected"] == [{"role": "assistant", "content": "Đáp."}]
    assert row["margin"] == 0.0 and row["strength"] is None  # no strength: no margin


def test_gzipped_jsonl_parquet_export_and_shard_folders_load_like_data_reads_them(tmp_path, make_marker_rows):
    """Sources resolve through prefkit.data.sources: .jsonl.gz, the export's data/<split>-*.parquet,
    a folder of shards."""
    import gzip

    import pandas as pd

    from prefkit.data.export import export_dataset

    rows = [r.to_record() for r in make_marker_rows(6)]
    gz = tmp_path / "pairs.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    assert load_split(DataConfig(source=str(gz)), "train")["question"] == [r["question"] for r in rows]

    export_dataset(make_marker_rows(20), tmp_path / "ds", test_size=0.25, seed=1, parquet=True)
    on_disk = DataConfig(source=str(tmp_path / "ds"))
    shards = DataConfig(source=str(tmp_path / "ds" / "data"))
    for split in ("train", "test"):
        assert load_split(shards, split)["question"] == load_split(on_disk, split)["question"]

    folder = tmp_path / "shards"
    folder.mkdir()
    pd.DataFrame(rows[:4]).to_parquet(folder / "shard-00000.parquet")
    pd.DataFrame(rows[4:]).to_parquet(folder / "shard-00001.parquet")
    assert load_split(DataConfig(source=str(folder)), "train")["question"] == [r["question"] for r in rows]


def test_a_broken_line_names_its_file_and_line(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"question": "q", "chosen": "a", "rejected": "b"}) + "\n{not json\n")
    with pytest.raises(DataError, match=r"pairs\.jsonl.*line 2"):
        load_split(DataConfig(source=str(f)), "train")


def test_load_prompts_reads_any_prompt_source_and_caps_rows(tmp_path):
    from prefkit.train.datasets import load_prompts

    f = tmp_path / "prompts.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"Câu hỏi {i}?"}) + "\n" for i in range(5)))
    prompts = load_prompts(DataConfig(source=str(f), max_rows=3))
    assert [p.question for p in prompts] == ["Câu hỏi 0?", "Câu hỏi 1?", "Câu hỏi 2?"]
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match=r"empty\.jsonl: no records"):
        load_prompts(DataConfig(source=str(tmp_path / "empty.jsonl")))


def test_answer_prefix_moves_to_the_prompt_or_is_stripped_and_a_missing_one_is_an_error(tmp_path):
    """`data.answer_prefix` (CarperAI/openai_summarize_comparisons' "TL;DR: " answers): off both answers,
    onto the end of the prompt on a line of its own, or dropped; an answer without it names row and field."""
    f = tmp_path / "pairs.jsonl"
    rows = [{"question": "POST: trời mưa cả ngày. ", "chosen": "TL;DR: mưa.", "rejected": " TL;DR:  nắng"}]
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    move = DataConfig(source=str(f), answer_prefix="TL;DR:")
    moved = preference_dataset(load_split(move, "train"), move)
    assert moved["prompt"][0] == [{"role": "user", "content": "POST: trời mưa cả ngày.\nTL;DR:"}]
    assert moved["chosen"][0][0]["content"] == "mưa." and moved["rejected"][0][0]["content"] == "nắng"
    strip = DataConfig(source=str(f), answer_prefix="TL;DR:", answer_prefix_to="strip")
    stripped = preference_dataset(load_split(strip, "train"), strip)
    assert stripped["prompt"][0][0]["content"] == "POST: trời mưa cả ngày. " and stripped["chosen"] == moved["chosen"]
    assert sft_dataset(load_split(strip, "train"), strip)["messages"][0][-1]["content"] == "mưa."
    rows.append({"question": "q", "chosen": "TL;DR: a", "rejected": "b"})
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"row 1, field 'rejected'.*answer_prefix"):
        preference_dataset(load_split(strip, "train"), strip)
