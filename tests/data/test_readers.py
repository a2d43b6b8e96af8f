"""Readers: every format from every container, and a located DataError for each kind of bad input."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefkit.core.errors import DataError
from prefkit.data.readers import (
    canonical_records,
    detect_format,
    read_judgements,
    read_pairs,
    read_preferences,
    read_prompts,
    read_rows,
    source_format,
)
from prefkit.data.schema import Judgement, Pair, Prompt, Response, Strength, content_id
from prefkit.data.writers import write_judgements, write_pairs

HH_SINGLE = {
    "chosen": "\n\nHuman: Làm sao để học tốt?\n\nAssistant: Học đều mỗi ngày.",
    "rejected": "\n\nHuman: Làm sao để học tốt?\n\nAssistant: Không biết.",
}
HH_MULTI = {
    "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: What is 2+2?\n\nAssistant: 4.",
    "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: What is 2+2?\n\nAssistant: 5.",
}


# ------------------------------------------------------------------ format detection


@pytest.mark.parametrize(
    ("columns", "sample", "expected"),
    [
        (["question", "chosen", "rejected", "strength"], None, "vi_alpaca_preference"),
        (["instruction", "input", "output"], None, "alpaca"),
        (["prompt", "response"], None, "prompt_response"),
        (["chosen", "rejected"], HH_SINGLE, "hh_rlhf"),
        (["chosen", "rejected"], {"chosen": [{"role": "user", "content": "x"}]}, "trl_preference"),
        (["prompt", "chosen", "rejected"], None, "trl_preference"),
        (list(Pair(Prompt("q"), Response("a"), Response("b")).to_row()), None, "pairs"),
        (["pair_id", "annotator", "preferred", "strength"], None, "judgements"),
        (["question"], None, "prompts"),
    ],
)
def test_detect_format(columns: list[str], sample: dict | None, expected: str) -> None:
    assert detect_format(columns, sample) == expected


def test_detect_format_names_the_columns_it_cannot_place() -> None:
    with pytest.raises(DataError, match=r"unknown format: columns \['x', 'y'\]"):
        detect_format(["x", "y"], file="f.jsonl")


# ------------------------------------------------------------------ formats


def test_vi_alpaca_preference(vi_file: Path, vi_rows: list[dict]) -> None:
    rows = read_preferences(vi_file)
    assert [r.question for r in rows] == [r["question"] for r in vi_rows]
    assert rows[0].strength is Strength.SIGNIFICANTLY_BETTER and rows[3].strength is None
    pairs = read_pairs(vi_file)
    assert pairs[1].a.text == "2 + 2 = 4." and pairs[1].b.text == "5."
    assert [p.question for p in read_prompts(vi_file)] == [r["question"] for r in vi_rows]


def test_alpaca_joins_instruction_and_input(write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl(
        [
            {"instruction": "Dịch sang tiếng Anh.", "input": "Xin chào", "output": "Hello"},
            {"instruction": "Kể một câu chuyện.", "input": "", "output": "Ngày xưa…"},
        ]
    )
    assert [p.question for p in read_prompts(path)] == ["Dịch sang tiếng Anh.\n\nXin chào", "Kể một câu chuyện."]
    fmt, recs = canonical_records(path)
    assert fmt == "alpaca" and [r["response"] for _, r in recs] == ["Hello", "Ngày xưa…"]
    with pytest.raises(DataError, match="no preference labels"):
        read_preferences(path)


def test_prompt_response_and_repeated_prompts_read_once(write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl(
        [{"prompt": "A?", "response": "a"}, {"prompt": "B?", "response": "b"}, {"prompt": "A?", "response": "c"}]
    )
    assert [p.question for p in read_prompts(path)] == ["A?", "B?"]


def test_hh_rlhf_single_and_multi_turn(write_jsonl: Callable[..., Path]) -> None:
    rows = read_preferences(write_jsonl([HH_SINGLE, HH_MULTI]))
    assert (rows[0].question, rows[0].chosen, rows[0].rejected) == (
        "Làm sao để học tốt?",
        "Học đều mỗi ngày.",
        "Không biết.",
    )
    assert rows[1].question == "What is 2+2?"
    assert rows[1].history == (("user", "Hi"), ("assistant", "Hello!"))
    assert (rows[1].chosen, rows[1].rejected) == ("4.", "5.")
    assert rows[1].prompt.messages("4.") == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
    ]
    # one-turn rows keep the ids they had before conversations existed; history changes the id
    assert rows[0].prompt_id == Prompt("Làm sao để học tốt?").id == content_id("", "Làm sao để học tốt?", prefix="p-")
    assert rows[0].id == content_id("", "Làm sao để học tốt?", "Học đều mỗi ngày.", "Không biết.", prefix="pref-")
    assert rows[1].prompt_id != Prompt("What is 2+2?").id
    (prompt,) = [p for p in read_prompts(write_jsonl([HH_MULTI], "multi.jsonl"))]
    assert prompt.turns == (("user", "Hi"), ("assistant", "Hello!"), ("user", "What is 2+2?"))


def test_trl_preference_explicit_implicit_and_text(write_jsonl: Callable[..., Path]) -> None:
    explicit = {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sky colour?"}],
        "chosen": [{"role": "assistant", "content": "Blue."}],
        "rejected": [{"role": "assistant", "content": "Green."}],
    }
    implicit = {
        "chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
        "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "22"}],
    }
    text = {"prompt": "Say hi", "chosen": "Hi!", "rejected": "No."}
    assert source_format(write_jsonl([implicit], "implicit.jsonl")) == "trl_preference"
    rows = [read_preferences(write_jsonl([r], f"{i}.jsonl"))[0] for i, r in enumerate((explicit, implicit, text))]
    assert (rows[0].system, rows[0].question, rows[0].chosen, rows[0].rejected) == (
        "Be brief.",
        "Sky colour?",
        "Blue.",
        "Green.",
    )
    assert (rows[1].question, rows[1].chosen, rows[1].rejected) == ("2+2?", "4", "22")
    assert (rows[2].question, rows[2].chosen) == ("Say hi", "Hi!")
    multi = {
        "prompt": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "2+2?"},
        ],
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    }
    (row,) = read_preferences(write_jsonl([multi], "multi.jsonl"))
    assert (row.history, row.question) == ((("user", "Hi"), ("assistant", "Hello")), "2+2?")
    bad = {**multi, "prompt": multi["prompt"][:2]}
    with pytest.raises(DataError, match=r"line 1, field 'prompt': the prompt must end with a user turn"):
        read_preferences(write_jsonl([bad], "bad.jsonl"))


def test_trl_prompt_only_conversations(write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl([{"prompt": [{"role": "system", "content": "Ngắn gọn."}, {"role": "user", "content": "Chào?"}]}])
    (prompt,) = read_prompts(path)
    assert (prompt.system, prompt.question) == ("Ngắn gọn.", "Chào?")
    with pytest.raises(DataError, match=r"line 1, field 'prompt': message 0 must be"):
        read_prompts(write_jsonl([{"prompt": [{"role": "user"}]}], "bad.jsonl"))


def test_pairs_and_judgements_round_trip_through_parquet(tmp_path: Path) -> None:
    pair = Pair(Prompt("Câu hỏi?"), Response("Một", model="m", temperature=0.5, seed=1), Response("Hai", n_tokens=3))
    pairs_path = tmp_path / "pairs.parquet"
    write_pairs([pair], pairs_path)
    assert source_format(pairs_path) == "pairs"
    assert read_pairs(pairs_path) == [pair]
    assert read_prompts(pairs_path)[0].id == pair.prompt.id
    j = Judgement(
        pair.pair_id, "an", pair.a.id, Strength.BETTER, shown_order=(pair.a.id, pair.b.id), unsafe=(pair.b.id,)
    )
    judged = tmp_path / "judgements.jsonl"
    write_judgements([j], judged)
    assert read_judgements(judged) == [j]
    with pytest.raises(DataError, match="pass --judgements"):
        read_preferences(pairs_path)


# ------------------------------------------------------------------ containers


def test_json_list_and_data_object_report_element_lines(tmp_path: Path, vi_rows: list[dict]) -> None:
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(vi_rows[:2], ensure_ascii=False, indent=2), encoding="utf-8")
    assert [loc.line for loc, _ in read_rows(listed)] == [2, 8]
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(
        '{"version": {"n": [1, 2]},\n "data": [\n  {"prompt": "a", "response": "b"},\n\n'
        '  {"prompt": "c", "response": ""}\n ]}',
        encoding="utf-8",
    )
    assert [loc.line for loc, _ in read_rows(wrapped)] == [3, 5]
    _fmt, recs = canonical_records(wrapped)
    with pytest.raises(DataError) as e:
        list(recs)
    assert (e.value.file, e.value.line, e.value.field) == (str(wrapped), 5, "response")


def test_gzipped_jsonl(tmp_path: Path, vi_rows: list[dict]) -> None:
    path = tmp_path / "rows.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in vi_rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    assert len(read_preferences(path)) == len(vi_rows)


def test_parquet_rows_are_zero_based(tmp_path: Path, vi_rows: list[dict]) -> None:
    path = tmp_path / "rows.parquet"
    rows = vi_rows
    rows[2]["chosen"] = " "
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DataError) as e:
        read_preferences(path)
    assert (e.value.row, e.value.line, e.value.field) == (2, None, "chosen")
    assert "row 2" in str(e.value) and "empty text" in str(e.value)


def test_parquet_with_other_columns_names_file_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"foo": ["x"], "bar": [1]}), path)
    with pytest.raises(DataError, match=r"other\.parquet: unknown format: columns \['bar', 'foo'\]"):
        read_prompts(path)


def test_save_to_disk_dataset_and_datasetdict(tmp_path: Path, vi_rows: list[dict]) -> None:
    import datasets

    ds = datasets.Dataset.from_list(vi_rows)
    ds.save_to_disk(str(tmp_path / "one"))
    assert len(read_preferences(tmp_path / "one")) == len(vi_rows)
    datasets.DatasetDict({"train": ds.select(range(3)), "test": ds.select([3])}).save_to_disk(str(tmp_path / "dict"))
    assert len(read_preferences(tmp_path / "dict")) == 3
    assert [r.question for r in read_preferences(tmp_path / "dict", split="test")] == [vi_rows[3]["question"]]
    with pytest.raises(DataError, match="no split 'dev'"):
        read_preferences(tmp_path / "dict", split="dev")
    with pytest.raises(DataError, match="not a save_to_disk folder"):
        read_rows(tmp_path).__next__()


def test_folder_of_parquet_shards_reads_as_one_source(tmp_path: Path) -> None:
    pairs = [Pair(Prompt(f"Hỏi {i}?"), Response(f"A{i}"), Response(f"B{i}")) for i in range(4)]
    write_pairs(pairs[:2], tmp_path / "shards" / "shard-00000.parquet")
    write_pairs(pairs[2:], tmp_path / "shards" / "shard-00001.parquet")
    assert read_pairs(tmp_path / "shards") == pairs
    locs = [loc for loc, _ in read_rows(tmp_path / "shards")]
    assert [(Path(loc.file).name, loc.row) for loc in locs] == [
        ("shard-00000.parquet", 0),
        ("shard-00000.parquet", 1),
        ("shard-00001.parquet", 0),
        ("shard-00001.parquet", 1),
    ]


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("lines", "line", "field", "message"),
    [
        (
            ['{"question": "q", "chosen": "c", "rejected": "r"}', '{"question": "q2", "chosen": '],
            2,
            None,
            "malformed JSON",
        ),
        (['["not", "an", "object"]'], 1, None, "expected a JSON object, got list"),
        (['{"question": "q", "rejected": "r", "chosen": null}'], 1, "chosen", "missing field"),
        (['{"question": "q", "chosen": 42, "rejected": "r"}'], 1, "chosen", "must be text, got int"),
        (['{"question": "q", "chosen": "c", "rejected": "  \\n"}'], 1, "rejected", "empty text"),
        (['{"question": "q", "chosen": "c", "rejected": "r", "strength": "huge"}'], 1, "strength", "not a strength"),
        (['{"question": "q", "chosen": "c", "rejected": "r", "n_annotators": -1}'], 1, "n_annotators", "whole number"),
        (
            ['{"question": "q", "chosen": "c", "rejected": "r", "agreement": "high"}'],
            1,
            "agreement",
            "must be a number",
        ),
    ],
)
def test_bad_jsonl_records_name_file_line_and_field(
    write_jsonl: Callable[..., Path], lines: list[str], line: int, field: str | None, message: str
) -> None:
    path = write_jsonl(lines)
    with pytest.raises(DataError) as e:
        read_preferences(path)
    assert (e.value.file, e.value.line, e.value.field) == (str(path), line, field)
    assert message in str(e.value)


def test_bad_hh_transcript_and_empty_answer(write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl([HH_SINGLE, {"chosen": "no turns here", "rejected": "x"}])
    with pytest.raises(DataError, match=r"line 2, field 'chosen': not an hh-rlhf transcript"):
        read_preferences(path)
    empty = {"chosen": "\n\nHuman: Hỏi?\n\nAssistant:", "rejected": "\n\nHuman: Hỏi?\n\nAssistant: Đáp."}
    errors: list[DataError] = []
    rows = read_preferences(write_jsonl([HH_SINGLE, empty, HH_MULTI], "hh.jsonl"), errors=errors)
    assert len(rows) == 2 and [(e.line, e.field) for e in errors] == [(2, "chosen")]


def test_malformed_lines_are_recorded_and_skipped_when_errors_are_collected(write_jsonl: Callable[..., Path]) -> None:
    good = {"question": "q", "chosen": "c", "rejected": "r"}
    path = write_jsonl([good, "{bad json", {**good, "question": "q2"}])
    errors: list[DataError] = []
    rows = read_preferences(path, errors=errors)
    assert [r.question for r in rows] == ["q", "q2"]
    assert [(e.file, e.line) for e in errors] == [(str(path), 2)]
    assert "malformed JSON" in str(errors[0])
    # A bad first line: the format comes from the first good record.
    first_bad = write_jsonl(['["not an object"]', good], "first_bad.jsonl")
    errors = []
    assert [r.question for r in read_preferences(first_bad, errors=errors)] == ["q"]
    assert [e.line for e in errors] == [1]
    with pytest.raises(DataError, match="line 1"):
        read_preferences(first_bad)


def test_bad_judgement_fields(write_jsonl: Callable[..., Path]) -> None:
    base = {"pair_id": "p", "annotator": "an", "preferred": "r1", "strength": "better"}
    for change, field in (
        ({"strength": "enormous"}, "strength"),
        ({"annotator": ""}, "annotator"),
        ({"seconds": "slow"}, "seconds"),
        ({"preferred": None}, None),
    ):
        with pytest.raises(DataError) as e:
            read_judgements(write_jsonl([base, {**base, **change}]))
        assert (e.value.line, e.value.field) == (2, field)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "no such file"),
        ("table.xlsx", "a,b\n", "unknown file type"),
        ("fake.parquet", "not parquet", "not a readable Parquet file"),
        ("obj.json", '{"rows": []}', 'records in a "data" list'),
        ("broken.json", '[\n{"a": 1},\n{"a": ]', "malformed JSON"),
        ("fake.jsonl.gz", "plain text, not gzip", "cannot read"),
        ("latin1.jsonl", b'{"prompt": "caf\xe9"}\n', "not UTF-8"),
        ("empty.jsonl", "\n\n", "no records"),
    ],
)
def test_unreadable_sources(tmp_path: Path, name: str, content: str | bytes | None, message: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message) as e:
        read_prompts(path)
    assert str(path) in str(e.value)


# ------------------------------------------------------------------ hostile rows

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
hostile_row = st.fixed_dictionaries(
    {},
    optional={
        k: json_values for k in ("question", "chosen", "rejected", "strength", "system", "n_annotators", "agreement")
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(hostile_row, min_size=1, max_size=4))
def test_hostile_rows_give_located_data_errors_or_valid_rows(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    path = tmp_path / "hostile.jsonl"
    head = {"question": "q", "chosen": "c", "rejected": "r"}  # fixes the format; hostile rows follow
    path.write_text("\n".join(json.dumps(r) for r in [head, *rows]) + "\n", encoding="utf-8")
    try:
        out = read_preferences(path)
    except DataError as e:
        assert e.file == str(path) and e.line is not None and 2 <= e.line <= len(rows) + 1
    else:
        assert len(out) == len(rows) + 1
        assert all(r.question.strip() and r.chosen.strip() and r.rejected.strip() for r in out)
