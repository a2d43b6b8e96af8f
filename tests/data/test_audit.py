"""`prefkit data audit` (`prefkit.data.audit`): each figure on data built to show it (and on data
built not to), the red flags, the files, the export's audit and card section, and the real
hh-rlhf and Vietnamese sample files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefkit.cli import app
from prefkit.core.errors import DataError
from prefkit.data.audit import audit_rows, audit_source, is_refusal, style_control
from prefkit.data.audit_config import AuditConfig
from prefkit.data.export import export_dataset
from prefkit.data.schema import Judgement, PreferenceRow, Strength
from prefkit.data.writers import write_judgements, write_preferences

REPO = Path(__file__).resolve().parents[2]
WORDS = ["phở", "trà", "lúa", "sông", "núi", "mưa", "gió", "mây", "hoa", "lá", "cây", "đá", "cát", "biển"]


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _rows(n: int, *, longer: float, seed: int = 0, bold: bool = False) -> list[PreferenceRow]:
    """Pairs whose chosen answer is the longer one in a `longer` share of them (else the shorter);
    with `bold`, equal lengths and only chosen has a bold span."""
    rng = random.Random(seed)
    levels = list(Strength)
    rows = []
    for i in range(n):
        a, b = _text(rng, 20), _text(rng, 8)
        if bold:
            chosen, rejected = f"**{_text(rng, 2)}** " + _text(rng, 10), _text(rng, 12)
        else:
            chosen, rejected = (a, b) if i < round(longer * n) else (b, a)
        rows.append(
            PreferenceRow(
                question=f"Câu hỏi số {i}: {_text(rng, 6)}?",
                chosen=chosen,
                rejected=rejected,
                strength=levels[i % 4],
            )
        )
    return rows


def test_length_confound_per_level_and_the_flag() -> None:
    rows = _rows(40, longer=0.9)
    report = audit_rows({"train": rows})
    style = report["style"]
    assert style["all"]["pairs"] == 40 and style["all"]["chosen_longer_share"] == pytest.approx(36 / 40)
    # per level: rows i % 4; the 4 shorter-chosen rows are i = 36..39, one per level
    for s in Strength:
        assert style[s.value]["pairs"] == 10
        assert style[s.value]["chosen_longer_share"] == pytest.approx(9 / 10)
    assert style["all"]["median_length_ratio"] == pytest.approx(20 / 8)
    assert style["all"]["coefficients"]["length"] > 0.5  # length is what predicts the preference
    assert style["all"]["style_accuracy"] == pytest.approx(0.9, abs=0.05)
    names = [f["name"] for f in report["red_flags"]]
    assert "length_confound" in names and "style_predicts_preference" in names

    balanced = audit_rows({"train": _rows(40, longer=0.5)})
    assert balanced["style"]["all"]["chosen_longer_share"] == pytest.approx(0.5)
    assert not {"length_confound", "style_predicts_preference"} & {f["name"] for f in balanced["red_flags"]}
    # too few pairs to say anything: no flag even at 100%
    few = audit_rows({"train": _rows(10, longer=1.0)})
    assert few["style"]["all"]["chosen_longer_share"] == 1.0 and not few["red_flags"]


def test_style_control_finds_the_markdown_feature_that_predicts() -> None:
    report = audit_rows({"train": _rows(40, longer=0.5, bold=True)})
    coef = report["style"]["all"]["coefficients"]
    assert coef["bold"] > 1.0 and abs(coef["length"]) < 0.5
    assert report["style"]["all"]["style_accuracy"] >= 0.95
    assert report["style"]["all"]["mean_features"]["bold"] == {"chosen": 1.0, "rejected": 0.0}
    # the regression alone: a feature with no signal gets no accuracy beyond chance
    import numpy as np

    chance = [style_control(np.random.default_rng(seed).normal(size=(200, 5)))["style_accuracy"] for seed in range(20)]
    assert abs(sum(chance) / len(chance) - 0.5) < 0.03  # held out: no better than a coin on noise


def test_position_bias_overall_and_per_annotator(tmp_path: Path) -> None:
    rows = _rows(30, longer=0.5)
    judgements = []
    for i, r in enumerate(rows):
        order = ("x", "y")
        # "lefty" always picks the left answer; "fair" alternates
        judgements.append(Judgement(r.id, "lefty", "x", Strength.BETTER, shown_order=order))
        judgements.append(Judgement(r.id, "fair", order[i % 2], Strength.BETTER, shown_order=order))
        judgements.append(Judgement(r.id, "fair", None, Strength.NEGLIGIBLY_BETTER, shown_order=order))
    report = audit_rows({"train": rows}, judgements=judgements)
    bias = report["position_bias"]
    assert bias["decided"] == 60 and bias["left"] == 45 and bias["left_share"] == pytest.approx(0.75)
    assert bias["by_annotator"]["lefty"]["left_share"] == 1.0
    assert bias["by_annotator"]["fair"] == {"decided": 30, "left": 15, "left_share": 0.5}
    flags = {f["name"]: f["message"] for f in report["red_flags"]}
    assert "lefty" in flags["annotator_position_bias"] and "fair" not in flags["annotator_position_bias"]
    assert "position_bias" in flags
    # the same through a judgements file (`--judgements`)
    write_judgements(judgements, tmp_path / "j.jsonl")
    again = audit_rows({"train": rows}, AuditConfig(judgements=str(tmp_path / "j.jsonl")))
    assert again["position_bias"] == bias


def test_agreement_ceiling_per_level_beside_a_reward_models_accuracy(tmp_path: Path) -> None:
    rows = _rows(8, longer=0.5)
    votes = [(3, 3, 0), (3, 2, 1), (2, 1, 0), (1, 1, 0)] * 2  # (n, for chosen, for rejected)
    for r, (n, vc, vr) in zip(rows, votes, strict=True):
        r.n_annotators, r.votes_chosen, r.votes_rejected, r.agreement = n, vc, vr, vc / n
    summary = tmp_path / "summary.json"
    summary.write_text(
        json.dumps(
            {
                "stage": "reward",
                "metrics": {"test_accuracy": 0.7, "test_accuracy_by_strength": {"significantly_better": 0.9}},
            }
        )
    )
    report = audit_rows({"train": rows}, AuditConfig(reward_summary=str(summary)))
    ceiling = report["agreement"]
    # levels cycle significantly, better, slightly, negligibly; the one-annotator pairs leave
    assert ceiling["significantly_better"] == {"pairs": 2, "ceiling": 1.0, "mean_agreement": 1.0}
    assert ceiling["better"]["ceiling"] == pytest.approx(2 / 3, abs=1e-4)  # figures are rounded to 4 places
    assert ceiling["slightly_better"]["ceiling"] == pytest.approx((1 + 0.5) / 2)  # the unsure vote counts half
    assert "negligibly_better" not in ceiling and ceiling["all"]["pairs"] == 6
    assert report["reward_model"]["by_strength"] == {"significantly_better": 0.9}


def test_leakage_across_splits_and_rounds_and_contamination(tmp_path: Path) -> None:
    train = _rows(20, longer=0.5, seed=1)
    test = _rows(6, longer=0.5, seed=2)
    leaked_prompt = "Hãy giải thích vì sao bầu trời có màu xanh vào những ngày nắng đẹp trời ở Hà Nội"
    train[0].question = leaked_prompt
    test[0].question = leaked_prompt + "."  # a near-duplicate across the split
    earlier = tmp_path / "round0.jsonl"
    old = _rows(3, longer=0.5, seed=3)
    old[0].question = train[5].question
    write_preferences(old, earlier)
    long_eval = " ".join(f"từ{k}" for k in range(20))  # a 20-word evaluation prompt
    train[7].question = "Mở đầu: " + long_eval + " và thêm nữa"  # shares 13-grams with it
    train[8].question = "Tính 2 + 2"  # a short prompt, identical to an evaluation prompt
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(
        "\n".join(json.dumps({"prompt": p}) for p in (long_eval, "tính 2 + 2", "Một câu khác hẳn")) + "\n"
    )
    cfg = AuditConfig(against=[str(earlier)], decontaminate=str(eval_file))
    report = audit_rows({"train": train, "test": test}, cfg)
    assert report["leakage"]["train_test"]["leaked"] == 1
    assert report["leakage"]["against"][str(earlier)]["near_duplicates"] == 1
    assert report["contamination"]["overlapping"] == 2
    names = {f["name"] for f in report["red_flags"]}
    assert {"train_test_leakage", "cross_round_leakage", "contamination"} <= names
    clean = audit_rows({"train": _rows(20, longer=0.5, seed=1), "test": _rows(6, longer=0.5, seed=2)})
    assert clean["leakage"]["train_test"]["leaked"] == 0


def test_bad_answers_are_counted_and_flagged() -> None:
    rows = _rows(30, longer=0.5)
    rows[0].rejected = rows[0].chosen  # identical
    for r in rows[1:4]:
        r.chosen_meta = {"finish_reason": "length"}
    rows[4].chosen = "I'm sorry, but I can't help with that request."
    rows[5].chosen = "Xin lỗi, tôi không thể trả lời câu hỏi này."
    rows[6].chosen = "I'm sorry, but I can't help with that."
    rows[6].adversarial = True  # a refusal on a red-teaming prompt is no flag
    report = audit_rows({"train": rows})
    a = report["answers"]
    assert a["identical"] == 1 and a["truncated_chosen"] == 3
    assert a["refusals_chosen"] == 2 and a["helpfulness_pairs"] == 29 and a["refusals_chosen_adversarial"] == 1
    names = {f["name"] for f in report["red_flags"]}
    assert {"identical_answers", "truncated_answers", "refusals_on_helpfulness"} <= names
    assert is_refusal("Tôi không thể giúp bạn việc đó.") and not is_refusal("Tôi có thể giúp bạn: đây là cách.")


def test_the_command_writes_its_files_and_reads_the_real_samples(tmp_path: Path) -> None:
    sample = REPO / "data" / "samples" / "vi_preference_sample.jsonl"
    runner = CliRunner()
    result = runner.invoke(app, ["data", "audit", str(sample), "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "length_confound" in result.output
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if not p.name.startswith(".")) == [
        "audit.json",
        "audit.md",
        "audit.svg",
    ]
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert report["style"]["all"]["chosen_longer_share"] == 1.0  # the bundled sample's chosen is always longer
    assert "<svg" in (tmp_path / "a" / "audit.svg").read_text()
    assert "## Audit" in (tmp_path / "a" / "audit.md").read_text()
    again = runner.invoke(app, ["data", "audit", str(sample), "--out", str(tmp_path / "a")])
    assert isinstance(again.exception, DataError) and "--overwrite" in str(again.exception)  # exit 2 from `prefkit`
    as_json = runner.invoke(app, ["data", "audit", str(sample), "--json", "--set", "length_share=1.01"])
    assert as_json.exit_code == 0
    assert "length_confound" not in {f["name"] for f in json.loads(as_json.output)["red_flags"]}


def test_hh_rlhf_harmless_shows_no_length_confound(shared_data: Path) -> None:
    report = audit_source(shared_data / "hh_rlhf_harmless_test.jsonl.gz")
    assert report["rows"] == 2308 and report["unreadable"] == 4
    assert 0.4 < report["style"]["all"]["chosen_longer_share"] < 0.5  # the harmless set prefers shorter answers
    assert report["answers"]["adversarial_pairs"] == 2308


def test_export_writes_the_audit_and_the_cards_section(tmp_path: Path) -> None:
    rows = _rows(40, longer=0.9)
    export_dataset(rows, tmp_path / "ds", test_size=0.25, seed=1)
    report = json.loads((tmp_path / "ds" / "audit.json").read_text())
    assert report["splits"] == {"train": 30, "test": 10}
    assert "length_confound" in {f["name"] for f in report["red_flags"]}
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "## Audit" in card and "length_confound" in card and "audit.svg" in card
    assert audit_source(tmp_path / "ds")["style"]["all"] == report["style"]["all"]  # the command reads it back
    export_dataset(rows, tmp_path / "plain", test_size=0.25, seed=1, audit=False)
    assert not (tmp_path / "plain" / "audit.json").exists()
