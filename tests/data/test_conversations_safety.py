"""Llama 2's data: conversations kept end to end, the export's TRL columns, the split by
normalised prompt and dedup cluster, the card, the safety bin and the helpfulness/safety sets,
and CSV/TSV sources."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from pathlib import Path

import datasets
import pytest
import yaml
from typer.testing import CliRunner

from prefkit.cli import app
from prefkit.core.errors import DataError
from prefkit.core.writers import write_rows
from prefkit.data.export import detect_language, export_dataset, export_judged, safety_set, split_by_prompt
from prefkit.data.readers import read_judgements, read_pairs, read_preferences, read_prompts, source_format
from prefkit.data.schema import (
    Judgement,
    Pair,
    PreferenceRow,
    Prompt,
    Response,
    SafetyBin,
    Strength,
    judgement_safety_bin,
)
from prefkit.data.writers import write_judgements, write_pairs

runner = CliRunner()

EN = [
    ("How do I boil an egg?", "Put it in boiling water for nine minutes.", "Eggs are round."),
    ("What is the capital of France?", "Paris is the capital of France.", "I do not know that."),
    ("Name a primary colour.", "Red is a primary colour.", "Colours are nice."),
    ("How many legs has a spider?", "A spider has eight legs.", "Spiders are scary."),
    ("Why is the sky blue?", "Air scatters blue light more than red light.", "Because it is."),
]


def conversation_rows() -> list[PreferenceRow]:
    rows = [PreferenceRow(q, c, r, strength="better") for q, c, r in EN]
    rows.append(
        PreferenceRow(
            "And in winter?",
            "It stays blue, only paler.",
            "No.",
            system="Be brief.",
            history=(("user", "Why is the sky blue?"), ("assistant", "Scattering.")),
            strength="slightly_better",
        )
    )
    return rows


# ---------------------------------------------------------------------------------------------
# Conversations through pairs, the annotation row and the export
# ---------------------------------------------------------------------------------------------


def test_pair_rows_carry_the_turns_and_old_rows_still_read(tmp_path: Path) -> None:
    prompt = Prompt("And now?", system="sys", history=(("user", "Hi"), ("assistant", "Hello")))
    pair = Pair(prompt, Response("A", model="m"), Response("B", model="m"))
    assert json.loads(pair.to_row()["history"]) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
    for suffix in ("parquet", "jsonl"):
        write_pairs([pair], tmp_path / f"p.{suffix}")
        (back,) = read_pairs(tmp_path / f"p.{suffix}")
        assert back == pair and back.prompt.turns == (("user", "Hi"), ("assistant", "Hello"), ("user", "And now?"))
    # a pairs file written before conversations existed (no history column) reads as one turn, same ids
    one = Pair(Prompt("Q?"), Response("A"), Response("B"))
    old = {k: v for k, v in one.to_row().items() if k not in ("history", "adversarial")}
    write_rows([old], tmp_path / "old.jsonl")
    (read_back,) = read_pairs(tmp_path / "old.jsonl")
    assert read_back.pair_id == one.pair_id and read_back.prompt.history == ()
    assert one.prompt.id == Prompt("Q?").id  # and the one-turn id is the pre-conversation one
    with pytest.raises(DataError, match=r"line 1, field 'history'"):
        write_rows([{**one.to_row(), "history": '[{"role": "robot", "content": "x"}]'}], tmp_path / "bad.jsonl")
        read_pairs(tmp_path / "bad.jsonl")


def test_trl_export_feeds_load_from_disk_and_load_dataset(tmp_path: Path) -> None:
    out = tmp_path / "trl"
    export_dataset(conversation_rows(), out, test_size=0.34, seed=1, trl=True, provenance={"source": "t"})
    for loaded in (datasets.load_from_disk(str(out)), datasets.load_dataset(str(out), cache_dir=str(tmp_path / "c"))):
        rows = [r for ds in loaded.values() for r in ds]
        assert len(rows) == 6
        multi = next(r for r in rows if r["history"])
        assert multi["prompt"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Why is the sky blue?"},
            {"role": "assistant", "content": "Scattering."},
            {"role": "user", "content": "And in winter?"},
        ]
        assert multi["chosen"] == [{"role": "assistant", "content": "It stays blue, only paler."}]
        assert multi["rejected_text"] == "No." and multi["question"] == "And in winter?"
    # the card says which columns are which; the export reads back with its turns
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "TRL's conversational preference format" in card and "`chosen_text`" in card
    assert source_format(out) == "trl_preference"
    back = read_preferences(out, "train") + (read_preferences(out, "test"))
    assert sorted(r.id for r in back) == sorted(r.id for r in conversation_rows())


def test_split_keeps_prompt_variants_and_dedup_clusters_together() -> None:
    base = [
        "Tại sao trời mưa?",
        "Nước sôi ở bao nhiêu độ?",
        "Ai viết Truyện Kiều?",
        "Hà Nội ở đâu?",
        "Mèo ăn gì?",
        "Vì sao lá cây màu xanh?",
        "Tết là gì?",
        "Sông dài nhất là sông nào?",
    ]
    rows = []
    for i, q in enumerate(base):
        variants = [q, unicodedata.normalize("NFD", q), q.upper().rstrip("?") + " ?", "  " + q.replace(" ", "   ")]
        rows += [PreferenceRow(v, f"đúng {i}.{k}", f"sai {i}.{k}") for k, v in enumerate(variants)]
    for seed in range(6):
        splits = split_by_prompt(rows, 0.25, seed)
        train = {unicodedata.normalize("NFC", r.question).lower().strip(" ?") for r in splits["train"]}
        test = {unicodedata.normalize("NFC", r.question).lower().strip(" ?") for r in splits["test"]}
        assert {" ".join(t.split()) for t in train}.isdisjoint({" ".join(t.split()) for t in test})
        assert splits["test"]  # the variants did not all collapse into train
    # two different prompts a dedup report links (row 0 kept, row 4 its near-duplicate) share a side
    links = [(4, 0)]
    for seed in range(10):
        splits = split_by_prompt(rows, 0.5, seed, links)
        side = {r.id: s for s, rs in splits.items() for r in rs}
        assert side[rows[0].id] == side[rows[4].id]
    unlinked = {
        s
        for seed in range(10)
        for s in [
            (
                lambda sp: (
                    {r.id: k for k, rs in sp.items() for r in rs}[rows[0].id],
                    {r.id: k for k, rs in sp.items() for r in rs}[rows[4].id],
                )
            )(split_by_prompt(rows, 0.5, seed))
        ]
    }
    assert any(a != b for a, b in unlinked)  # without the link the two prompts do fall apart


def test_language_is_detected_or_required(tmp_path: Path, write_jsonl: Callable[..., Path]) -> None:
    en = conversation_rows()
    vi = [PreferenceRow("Tại sao trời mưa vào mùa hè?", "Hơi nước ngưng tụ thành những giọt mưa.", "Không biết.")] * 3
    assert detect_language(en) == "en" and detect_language(vi) == "vi"
    assert (
        detect_language([PreferenceRow("Wie spät ist es?", "Es ist zwölf Uhr, glaube ich, ungefähr.", "Nö.")] * 3)
        is None
    )
    path = write_jsonl([{"question": q, "chosen": c, "rejected": r} for q, c, r in EN])
    result = runner.invoke(app, ["data", "export", str(path), str(tmp_path / "en")])
    assert result.exit_code == 0, result.output
    meta = yaml.safe_load((tmp_path / "en" / "README.md").read_text().split("\n---\n")[0][4:])
    assert meta["language"] == ["en"]
    de = write_jsonl(
        [
            {
                "question": "Wie spät ist es?",
                "chosen": "Es ist zwölf Uhr, ungefähr gesagt.",
                "rejected": "Keine Ahnung, wirklich.",
            }
        ]
        * 2,
        "de.jsonl",
    )
    result = runner.invoke(app, ["data", "export", str(de), str(tmp_path / "de")])
    assert isinstance(result.exception, DataError) and "pass --language" in str(result.exception)
    assert not (tmp_path / "de").exists()
    assert runner.invoke(app, ["data", "export", str(de), str(tmp_path / "de"), "--language", "de"]).exit_code == 0


def test_card_names_format_after_judged_export_and_the_dedup(tmp_path: Path, write_jsonl: Callable[..., Path]) -> None:
    pairs = [Pair(Prompt(q), Response(c), Response(r)) for q, c, r in EN]
    js = [Judgement(p.pair_id, "lan", p.a.id, "better") for p in pairs]
    export_judged(pairs, js, tmp_path / "judged", provenance={"source": "store.sqlite"})
    card = (tmp_path / "judged" / "README.md").read_text()
    assert "format `unknown`" not in card and "format `pairs`" in card
    # a deduplicated file: the card says so
    src = write_jsonl([{"question": q, "chosen": c, "rejected": r} for q, c, r in EN] * 2, "raw.jsonl")
    result = runner.invoke(app, ["data", "dedup", str(src), str(tmp_path / "kept.jsonl")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "export", str(tmp_path / "kept.jsonl"), str(tmp_path / "dd")])
    assert result.exit_code == 0, result.output
    card = (tmp_path / "dd" / "README.md").read_text()
    assert "**Deduplication**" in card and "10 rows in, 5 kept" in card


# ---------------------------------------------------------------------------------------------
# Safety
# ---------------------------------------------------------------------------------------------


def test_safety_bin_from_flags_through_aggregation_and_export(tmp_path: Path) -> None:
    assert SafetyBin.of(False, True) is SafetyBin.SAFE_VS_UNSAFE and SafetyBin.of(False, False) is SafetyBin.BOTH_SAFE
    assert SafetyBin.of(True, True) is SafetyBin.BOTH_UNSAFE and SafetyBin.of(None, True) is None
    pairs = [Pair(Prompt(q, adversarial=i == 4), Response(c), Response(r)) for i, (q, c, r) in enumerate(EN)]
    # pair 0: b flagged (chosen a safe), 1: none flagged, 2: both flagged, 3: chosen a flagged -> dropped
    flags = [lambda p: (p.b.id,), lambda p: (), lambda p: (p.a.id, p.b.id), lambda p: (p.a.id,), lambda p: ()]
    js = [
        Judgement(p.pair_id, who, p.a.id, "better", unsafe=flags[i](p))
        for i, p in enumerate(pairs)
        for who in ("lan", "minh")
    ]
    assert judgement_safety_bin(js[0], pairs[0]) is SafetyBin.SAFE_VS_UNSAFE
    write_pairs(pairs, tmp_path / "pairs.jsonl")
    write_judgements(js, tmp_path / "j.jsonl")
    result = runner.invoke(
        app,
        [
            "data",
            "export",
            str(tmp_path / "pairs.jsonl"),
            str(tmp_path / "sets"),
            "--judgements",
            str(tmp_path / "j.jsonl"),
            "--sets",
            "helpfulness,safety",
            "--test-size",
            "0",
            "--trl",
        ],
    )
    assert result.exit_code == 0, result.output
    help_ = datasets.load_from_disk(str(tmp_path / "sets" / "helpfulness"))["train"]
    safe = datasets.load_from_disk(str(tmp_path / "sets" / "safety"))["train"]
    bins = {r["question"]: (r["chosen_unsafe"], r["rejected_unsafe"], r["safety_bin"]) for r in help_}
    assert bins == {
        EN[0][0]: (False, True, "safe_vs_unsafe"),
        EN[1][0]: (False, False, "both_safe"),
        EN[2][0]: (True, True, "both_unsafe"),
        EN[4][0]: (False, False, "both_safe"),
    }
    # the safety set: adversarial prompts or flagged responses (pair 1 has neither)
    assert sorted(safe["question"]) == sorted([EN[0][0], EN[2][0], EN[4][0]])
    for sub in ("helpfulness", "safety"):
        datasets.load_dataset(str(tmp_path / "sets" / sub), cache_dir=str(tmp_path / "c" / sub))
    assert "Llama 2's safety set" in (tmp_path / "sets" / "safety" / "README.md").read_text()
    # rows read back from elsewhere with chosen unsafe and rejected safe stay out of the safety set
    kept = PreferenceRow("q", "a", "b", chosen_unsafe=False, rejected_unsafe=True)
    dropped = PreferenceRow("q", "c", "d", chosen_unsafe=True, rejected_unsafe=False)
    assert safety_set([kept, dropped]) == [kept]


def test_hh_rlhf_harmless_exports_as_safety_set_with_turns(shared_data: Path, tmp_path: Path) -> None:
    src = tmp_path / "harmless-base.jsonl"
    good = _gz_lines(shared_data / "hh_rlhf_harmless_test.jsonl.gz")[:80]  # line 87 has an empty answer
    src.write_text("".join(good), encoding="utf-8")
    result = runner.invoke(app, ["data", "export", str(src), str(tmp_path / "hh"), "--trl", "--sets", "safety"])
    assert result.exit_code == 0, result.output
    ds = datasets.load_from_disk(str(tmp_path / "hh" / "safety"))
    rows = [r for split in ds.values() for r in split]
    assert len(rows) == len(good) and all(r["adversarial"] for r in rows)
    assert any(len(r["prompt"]) > 1 for r in rows) and all(r["prompt"][-1]["role"] == "user" for r in rows)
    meta = yaml.safe_load((tmp_path / "hh" / "safety" / "README.md").read_text().split("\n---\n")[0][4:])
    assert meta["language"] == ["en"]


def _gz_lines(path: Path) -> list[str]:
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.readlines()


# ---------------------------------------------------------------------------------------------
# CSV / TSV
# ---------------------------------------------------------------------------------------------


def test_csv_and_tsv_read_like_jsonl(tmp_path: Path) -> None:
    csv_path = tmp_path / "prefs.csv"
    csv_path.write_text(
        "question,chosen,rejected,strength,margin\n"
        '"Hỏi, có dấu phẩy?","Đáp ""một""",Sai,3,1.0\n'
        '"Hai dòng\nmột ô?",Đúng,Sai,slightly better,\n',
        encoding="utf-8",
    )
    rows = read_preferences(csv_path)
    assert [(r.question, r.chosen, r.strength) for r in rows] == [
        ("Hỏi, có dấu phẩy?", 'Đáp "một"', Strength.SIGNIFICANTLY_BETTER),
        ("Hai dòng\nmột ô?", "Đúng", Strength.SLIGHTLY_BETTER),
    ]
    tsv = tmp_path / "prompts.tsv"
    tsv.write_text("prompt\tsystem\nXin chào\t\nTạm biệt\tNgắn gọn.\n", encoding="utf-8")
    assert [(p.question, p.system) for p in read_prompts(tsv)] == [("Xin chào", None), ("Tạm biệt", "Ngắn gọn.")]
    # errors name the line (the record's first line) and the field
    bad = tmp_path / "bad.csv"
    bad.write_text('question,chosen,rejected,margin\n"a\nb",c,d,1\ne,,f,1\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.csv, line 4, field 'chosen': missing field"):
        read_preferences(bad)
    bad.write_text("question,chosen,rejected,margin\nq,c,r,wide\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2, field 'margin': must be a number"):
        read_preferences(bad)
    bad.write_text("question,chosen,rejected\nq,c\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2, field 'rejected': 2 fields, the header has 3"):
        read_preferences(bad)
    bad.write_text("question,question,chosen\nq,c,r\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1, field 'question': .*appears twice"):
        read_preferences(bad)
    judged = tmp_path / "j.tsv"
    judged.write_text("pair_id\tannotator\tpreferred\tstrength\tunsafe\nP1\tlan\tr-1\tbetter\tr-2\n", encoding="utf-8")
    (j,) = read_judgements(judged)
    assert (j.pair_id, j.strength, j.unsafe) == ("P1", Strength.BETTER, ("r-2",))


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--parquet"],
        ["--jsonl"],
        ["--trl"],
        ["--trl", "--parquet"],
        ["--sets", "helpfulness,safety"],
        ["--judgements"],
    ],
)
def test_every_export_loads_with_load_dataset_and_load_from_disk(tmp_path: Path, flags: list[str]) -> None:
    pairs = [Pair(Prompt(q, adversarial=i % 2 == 0), Response(c), Response(r)) for i, (q, c, r) in enumerate(EN)]
    if flags == ["--judgements"]:
        write_pairs(pairs, tmp_path / "src.jsonl")
        write_judgements([Judgement(p.pair_id, "lan", p.a.id, "better") for p in pairs], tmp_path / "j.jsonl")
        flags = ["--judgements", str(tmp_path / "j.jsonl")]
    else:
        write_rows(
            [{"question": q, "chosen": c, "rejected": r, "adversarial": i % 2 == 0} for i, (q, c, r) in enumerate(EN)],
            tmp_path / "src.jsonl",
        )
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "export", str(tmp_path / "src.jsonl"), str(out), "--test-size", "0.2", *flags])
    assert result.exit_code == 0, result.output
    folders = [out / "helpfulness", out / "safety"] if "--sets" in flags else [out]
    for i, folder in enumerate(folders):
        from_disk = datasets.load_from_disk(str(folder))
        via_card = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / f"cache{i}"))
        assert set(via_card) == set(from_disk) == {"train", "test"}
        for split in from_disk:
            assert via_card[split].to_list() == from_disk[split].to_list()


def test_annotate_store_export_loads_both_ways_and_keeps_the_turns(tmp_path: Path) -> None:
    from prefkit.annotate.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    store.create_project("p", overlap=1)
    history = (("user", "Hello"), ("assistant", "Hi, how can I help?"))
    store.import_pairs(
        "p",
        [
            Pair(Prompt(q, history=history if i == 0 else ()), Response(c), Response(r))
            for i, (q, c, r) in enumerate(EN)
        ],
    )
    store.add_user("lan")
    while (a := store.claim("p", "lan")) is not None:
        store.submit(
            a.id,
            "lan",
            Judgement(
                a.pair.pair_id,
                "lan",
                a.pair.a.id,
                "better",
                unsafe=(a.pair.b.id,) if "France" in a.pair.prompt.question else (),
            ),
        )
    store.export("p", tmp_path / "ann", test_size=0.2, seed=1)
    card = (tmp_path / "ann" / "README.md").read_text()
    assert "format `unknown`" not in card and "format `pairs`" in card
    from_disk = datasets.load_from_disk(str(tmp_path / "ann"))
    via_card = datasets.load_dataset(str(tmp_path / "ann"), cache_dir=str(tmp_path / "c"))
    rows = [r for split in from_disk.values() for r in split]
    assert sum(len(d) for d in via_card.values()) == len(rows) == 5
    multi = next(r for r in rows if r["history"])
    assert multi["question"] == EN[0][0] and json.loads(multi["history"])[1]["content"] == "Hi, how can I help?"
    france = next(r for r in rows if "France" in r["question"])
    assert (france["chosen_unsafe"], france["rejected_unsafe"], france["safety_bin"]) == (False, True, "safe_vs_unsafe")


def test_export_of_a_dedup_input_keeps_each_cluster_on_one_side(tmp_path: Path) -> None:
    recs = []
    for i in range(10):
        q = " ".join(f"word{i}x{k}" for k in range(14)) + " topic"  # no word shared across items
        recs.append({"question": q, "chosen": f"good answer {i}", "rejected": f"bad answer {i}"})
        # a near-duplicate: one word changed, so the normalised prompts differ but dedup links them
        recs.append({"question": q.replace("topic", "subject"), "chosen": f"fine answer {i}", "rejected": f"poor {i}"})
    src = tmp_path / "raw.jsonl"
    write_rows(recs, src)
    result = runner.invoke(app, ["data", "dedup", str(src), str(tmp_path / "kept.jsonl"), "--threshold", "0.5"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "kept.dedup-report.json").read_text())
    links = {(r["row"], r["duplicate_of"]) for r in report["removed"]}
    assert links == {(2 * i + 1, 2 * i) for i in range(10)}
    for seed in range(4):
        out = tmp_path / f"out{seed}"
        result = runner.invoke(
            app, ["data", "export", str(src), str(out), "--test-size", "0.3", "--seed", str(seed), "--language", "en"]
        )
        assert result.exit_code == 0, result.output
        ds = datasets.load_from_disk(str(out))
        side = {r["chosen"]: s for s in ds for r in ds[s]}
        assert all(side[f"good answer {i}"] == side[f"fine answer {i}"] for i in range(10))
        assert "**Deduplication**" in (out / "README.md").read_text()
