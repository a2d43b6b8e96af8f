"""What models say about pairs, in the store, on SQLite and PostgreSQL: a reward model's
predictions recorded in one call, an AI judge's judgements kept apart from people's (the queue's
counters, progress and people's figures never move), the suggestion setting and what each
judgement records of it, the models-against-people figures, and the export with and without the
judges' judgements."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from sqlalchemy import create_engine, select, text

from prefkit.annotate.store import Store
from prefkit.annotate.tables import PairRow
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.schema import Judgement, Strength


@pytest.fixture
def store(db_url, clock):
    s = Store.open(db_url, clock=clock)
    yield s
    s.close()


def _counters(store: Store, project: str) -> dict[str, tuple[int, int, bool]]:
    pid = store.get_project(project).id
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(PairRow.pair_id, PairRow.done, PairRow.held, PairRow.complete).where(PairRow.project_id == pid)
        ).all()
    return {r.pair_id: (r.done, r.held, bool(r.complete)) for r in rows}


def _model(pair, annotator: str, signed: int) -> tuple[Judgement, list[dict]]:
    """A model annotator's judgement of `pair` from a signed level in generation order."""
    preferred = None if signed == 0 else (pair.a.id if signed < 0 else pair.b.id)
    strength = Strength.NEGLIGIBLY_BETTER if signed == 0 else Strength.from_level(abs(signed) - 1)
    j = Judgement(pair.pair_id, annotator, preferred, strength, shown_order=(pair.a.id, pair.b.id), kind="model")
    verdicts = [
        {"shown": [pair.a.id, pair.b.id], "answer": f"verdict {signed}", "choice": signed, "signed": signed},
        {"shown": [pair.b.id, pair.a.id], "answer": f"verdict {-signed}", "choice": -signed, "signed": signed},
    ]
    return j, verdicts


def test_a_reward_models_probabilities_are_recorded_in_one_call(store, make_pairs):
    pairs = make_pairs(7)
    store.import_project("p", pairs, overlap=1)
    # Llama 2's small margins as reward differences: |logit p| >= 1 significantly, >= 2/3 better,
    # >= 1/3 slightly, else negligibly; exactly 0.5 is unsure (no side).
    p_b = [0.5, 0.9, 0.1, 0.7, 0.38, 0.55, 1.0]
    expected = [
        (None, Strength.NEGLIGIBLY_BETTER, 0.5),
        ("b", Strength.SIGNIFICANTLY_BETTER, 0.9),
        ("a", Strength.SIGNIFICANTLY_BETTER, 0.9),
        ("b", Strength.BETTER, 0.7),
        ("a", Strength.SLIGHTLY_BETTER, 0.62),
        ("b", Strength.NEGLIGIBLY_BETTER, 0.55),
        ("b", Strength.SIGNIFICANTLY_BETTER, 1.0),
    ]
    assert store.record_predictions("p", "rm:one", {p.pair_id: x for p, x in zip(pairs, p_b, strict=True)}) == 7
    got = {x.pair_id: x for x in store.predictions("p", "rm:one")}
    for pair, (side, level, q) in zip(pairs, expected, strict=True):
        x = got[pair.pair_id]
        assert (x.side, x.strength, x.kind) == (side, level, "reward_model")
        assert x.probability == pytest.approx(q)
        assert x.preferred == {None: None, "a": pair.a.id, "b": pair.b.id}[side]

    # The same source again replaces its predictions; another source sits beside it.
    store.record_predictions("p", "rm:one", {pairs[1].pair_id: 0.2})
    store.record_predictions("p", "rm:two", {pairs[1].pair_id: 0.95})
    assert store.prediction("p", pairs[1].pair_id, "rm:one").side == "a"
    assert len(store.predictions("p", "rm:one")) == 7
    assert store.prediction("p", pairs[1].pair_id).source == "rm:two"  # no source named: the latest
    assert {s["source"]: s["pairs"] for s in store.prediction_sources("p")} == {"rm:one": 7, "rm:two": 1}

    with pytest.raises(DataError, match="pair nope is not in project 'p'"):
        store.record_predictions("p", "rm:three", {pairs[0].pair_id: 0.9, "nope": 0.1})
    with pytest.raises(DataError, match="probability must be a number from 0 to 1"):
        store.record_predictions("p", "rm:three", {pairs[0].pair_id: 1.5})
    with pytest.raises(ConfigError, match="prediction kind"):
        store.record_predictions("p", "rm:three", {pairs[0].pair_id: 0.5}, kind="oracle")
    assert "rm:three" not in {s["source"] for s in store.prediction_sources("p")}  # nothing half-recorded


def test_an_ai_judges_judgements_never_move_the_queue_or_peoples_figures(store, make_pairs):
    pairs = make_pairs(4)
    store.import_project("p", pairs, overlap=2)
    for name in ("bob", "carol", "dave"):
        store.add_user(name)
    a = store.claim("p", "bob")
    store.submit(a.id, "bob", Judgement.from_choice(a.pair.pair_id, "bob", -2, a.shown_order))
    held = store.claim("p", "carol")  # a live lease
    before = _counters(store, "p")
    progress = store.progress("p", "dave")
    summary = store.project_summaries()["p"]
    dashboard = store.dashboard("p").summary
    people = store.judgements("p")

    judge = "judge:hf:tiny"
    assert store.record_model_judgements("p", judge, [_model(p, judge, 3) for p in pairs]) == 4
    assert store.record_model_judgements("p", judge, [_model(pairs[0], judge, -1)]) == 1  # judged again: replaced

    assert _counters(store, "p") == before
    assert store.progress("p", "dave") == progress
    assert store.project_summaries()["p"] == summary
    assert store.dashboard("p").summary == dashboard
    assert store.judgements("p") == people
    models = store.model_judgements("p")
    assert len(models) == 4 and {j.kind for j in models} == {"model"} and {j.annotator for j in models} == {judge}
    assert {j.pair_id: j.choice() for j in models}[pairs[0].pair_id] == -1
    assert store.model_annotators("p") == [judge]
    # ... and its verdicts are the judge's predictions too (what a suggestion can show).
    assert store.prediction("p", pairs[0].pair_id, judge).side == "a"

    # Bob's pair still needs a second person, the judge's verdict notwithstanding.
    assert not before[a.pair.pair_id][2]
    done_by = Counter()
    for name in ("dave", "carol"):
        while (c := store.claim("p", name)) is not None:
            store.submit(c.id, name, Judgement.from_choice(c.pair.pair_id, name, 1, c.shown_order))
            done_by[c.pair.pair_id] += 1
    assert held.pair.pair_id in done_by
    assert all(complete for _, _, complete in _counters(store, "p").values())
    assert sum(done for done, _, _ in _counters(store, "p").values()) == 8  # 4 pairs x overlap 2: people only


def test_suggestions_setting_and_what_each_judgement_records(store, make_pairs, tmp_path):
    pairs = make_pairs(6)
    store.import_project("p", pairs, overlap=1, seed=3)
    store.add_user("bob")
    assert store.get_project("p").suggestions == "off"
    store.record_predictions("p", "rm:one", {p.pair_id: 0.7 for p in pairs})  # b better
    assert store.suggestion("p", pairs[0].pair_id, "bob") is None  # off: nothing, whatever is stored

    store.set_suggestions("p", "before")
    a = store.claim("p", "bob")
    s = store.suggestion("p", a.pair.pair_id, "bob")
    assert (s.when, s.prediction.source, s.prediction.preferred) == ("before", "rm:one", a.pair.b.id)
    assert s.prediction.label(a.shown_order) == ("A better" if a.shown_order[0] == a.pair.b.id else "B better")
    stored = store.submit(a.id, "bob", Judgement.from_choice(a.pair.pair_id, "bob", 1, a.shown_order), suggestion=s)
    assert stored.suggestion["when"] == "before" and stored.suggestion["source"] == "rm:one"
    (j,) = store.judgements("p")
    assert j.suggestion == {**s.prediction.to_json(), "when": "before"}
    b = store.claim("p", "bob")
    store.submit(b.id, "bob", Judgement.from_choice(b.pair.pair_id, "bob", -1, b.shown_order))  # nothing shown
    assert {x.pair_id: x.suggestion for x in store.judgements("p")}[b.pair.pair_id] is None
    out = tmp_path / "judgements.jsonl"
    store.export_judgements("p", out)
    rows = {r["pair_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert json.loads(rows[a.pair.pair_id]["suggestion"])["when"] == "before"
    assert rows[b.pair.pair_id]["suggestion"] is None and rows[b.pair.pair_id]["annotator_kind"] == "human"

    # A pinned source wins over the latest; `after` is told as such.
    store.record_predictions("p", "judge:x", {p.pair_id: 0.1 for p in pairs}, kind="judge")
    assert store.suggestion("p", pairs[2].pair_id, "bob").prediction.source == "judge:x"
    proj = store.set_suggestions("p", "after", source="rm:one")
    assert (proj.suggestions, proj.suggestion_source) == ("after", "rm:one")
    s = store.suggestion(proj, pairs[2].pair_id, "bob")
    assert (s.when, s.prediction.source) == ("after", "rm:one")

    # The holdout of a `before` project: a seeded share of (pair, user) claims, the same each time.
    proj = store.set_suggestions("p", "before", holdout=0.5)
    names = [f"u{i}" for i in range(24)]
    draws = [store.suggestion(proj, p.pair_id, n).when for p in pairs for n in names]
    assert draws == [store.suggestion(proj, p.pair_id, n).when for p in pairs for n in names]
    assert 0.35 < draws.count("holdout") / len(draws) < 0.65 and set(draws) == {"before", "holdout"}
    with pytest.raises(ConfigError, match="suggestions must be off, after, before"):
        store.set_suggestions("p", "sometimes")
    with pytest.raises(ConfigError, match="holdout must be a share"):
        store.set_suggestions("p", "before", holdout=1.0)


def _judge_all(store: Store, project: str, user: str, choose) -> None:
    """`user` judges every pair the queue gives them, with `choose(assignment) -> (point, suggestion)`."""
    while (a := store.claim(project, user)) is not None:
        point, suggestion = choose(a)
        store.submit(
            a.id, user, Judgement.from_choice(a.pair.pair_id, user, point, a.shown_order), suggestion=suggestion
        )


def _point(a, response_id: str | None, level: int) -> int:
    """The choice that prefers `response_id` at `level` (0..3) as `a` shows the pair; 0 unsure."""
    if response_id is None:
        return 0
    return -(level + 1) if a.shown_order[0] == response_id else level + 1


def test_models_against_people_per_level_kappa_and_confusion(store, make_pairs):
    pairs = make_pairs(8)
    store.import_project("p", pairs, overlap=1)
    store.add_user("ann")
    # People's verdicts in generation order (response, level); the judge's as signed levels.
    people = [
        ("a", 3),
        ("a", 2),
        ("b", 1),
        ("b", 0),
        (None, 0),
        ("b", 3),
        ("a", 1),
        (None, 0),
    ]
    judge = [-4, 3, 2, -1, 0, 4, 0, 2]
    verdicts = {
        p.pair_id: (None if side is None else getattr(p, side).id, lv)
        for p, (side, lv) in zip(pairs, people, strict=True)
    }
    _judge_all(store, "p", "ann", lambda a: (_point(a, *verdicts[a.pair.pair_id]), None))
    store.record_model_judgements("p", "judge:x", [_model(p, "judge:x", s) for p, s in zip(pairs, judge, strict=True)])
    report = store.model_report("p")
    (m,) = report.models
    assert (m.source, m.kind, m.pairs, m.judgements) == ("judge:x", "judge", 8, 8)
    level = {r.level: (r.judgements, r.agree) for r in m.per_level.itertuples()}
    # significantly: a vs a; better: a vs b; slightly: b vs b, a vs unsure; negligibly: b vs a;
    # unsure: unsure vs unsure, unsure vs b
    assert level == {
        "significantly better": (2, 2),
        "better": (1, 0),
        "slightly better": (2, 1),
        "negligibly better": (1, 0),
        "unsure": (2, 1),
    }
    assert m.agreement == pytest.approx(4 / 8)
    # Cohen's kappa on the winner, worked out here: labels a/unsure/b for person and judge.
    person = [-1, -1, 1, 1, 0, 1, -1, 0]
    model = [-1, 1, 1, -1, 0, 1, 0, 1]
    po = sum(x == y for x, y in zip(person, model, strict=True)) / 8
    pe = sum(person.count(k) / 8 * model.count(k) / 8 for k in (-1, 0, 1))
    assert m.kappa == pytest.approx((po - pe) / (1 - pe))
    assert m.confusion.loc["a significantly better", "a significantly better"] == 1
    assert m.confusion.loc["b negligibly better", "a negligibly better"] == 1
    assert int(m.confusion.to_numpy().sum()) == 8
    ((name, figures),) = report.card().items()
    assert name == "judge:x" and figures["per_level"]["better"] == {"n": 1, "agreement": 0.0}
    annotators = report.annotators.set_index("model annotator").loc["judge:x"]
    assert (annotators["judgements"], annotators["unsure"]) == (8, 2)


def test_suggestions_shown_before_are_compared_with_none_shown(store, make_pairs):
    pairs = make_pairs(40)
    store.import_project("p", pairs, overlap=1)
    store.add_user("ann")
    store.record_predictions("p", "rm:one", {p.pair_id: 0.8 for p in pairs})  # b better, every pair
    store.set_suggestions("p", "before")
    index = {p.pair_id: i for i, p in enumerate(pairs)}

    def choose(a):
        # With the suggestion on screen (pairs 0-19), 18 of 20 follow it; without, 8 of 20 choose b.
        i = index[a.pair.pair_id]
        shown, follows = i < 20, (i < 18 if i < 20 else i < 28)
        s = store.suggestion("p", a.pair.pair_id, "ann") if shown else None
        return _point(a, a.pair.b.id if follows else a.pair.a.id, 1), s

    _judge_all(store, "p", "ann", choose)
    (a,) = store.model_report("p").anchoring
    groups = {r.group: (r.judgements, r.agree) for r in a.groups.itertuples()}
    assert groups == {"before": (20, 18), "off": (20, 8), "after": (0, 0), "holdout": (0, 0)}
    assert a.difference == pytest.approx(0.5)
    assert a.ci[0] < 0.5 < a.ci[1] and a.ci[0] > 0  # the interval excludes no effect
    assert a.p_value < 0.01


def test_export_is_human_only_unless_asked_and_says_which(store, make_pairs, tmp_path):
    pairs = make_pairs(4)
    store.import_project("p", pairs, overlap=1)
    store.add_user("ben")  # judges one pair: a significantly better, which the judge's b cancels (a tie)
    a = store.claim("p", "ben")
    store.submit(a.id, "ben", Judgement.from_choice(a.pair.pair_id, "ben", _point(a, a.pair.a.id, 3), a.shown_order))
    store.record_model_judgements("p", "judge:x", [_model(p, "judge:x", 4) for p in pairs])

    human = store.export("p", tmp_path / "human")
    assert (human.judgements, human.model_judgements, human.exported) == (1, 0, 1)
    card = (tmp_path / "human" / "README.md").read_text()
    assert "**Annotators**: human-only" in card and "## AI judges against people" in card
    assert "Confusion matrix of `judge:x`" in card  # ben's a significantly better against the judge's b

    mixed = store.export("p", tmp_path / "mixed", include_model_judgements=True, test_size=0.0)
    assert (mixed.judgements, mixed.model_judgements, mixed.exported) == (5, 4, 3)
    assert (
        "**Annotators**: mixed (1 judgements by people, 4 by AI judges)" in (tmp_path / "mixed/README.md").read_text()
    )
    from datasets import load_from_disk

    rows = load_from_disk(str(tmp_path / "mixed"))["train"]
    assert sorted(zip(rows["n_annotators"], rows["n_model_annotators"], strict=True)) == [(1, 1)] * 3

    store.import_project("q", pairs, overlap=1)
    store.record_model_judgements("q", "judge:x", [_model(p, "judge:x", -2) for p in pairs])
    with pytest.raises(DataError, match="add --include-model-judgements"):
        store.export("q", tmp_path / "none")
    ai = store.export("q", tmp_path / "ai", include_model_judgements=True)
    assert ai.model_judgements == ai.judgements == 4
    assert "**Annotators**: AI-only" in (tmp_path / "ai" / "README.md").read_text()
    table = tmp_path / "q.jsonl"
    assert store.export_judgements("q", table, include_model_judgements=True) == 4
    assert {json.loads(line)["annotator_kind"] for line in table.read_text().splitlines()} == {"model"}


def test_a_store_from_before_suggestions_opens_with_them_off(db_url, make_pairs):
    with Store.open(db_url) as store:
        store.import_project("p", make_pairs(2), overlap=1)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        for column in ("suggestions", "suggestion_source", "suggestion_holdout"):
            conn.execute(text(f"ALTER TABLE projects DROP COLUMN {column}"))
        conn.execute(text("ALTER TABLE judgements DROP COLUMN suggestion"))
        conn.execute(text("DROP TABLE predictions"))
        conn.execute(text("DROP TABLE model_judgements"))
    engine.dispose()
    with Store.open(db_url) as store:
        proj = store.get_project("p")
        assert (proj.suggestions, proj.suggestion_source, proj.suggestion_holdout) == ("off", None, 0.0)
        assert store.predictions("p") == [] and store.model_judgements("p") == []
