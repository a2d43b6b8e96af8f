"""`prefkit annotate predictions`, `suggestions` and `export --include-model-judgements` through the
real `prefkit` command, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from prefkit.annotate.store import Store
from prefkit.cli import app
from prefkit.data.schema import Judgement, Strength

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["annotate", *args])


def test_predictions_from_a_file_then_suggestions(db_url, make_pairs, tmp_path):
    pairs = make_pairs(3)
    with Store.open(db_url) as store:
        store.import_project("p", pairs, overlap=1)
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"pair_id": p.pair_id, "p_b": 0.2}) + "\n" for p in pairs))
    result = _run("predictions", str(scores), "--project", "p", "--source", "rm:one", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert "p: recorded 3 predictions of rm:one" in result.output

    result = _run("suggestions", "before", "--project", "p", "--holdout", "0.25", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert "p: suggestions before from each pair's latest prediction, holdout 0.25" in result.output
    assert "rm:one\treward_model\t3 pairs" in result.output
    with Store.open(db_url) as store:
        proj = store.get_project("p")
        assert (proj.suggestions, proj.suggestion_holdout) == ("before", 0.25)
        assert {x.side for x in store.predictions("p")} == {"a"}

    # A bad row: one line naming the file, line and field; nothing recorded.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"pair_id": pairs[0].pair_id, "p_b": 0.9}) + "\n" + json.dumps({"pair_id": "x"}) + "\n")
    result = _run("predictions", str(bad), "--project", "p", "--source", "rm:two", "--db", db_url)
    assert result.exit_code != 0
    assert f"{bad}, line 2, field 'pair_id': pair x is not in project 'p'" in str(result.exception)
    result = _run("suggestions", "sometimes", "--project", "p", "--db", db_url)
    assert result.exit_code != 0 and "suggestions must be off, after, before" in str(result.exception)
    with Store.open(db_url) as store:
        assert [s["source"] for s in store.prediction_sources("p")] == ["rm:one"]


def test_export_with_and_without_the_judges_judgements(db_url, make_pairs, tmp_path):
    pairs = make_pairs(3)
    with Store.open(db_url) as store:
        store.import_project("p", pairs, overlap=1)
        store.record_model_judgements(
            "p",
            "judge:x",
            [
                (
                    Judgement(
                        p.pair_id, "judge:x", p.b.id, Strength.BETTER, shown_order=(p.a.id, p.b.id), kind="model"
                    ),
                    [],
                )
                for p in pairs
            ],
        )
    result = _run("export", str(tmp_path / "human"), "--project", "p", "--db", db_url)
    assert result.exit_code != 0 and "add --include-model-judgements" in str(result.exception)
    result = _run("export", str(tmp_path / "ai"), "--project", "p", "--include-model-judgements", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert "model_judgements=3" in result.output
    assert "**Annotators**: AI-only" in (tmp_path / "ai" / "README.md").read_text()
    table = tmp_path / "j.jsonl"
    args = ["export", str(table), "--project", "p", "--judgements", "--include-model-judgements", "--db", db_url]
    result = _run(*args)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["annotator_kind"] for line in table.read_text().splitlines()] == ["model"] * 3
