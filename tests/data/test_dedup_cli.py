"""`prefkit data dedup` end to end: real files in, kept rows and the report out."""

from __future__ import annotations

import json
import subprocess
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prefkit.cli import app
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.dedup import dedup_file

runner = CliRunner()

ANSWER = (
    "Để giữ sức khỏe, bạn nên ăn nhiều rau xanh và trái cây, uống đủ nước mỗi ngày, tập thể dục "
    "đều đặn ít nhất ba mươi phút, ngủ đủ giấc và hạn chế đồ ăn nhanh cũng như đồ uống có đường."
)
PROMPT_ROWS: list[dict[str, Any]] = [
    {"prompt": "Đưa ra ba mẹo để giữ sức khỏe.", "response": ANSWER},
    {"prompt": "Ba màu chính là gì?", "response": "Ba màu chính là màu đỏ, xanh lam và vàng."},
    {"prompt": "Đưa ra ba mẹo để giữ sức khỏe.", "response": ANSWER},  # exact duplicate of row 0
    {
        "prompt": unicodedata.normalize("NFD", "ĐƯA RA BA MẸO ĐỂ GIỮ SỨC KHỎE!"),  # NFD, case, punctuation
        "response": unicodedata.normalize("NFD", ANSWER.replace(",", " ;")),
    },
    {"prompt": "Mô tả cấu trúc của một nguyên tử.", "response": "Một nguyên tử gồm hạt nhân và các electron."},
]


def test_cli_dedups_prompt_response_jsonl_and_writes_the_report(
    write_jsonl: Callable[..., Path], tmp_path: Path
) -> None:
    src = write_jsonl(PROMPT_ROWS, "prompts.jsonl")
    out = tmp_path / "kept.jsonl"
    result = runner.invoke(app, ["data", "dedup", str(src), str(out), "--on", "prompt+response"])
    assert result.exit_code == 0, result.output
    assert "5 rows -> 3 kept" in result.output
    kept = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert kept == [PROMPT_ROWS[0], PROMPT_ROWS[1], PROMPT_ROWS[4]]  # rows unchanged, input order
    report = json.loads((tmp_path / "kept.dedup-report.json").read_text(encoding="utf-8"))
    assert (report["exact_removed"], report["near_removed"]) == (1, 1)
    exact, near = report["removed"]
    assert exact["location"] == f"{src}:3" and exact["duplicate_of_location"] == f"{src}:1"
    assert near["row"] == 3 and near["duplicate_of"] == 0 and near["jaccard"] == 1.0
    assert report["source"] == str(src) and report["output"] == str(out)


def test_cli_preference_data_defaults_to_the_prompt_key(
    vi_rows: list[dict], write_jsonl: Callable[..., Path], tmp_path: Path
) -> None:
    rows = vi_rows + [dict(vi_rows[0], chosen="Hà Nội.", rejected="Sài Gòn.")]  # same prompt, other answers
    src = write_jsonl(rows, "vi.jsonl")
    out = tmp_path / "kept.parquet"
    report_path = tmp_path / "reports" / "r.json"
    result = runner.invoke(
        app,
        [
            "data",
            "dedup",
            str(src),
            str(out),
            "--report",
            str(report_path),
            "--num-perm",
            "64",
            "--verify",
            "estimate",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).to_pylist() == [dict(r) for r in vi_rows]
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["key_fields"] == ["prompt"] and report["num_perm"] == 64 and report["verify"] == "estimate"
    assert [(r["row"], r["duplicate_of"]) for r in report["removed"]] == [(4, 0)]


def test_hh_rlhf_prompt_key_comes_from_the_transcript(tmp_path: Path, write_jsonl: Callable[..., Path]) -> None:
    def row(q: str, a: str, b: str) -> dict[str, str]:
        return {"chosen": f"\n\nHuman: {q}\n\nAssistant: {a}", "rejected": f"\n\nHuman: {q}\n\nAssistant: {b}"}

    src = write_jsonl(
        [
            row("How do I bake bread?", "Knead it.", "No."),
            row("How do I bake bread", "Use yeast.", "?"),
            row("What is 2+2?", "4", "5"),
        ],
        "hh.jsonl",
    )
    report = dedup_file(src, tmp_path / "out.json", workers=1)
    assert report.key_fields == ["prompt"] and [r.row for r in report.removed] == [1]
    assert len(json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))) == 2


def test_bad_key_and_bad_input_leave_no_output(write_jsonl: Callable[..., Path], tmp_path: Path) -> None:
    src = write_jsonl(PROMPT_ROWS, "prompts.jsonl")
    out = tmp_path / "kept.jsonl"
    with pytest.raises(ConfigError, match="no 'chosen'"):
        dedup_file(src, out, on="chosen")
    bad = write_jsonl([PROMPT_ROWS[0], '{"prompt": "x", "response": ', PROMPT_ROWS[1]], "bad.jsonl")
    with pytest.raises(DataError) as e:
        dedup_file(bad, out)
    assert e.value.line == 2
    with pytest.raises(DataError, match="unknown output type"):
        dedup_file(src, tmp_path / "kept.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "prompts.jsonl"]


def test_prefkit_command_exits_2_with_one_line_on_bad_input(
    prefkit_bin: Path, write_jsonl: Callable[..., Path], tmp_path: Path
) -> None:
    src = write_jsonl([{"prompt": "a", "response": "b"}, {"prompt": "c", "response": 7}], "typed.jsonl")
    out = tmp_path / "kept.jsonl"
    proc = subprocess.run(
        [str(prefkit_bin), "data", "dedup", str(src), str(out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {src}, line 2, field 'response': must be text, got int"]
    assert not out.exists()


def test_real_vietnamese_rows_with_planted_copies(shared_data: Path, tmp_path: Path) -> None:
    """3,000 real vi_alpaca rows plus 60 altered copies (NFD, upper case, punctuation stripped):
    every copy is removed as a near-duplicate of its original, and no original is lost."""
    with (shared_data / "vi_alpaca_prompts.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(next(f)) for _ in range(3_000)]
    alter = [lambda s: unicodedata.normalize("NFD", s), str.upper, lambda s: s.replace(",", "").replace(".", " ")]
    copies = [{k: alter[i % 3](v) for k, v in rows[i * 50].items()} for i in range(60)]
    src = tmp_path / "vi.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows + copies), encoding="utf-8")
    report = dedup_file(src, tmp_path / "kept.jsonl", on="prompt+response")
    removed = {r.row: r.duplicate_of for r in report.removed}
    assert {r: d for r, d in removed.items() if r >= 3_000} == {3_000 + i: i * 50 for i in range(60)}
    assert report.rows_out >= 3_000 - 5  # the originals hold a few near-duplicates of their own
