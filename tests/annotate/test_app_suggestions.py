"""Model suggestions on the Label page and models on the dashboard, through Streamlit's AppTest on a
real SQLite store: `after` shows the model's prediction once the choice is recorded and waits for
Next; `before` shows it up front; a holdout claim shows nothing; every judgement records what was
shown; the dashboard compares models with people and exports with or without the AI judges."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from streamlit.testing.v1 import AppTest

from dev.app_driver import button_names as _buttons
from dev.app_driver import signed_in as _signed_in
from prefkit.annotate.render import escape_text, safe_markdown
from prefkit.annotate.store import Store
from prefkit.data.schema import Judgement, Pair, Prompt, Response, Strength

SOURCE = "rm:round-1"


@dataclass
class Seeded:
    store: Store
    admin: str
    annotator: str
    pairs: list[Pair]


@pytest.fixture
def seeded(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    store = Store.open(sqlite_url)
    pairs = [Pair(Prompt(f"Câu hỏi {i}: vì sao?"), Response(f"Đáp A{i}"), Response(f"Đáp B{i}")) for i in range(5)]
    store.import_project("demo", pairs, overlap=1)
    store.record_predictions("demo", SOURCE, {p.pair_id: 0.7 for p in pairs})  # b better, 70 %
    admin, annotator = store.add_user("alice", admin=True), store.add_user("bob")
    monkeypatch.setenv("PREFKIT_DB", sqlite_url)
    return Seeded(store, admin, annotator, pairs)


def _click(at: AppTest, name: str) -> AppTest:
    (button,) = [b for b in at.button if b.key and b.key.rsplit("-", 1)[0] == name]
    return button.click().run()


def _text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def _shown(at: AppTest, seeded: Seeded) -> Pair:
    (pair,) = [p for p in seeded.pairs if safe_markdown(p.prompt.question) in _text(at)]
    return pair


def _judgement(seeded: Seeded, pair: Pair) -> Judgement:
    return {j.pair_id: j for j in seeded.store.judgements("demo")}[pair.pair_id]


def _b_label(seeded: Seeded, pair: Pair) -> str:
    """How the model's "b better" reads to bob, who sees the pair in his own order."""
    order = seeded.store.claim("demo", "bob").shown_order
    return "A better" if order[0] == pair.b.id else "B better"


def test_after_shows_the_prediction_once_chosen_and_waits_for_next(seeded: Seeded) -> None:
    seeded.store.set_suggestions("demo", "after")
    at = _signed_in(seeded.annotator)
    first = _shown(at, seeded)
    label = _b_label(seeded, first)
    assert "Model suggestion" not in _text(at) and "The model predicted" not in _text(at)  # not before the choice

    _click(at, "choice-3")  # "A better"
    assert not at.exception
    assert _shown(at, seeded) == first  # still the same pair
    assert "Your choice: **A better** (recorded)" in _text(at)
    assert f"The model predicted: **{label}** · 70% · reward model {escape_text(SOURCE)}" in _text(at)
    assert not [b for b in _buttons(at) if b.startswith("choice")]  # nothing to choose: 1–9 do nothing
    stored = _judgement(seeded, first)
    assert stored.choice() == -3 and stored.suggestion["when"] == "after" and stored.suggestion["source"] == SOURCE

    _click(at, "next")
    second = _shown(at, seeded)
    assert second != first and "The model predicted" not in _text(at)
    assert [b for b in _buttons(at) if b.startswith("choice")]


def test_undo_after_seeing_the_prediction_records_the_new_choice_as_seen_before(seeded: Seeded) -> None:
    seeded.store.set_suggestions("demo", "after")
    at = _signed_in(seeded.annotator)
    first = _shown(at, seeded)
    _click(at, "choice4")  # "B significantly better"
    _click(at, "undo-reveal")
    assert not at.exception
    assert _shown(at, seeded) == first and seeded.store.judgements("demo") == []
    assert "Model suggestion" in _text(at)  # seen already: shown up front this time
    _click(at, "choice1")
    assert _judgement(seeded, first).suggestion["when"] == "before"
    assert "The model predicted" not in _text(at)  # made with the suggestion seen: no reveal, the next pair
    second = _shown(at, seeded)
    assert second != first

    # Undone later, after Next: the same (the pair's suggestion was seen).
    _click(at, "choice-2")
    _click(at, "next")
    _click(at, "undo")
    assert _shown(at, seeded) == second and "Model suggestion" in _text(at)
    _click(at, "choice3")
    assert _judgement(seeded, second).suggestion["when"] == "before"


def test_before_shows_the_prediction_up_front_and_records_it(seeded: Seeded) -> None:
    seeded.store.set_suggestions("demo", "before")
    at = _signed_in(seeded.annotator)
    first = _shown(at, seeded)
    assert f"Model suggestion: **{_b_label(seeded, first)}** · 70% · reward model {escape_text(SOURCE)}" in _text(at)
    _click(at, "choice-1")
    assert _judgement(seeded, first).suggestion["when"] == "before"
    assert _shown(at, seeded) != first  # no waiting: on to the next pair


def test_off_and_holdout_show_nothing_and_say_so_in_the_record(seeded: Seeded) -> None:
    at = _signed_in(seeded.annotator)  # off (the default)
    first = _shown(at, seeded)
    assert "Model suggestion" not in _text(at)
    _click(at, "choice2")
    assert _judgement(seeded, first).suggestion is None
    assert "The model predicted" not in _text(at)

    seeded.store.set_suggestions("demo", "before", holdout=0.999)  # (almost) every claim held out
    at.run()
    second = _shown(at, seeded)
    assert "Model suggestion" not in _text(at)
    _click(at, "choice2")
    assert _judgement(seeded, second).suggestion["when"] == "holdout"


def test_dashboard_compares_models_with_people_and_exports_with_the_judges(seeded: Seeded) -> None:
    seeded.store.set_suggestions("demo", "before")
    at = _signed_in(seeded.annotator)
    for point in (1, 2, -3):
        _click(at, f"choice{point}")
    judge = "judge:hf:tiny"
    seeded.store.record_model_judgements(
        "demo",
        judge,
        [
            (Judgement(p.pair_id, judge, p.a.id, Strength.BETTER, shown_order=(p.a.id, p.b.id), kind="model"), [])
            for p in seeded.pairs
        ],
    )
    admin = _signed_in(seeded.admin)
    admin.switch_page("ui/dashboard.py").run()
    assert not admin.exception
    assert "Models against people" in [h.value for h in admin.subheader]
    frames = [d.value for d in admin.dataframe]
    (overview,) = [f for f in frames if "kappa" in f.columns]
    assert sorted(overview["model"]) == sorted([judge, SOURCE])
    assert set(overview["judgements"]) == {3}
    (annotators,) = [f for f in frames if "model annotator" in f.columns]
    assert annotators.loc[0, "judgements"] == 5  # apart from people's figures
    per_annotator = frames[1]
    assert list(per_annotator["annotator"]) == ["bob"]  # the judge is no annotator of the team
    assert any("difference" in f.columns for f in frames)  # the anchoring comparison is there
    (models,) = [c.value for c in admin.caption if c.value.startswith("Models: ")]
    assert models == f"Models: {escape_text(judge)}, {escape_text(SOURCE)}", models

    admin.checkbox(key="export-model-judgements").check().run()
    admin.button(key="export").click().run()
    _, summary, _ = admin.session_state["export-result"]
    assert (summary["judgements"], summary["model_judgements"]) == (8, 5)
