"""Whole runs on the tiny model: pairs with their metadata, skips and drops in the report, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from prefkit.core.config import load_config
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.readers import read_pairs
from prefkit.data.schema import PAIR_COLUMNS
from prefkit.generate.config import DEFAULT_SYSTEM_PROMPT, GenerateConfig, SettingConfig
from prefkit.generate.run import generate_pairs


def config(prompts: Path, out: Path, models: list[str], **kw) -> GenerateConfig:
    values = dict(
        prompts=str(prompts),
        out=str(out),
        models=models,
        temperatures=[0.7, 1.1],
        max_tokens=8,
        shard_size=2,
        plan="all_pairs",
        device="cpu",
        dtype="float32",
        progress=False,
    )
    return GenerateConfig(**{**values, **kw})


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def test_pairs_carry_their_generation_metadata(tiny_model_path, lora_adapter, prompts_file, questions, tmp_path):
    model = str(tiny_model_path)
    cfg = config(prompts_file, tmp_path / "out", [model, f"{model}@{lora_adapter}"], temperatures=[0.8], seed=3)
    done = generate_pairs(cfg)
    out = done.out

    assert sorted(p.name for p in out.glob("shard-*.parquet")) == ["shard-00000.parquet", "shard-00001.parquet"]
    assert tuple(pq.read_schema(out / "shard-00000.parquet").names) == PAIR_COLUMNS
    pairs = read_pairs(out)
    assert len(pairs) == 4 and len({p.pair_id for p in pairs}) == 4
    assert [p.prompt.question for p in pairs] == questions[:4]
    plan = cfg.sampling_plan()
    for pair in pairs:
        assert pair.prompt.system == DEFAULT_SYSTEM_PROMPT
        draws = plan.assign(pair.prompt.id).draws
        for response, draw in zip((pair.a, pair.b), draws, strict=True):
            assert (response.model, response.temperature, response.top_p) == (model, 0.8, 0.95)
            assert response.seed == draw.seed
            assert response.finish_reason in ("stop", "length") and 1 <= response.n_tokens <= 8
            assert response.text.strip()
        assert (pair.a.adapter, pair.b.adapter) == (None, str(lora_adapter))

    rep = report(out)
    assert done.report == rep  # the run returns the report it wrote
    assert rep["complete"] and rep["pairs"] == 4 and rep["responses"] == 8
    assert rep["prompts"] == {"read": 4, "done": 4, "unreadable_rows": 0}
    truncated = sum(r.truncated for p in pairs for r in (p.a, p.b))
    assert rep["truncated"] == {
        "responses": truncated,
        "pairs_kept": sum(p.a.truncated or p.b.truncated for p in pairs),
    }
    assert rep["throughput"]["tokens"] == sum(r.n_tokens for p in pairs for r in (p.a, p.b))
    assert rep["throughput"]["tokens_per_s"] > 0 and rep["throughput"]["prompts_per_s"] > 0


def test_too_long_and_unreadable_prompts_are_skipped_and_reported(tiny_model_path, questions, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prompt": questions[0]}, {"prompt": "   "}, {"prompt": "Xin chào " * 400}, {"prompt": questions[1]}]
    prompts.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = generate_pairs(config(prompts, tmp_path / "out", [str(tiny_model_path)], plan="random_pair")).out

    rep = report(out)
    assert rep["skipped"]["by_reason"] == {"prompt_too_long": 1, "unreadable_row": 1}
    unreadable, too_long = rep["skipped"]["rows"]
    assert "line 2" in unreadable["where"] and "prompt" in unreadable["where"]
    assert "exceeds the context of 512 tokens" in too_long["detail"]
    assert rep["prompts"] == {"read": 3, "done": 3, "unreadable_rows": 1}
    assert [p.prompt.question for p in read_pairs(out)] == questions[:2]


def test_useless_pairs_are_dropped_and_counted(mute_model, prompts_file, tmp_path):
    out = generate_pairs(config(prompts_file, tmp_path / "out", [str(mute_model)], temperatures=[0.5, 0.9, 1.3])).out
    rep = report(out)
    # 4 prompts x 3 pairs of settings, every answer empty.
    assert rep["pairs"] == 0 and rep["dropped"]["by_reason"] == {"empty_response": 12}
    assert {d["a"] for d in rep["dropped"]["pairs"]} >= {f"{mute_model}@T=0.5,p=0.95"}
    assert pq.read_table(out / "shard-00000.parquet").num_rows == 0


def test_bad_input_gives_clear_errors(tiny_model_path, prompts_file, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no records"):
        generate_pairs(config(empty, tmp_path / "a", [str(tiny_model_path)]))
    with pytest.raises(ConfigError, match="no such model folder"):
        generate_pairs(config(prompts_file, tmp_path / "b", [str(tmp_path / "missing-model")]))
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    shutil.copy(tiny_model_path / "config.json", no_tokenizer)
    with pytest.raises(ConfigError, match="cannot load its tokenizer"):
        generate_pairs(config(prompts_file, tmp_path / "c", [str(no_tokenizer)]))
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()  # a bad model leaves no folder
    with pytest.raises(ConfigError, match="dtype: must be one of 'auto', 'float32', 'bfloat16', 'float16', got 'fp8'"):
        load_config(GenerateConfig, None, ["dtype=fp8"])
    with pytest.raises(ConfigError, match="out of range"):
        generate_pairs(config(prompts_file, tmp_path / "d", [str(tiny_model_path)], temperatures=[0.7, 2.5]))
    with pytest.raises(ConfigError, match="either `settings` or `models`"):
        generate_pairs(config(prompts_file, tmp_path / "f", ["m"], settings=[SettingConfig("m", 0.7)], plan="samples"))
    (tmp_path / "file.parquet").write_bytes(b"")
    with pytest.raises(ConfigError, match="is a file"):
        generate_pairs(config(prompts_file, tmp_path / "file.parquet", [str(tiny_model_path)]))
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ConfigError, match="not empty"):
        generate_pairs(config(prompts_file, tmp_path / "e", [str(tiny_model_path)]))


def test_a_finished_run_is_kept_safe(tiny_model_copy, questions, make_prompts, tmp_path):
    prompts = make_prompts(tmp_path / "prompts.jsonl", questions[:2])
    cfg = config(prompts, tmp_path / "out", [str(tiny_model_copy)])
    out = generate_pairs(cfg).out
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    with pytest.raises(ConfigError, match="pass --resume"):
        generate_pairs(cfg)
    with pytest.raises(ConfigError, match=r"different settings .*max_tokens: 8 -> 16"):
        generate_pairs(config(prompts, out, [str(tiny_model_copy)], max_tokens=16), resume=True)
    make_prompts(prompts, questions[:3])
    moved = tiny_model_copy.rename(tmp_path / "moved")
    with pytest.raises(ConfigError, match="no such model folder"):
        generate_pairs(cfg, resume=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    moved.rename(tiny_model_copy)

    # Resuming with more prompts answers only the new ones.
    generate_pairs(cfg, resume=True)
    pairs = read_pairs(out)
    assert sorted(p.prompt.question for p in pairs) == sorted(questions[:3])
    assert (out / "shard-00000.parquet").read_bytes() == before["shard-00000.parquet"]
    assert report(out)["prompts"]["done"] == 3


def test_multi_turn_prompts_are_answered_with_their_history(tiny_model_path, tmp_path, monkeypatch):
    """Pairs keep the conversation, and the model was asked it whole (the formatted text holds every turn)."""
    import prefkit.generate.run as run_module

    prompts = tmp_path / "conv.jsonl"
    convs = [
        [
            {"role": "user", "content": "Chào bạn"},
            {"role": "assistant", "content": "Chào!"},
            {"role": "user", "content": "Hôm nay thế nào?"},
        ],
        [{"role": "user", "content": "Một câu hỏi?"}],
    ]
    prompts.write_text("".join(json.dumps({"prompt": c}, ensure_ascii=False) + "\n" for c in convs), encoding="utf-8")
    asked: list[str] = []
    real = run_module.format_prompt

    def spy(*args, **kw):  # record what the engine is given; the real formatter does the work
        text = real(*args, **kw)
        asked.append(text)
        return text

    monkeypatch.setattr(run_module, "format_prompt", spy)
    model = str(tiny_model_path)
    generate_pairs(config(prompts, tmp_path / "out", [model], temperatures=[0.7, 1.1], seed=1))
    pairs = sorted(read_pairs(tmp_path / "out"), key=lambda p: len(p.prompt.history), reverse=True)
    assert pairs[0].prompt.history == (("user", "Chào bạn"), ("assistant", "Chào!"))
    assert pairs[0].prompt.question == "Hôm nay thế nào?" and pairs[1].prompt.history == ()
    multi = [t for t in asked if "Hôm nay thế nào?" in t]
    assert multi and all(t.index("Chào bạn") < t.index("Chào!") < t.index("Hôm nay thế nào?") for t in multi)
