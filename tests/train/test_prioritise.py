"""`prefkit annotate prioritise` end to end with tiny reward models: every open pair gets the
priority its model's Bradley–Terry probability gives (checked against the model's own rewards),
the run names each model's weights by sha256, the claim serves the queue in that order, two
models give their disagreement, and an interrupted run is resumed without scoring a pair twice."""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefkit.annotate.store import Store
from prefkit.annotate.store.predictions import verdict_from_probability
from prefkit.cli import app
from prefkit.data.schema import Judgement, Pair, Prompt, Response, Strength
from prefkit.train.prioritise import (
    RewardPairScorer,
    binary_entropy,
    disagreement,
    judge_probability,
    preference_probability,
    prioritise,
    reward_model_scorer,
    uncertainty,
)


def _pairs(n: int) -> list[Pair]:
    """Pairs whose answers differ in length and words, so a random reward model tells them apart."""
    words = ["phở", "trà", "mưa", "sông", "núi", "biển", "gió", "nắng"]
    return [
        Pair(
            Prompt(f"Câu hỏi {i}: kể về {words[i % 8]}?"),
            Response(" ".join(words[(i + k) % 8] for k in range(1 + i % 5)), model="m"),
            Response(" ".join(words[(i * 3 + k) % 8] for k in range(1 + (i * 7) % 6)), model="m"),
        )
        for i in range(n)
    ]


def _classifier(tiny_model_path: Path, out: Path, seed: int) -> Path:
    """A randomly initialised sequence classifier on the tiny model, saved as the reward stage saves one."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)  # rewards spread well beyond rounding
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def reward_models(tiny_model_path, tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("rms")
    return [_classifier(tiny_model_path, root / f"rm{i}", seed=i) for i in range(2)]


def _store(tmp_path: Path, n: int = 24, calibration: float = 0.1) -> tuple[str, list[Pair]]:
    db = str(tmp_path / "annotations.db")
    pairs = _pairs(n)
    with Store.open(db) as store:
        store.import_project("p", pairs, overlap=1, calibration=calibration, seed=5)
        store.add_user("lan")
    return db, pairs


def _invoke(*args: str):
    return CliRunner().invoke(app, ["annotate", "prioritise", *args])


def test_priority_formulas():
    assert uncertainty(0.5) == 1.0 and uncertainty(0.0) == uncertainty(1.0) == 0.0
    assert uncertainty(0.2) == pytest.approx(uncertainty(0.8)) == pytest.approx(0.7219280948873623)
    assert uncertainty(0.6) > uncertainty(0.7) > uncertainty(0.99)
    assert preference_probability(2.0, 2.0) == 0.5
    assert preference_probability(1.0, 0.0) == pytest.approx(1 / (1 + math.exp(-1)))
    assert preference_probability(-800.0, 0.0) == pytest.approx(0.0)  # no overflow
    # BALD: agreeing models have no disagreement, however unsure; opposite sure ones the most
    assert disagreement([0.5, 0.5, 0.5]) == 0.0 and disagreement([0.9, 0.9]) == pytest.approx(0.0)
    assert disagreement([0.01, 0.99]) == pytest.approx(1 - binary_entropy(0.01))
    assert disagreement([0.2, 0.8]) > disagreement([0.4, 0.6]) > 0


def test_prioritise_end_to_end_with_a_tiny_reward_model(reward_models, tmp_path):
    from prefkit.train.reward import load_trained_reward_model, score_conversations

    db, pairs = _store(tmp_path)
    result = _invoke("--project", "p", "--reward-model", str(reward_models[0]), "--db", db, "--no-progress")
    assert result.exit_code == 0, result.output
    weights = reward_models[0] / "model.safetensors"
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert f"sha256 {sha}" in result.output and "uncertainty" in result.output

    store = Store.open(db)
    (run,) = store.priority_runs("p")
    assert run.models == [{"path": str(reward_models[0].resolve()), "weights": "model.safetensors", "sha256": sha}]
    assert run.method == "uncertainty" and run.random_share == 0.2 and run.finished_at >= run.started_at
    scores = store.priority_scores(run.id)
    cal = {pid for pid, how in store.selected_by("p").items() if how == "calibration"}
    assert cal and set(scores) == {p.pair_id for p in pairs} - cal  # every open pair but calibration
    # the stored probability is the model's own Bradley-Terry prediction, the priority its entropy
    model, tok = load_trained_reward_model(reward_models[0])
    convs = [m for p in pairs for m in (p.prompt.messages(p.a.text), p.prompt.messages(p.b.text))]
    rewards = score_conversations(model, tok, convs, batch_size=8, max_length=1024)
    for i, p in enumerate(pairs):
        if p.pair_id in cal:
            continue
        prob = 1 / (1 + math.exp(rewards[2 * i + 1] - rewards[2 * i]))
        priority, (stored,) = scores[p.pair_id]
        assert stored == pytest.approx(prob, abs=1e-4)
        assert priority == pytest.approx(binary_entropy(prob), abs=1e-4)
    spread = sorted(v for v, _ in scores.values())
    assert spread[-1] - spread[0] > 0.2  # the model is sure of some pairs and not of others
    # the same probabilities are the model's predictions, for suggestions and the dashboard
    source = f"rm:{reward_models[0].resolve()}@{sha[:12]}"
    predicted = {pr.pair_id: pr for pr in store.predictions("p", source)}
    assert set(predicted) == set(scores) and {pr.kind for pr in predicted.values()} == {"reward_model"}
    for pair_id, (_, (p_a,)) in scores.items():
        pr = predicted[pair_id]
        p_b = 1 - p_a
        assert pr.side == ("b" if p_b > 0.5 else "a" if p_b < 0.5 else None)
        assert pr.probability == pytest.approx(max(p_b, 1 - p_b), abs=1e-6)
    # the claim serves calibration, then the most uncertain first (one slot in five random)
    how = store.selected_by("p")
    served = []
    while (a := store.claim("p", "lan")) is not None:
        served.append(a.pair.pair_id)
        store.submit(a.id, "lan", Judgement.from_seven_point(a.pair.pair_id, "lan", 1, a.shown_order))
    kinds = [how[pid] for pid in served]
    assert kinds[: len(cal)] == ["calibration"] * len(cal)
    unc = [scores[pid][0] for pid in served if how[pid] == "uncertainty"]
    assert len(unc) > 10 and unc == sorted(unc, reverse=True)
    store.close()


def test_two_models_give_their_disagreement_and_bad_input_is_one_line(reward_models, tmp_path, monkeypatch, capsys):
    db, _ = _store(tmp_path, n=12, calibration=0.0)
    a, b = (str(m) for m in reward_models)
    result = _invoke("--project", "p", "-m", a, "-m", b, "--db", db, "--random-share", "0", "--no-progress")
    assert result.exit_code == 0, result.output
    with Store.open(db) as store:
        (run,) = store.priority_runs("p")
        assert run.method == "disagreement" and [m["path"] for m in run.models] == [
            str(Path(x).resolve()) for x in (a, b)
        ]
        scores = store.priority_scores(run.id)
        assert len(scores) == 12
        for priority, probs in scores.values():
            assert len(probs) == 2 and priority == pytest.approx(disagreement(probs), abs=1e-9)
        order = [e.priority for e in store.queue_order("p")]
        assert order == sorted(order, reverse=True)
    for args, message in (
        (["--project", "nope", "-m", a], "no project named 'nope'"),
        (["--project", "p", "-m", str(tmp_path / "missing")], "no such folder"),
        (["--project", "p", "-m", str(tmp_path)], "no weights file"),
        (["--project", "p", "-m", a, "--method", "disagreement"], "needs two or more"),
        (["--project", "p"], "at least one reward model"),
        (["--project", "p", "-m", a, "--random-share", "2"], "between 0 and 1"),
    ):
        code, err = _main(monkeypatch, capsys, *args, "--db", db)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, (args, err)
    result = _invoke("--project", "p", "--clear", "--db", db)
    assert result.exit_code == 0 and "12 pairs left the ranked queue" in result.output


def test_judge_levels_read_back_as_the_probabilities_suggestions_give():
    """A judge's verdict read as P(a preferred) lands in the level's own band of the suggestions'
    mapping (read back, the same side and level), unsure is 0.5, and the sides mirror."""
    for strength in Strength:
        for side in ("a", "b"):
            p_a = judge_probability(side, strength)
            assert (p_a > 0.5) == (side == "a")
            assert verdict_from_probability(1 - p_a)[:2] == (side, strength)
            assert judge_probability("b" if side == "a" else "a", strength) == pytest.approx(1 - p_a)
    assert judge_probability(None, Strength.NEGLIGIBLY_BETTER) == 0.5
    assert judge_probability("a", Strength.SIGNIFICANTLY_BETTER) == pytest.approx(1 / (1 + math.exp(-1)))


def _judge(store: Store, pairs: list[Pair], name: str, sides: dict[str, str | None]) -> None:
    """`name`'s verdicts (significantly better, or unsure) on the pairs in `sides`, as `annotate judge` records them."""
    items = []
    for p in pairs:
        if p.pair_id not in sides:
            continue
        side = sides[p.pair_id]
        preferred = None if side is None else (p.a.id if side == "a" else p.b.id)
        strength = Strength.NEGLIGIBLY_BETTER if side is None else Strength.SIGNIFICANTLY_BETTER
        j = Judgement(p.pair_id, name, preferred, strength, shown_order=(p.a.id, p.b.id), kind="model")
        items.append((j, [{"shown": [p.a.id, p.b.id], "answer": str(side), "choice": None, "signed": None}]))
    store.record_model_judgements("p", name, items)


def test_a_judge_on_the_committee_puts_first_the_pairs_it_disputes_with_the_reward_model(
    reward_models, tmp_path, monkeypatch, capsys
):
    """`--judge NAME` beside a reward model: the judge's stored verdicts join the committee (its
    probability from its level), the priority is their disagreement, and the pairs where the judge
    points the other way from the reward model come first; a judge that has not seen every open
    pair, an unknown judge, a judge alone or with --method uncertainty is one line, exit 2."""
    db, pairs = _store(tmp_path, n=16, calibration=0.0)
    rm = reward_model_scorer(reward_models[0])
    p_rm = dict(zip([p.pair_id for p in pairs], rm.probabilities(pairs), strict=True))
    rm_side = {i: "a" if p > 0.5 else "b" for i, p in p_rm.items()}
    flip = {"a": "b", "b": "a"}
    disputed = {p.pair_id for k, p in enumerate(pairs) if k % 2 == 0}
    sides: dict[str, str | None] = {i: flip[s] if i in disputed else s for i, s in rm_side.items()}
    judge = "judge:hf:test"
    with Store.open(db) as store:
        _judge(store, pairs[:-1], judge, sides)  # one open pair not judged yet
    code, err = _main(monkeypatch, capsys, "--project", "p", "-m", str(reward_models[0]), "--judge", judge, "--db", db)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "no verdict on 1 of the 16 open pairs" in err and "prefkit annotate judge" in err
    with Store.open(db) as store:
        assert store.priority_runs("p") == []  # refused before a run started
        _judge(store, pairs, judge, sides)

    result = _invoke("--project", "p", "-m", str(reward_models[0]), "-j", judge, "--db", db, "--random-share", "0")
    assert result.exit_code == 0, result.output
    assert f"judge {judge}" in result.output and "disagreement" in result.output
    with Store.open(db) as store:
        (run,) = store.priority_runs("p")
        assert run.method == "disagreement" and run.models[1]["judge"] == judge
        scores = store.priority_scores(run.id)
        for pair_id, (priority, (p_model, p_judge)) in scores.items():
            assert p_model == pytest.approx(p_rm[pair_id], abs=1e-4)
            assert p_judge == pytest.approx(judge_probability(sides[pair_id], Strength.SIGNIFICANTLY_BETTER))
            assert priority == pytest.approx(disagreement([p_model, p_judge]), abs=1e-9)
            # the judge pointing the other way always weighs more than agreeing with the same model
            other = judge_probability(flip[sides[pair_id]], Strength.SIGNIFICANTLY_BETTER)
            if abs(p_model - 0.5) > 1e-6:  # (a pair of two identical answers has no side)
                assert (priority > disagreement([p_model, other])) == (pair_id in disputed)
        order = [e.pair_id for e in store.queue_order("p")]
        first_half = order[: len(order) // 2]
        assert sum(i in disputed for i in first_half) >= 6, (first_half, disputed)  # of 8
        # a judge's verdicts are its predictions already: prioritise records only the reward model's
        assert {s["source"] for s in store.prediction_sources("p")} == {judge, _source(reward_models[0])}

    for args, message in (
        (["-m", str(reward_models[0]), "--judge", "judge:nobody"], "no verdicts of that judge"),
        (["--judge", judge], "--judge needs a --reward-model"),
        (["-m", str(reward_models[0]), "--judge", judge, "--method", "uncertainty"], "use --method disagreement"),
    ):
        code, err = _main(monkeypatch, capsys, "--project", "p", *args, "--db", db)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, (args, err)


def _source(model_dir: Path) -> str:
    sha = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    return f"rm:{model_dir.resolve()}@{sha[:12]}"


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`prefkit annotate prioritise ARGS` through `prefkit.cli.main`, the installed command's path
    (a PrefkitError is one stderr line, exit 2): (exit code, stderr)."""
    from prefkit.cli import main

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["prefkit", "annotate", "prioritise", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code or 0, capsys.readouterr().err


class _Stops(Exception):
    pass


def test_an_interrupted_prioritise_resumes_where_it_stopped(reward_models, tmp_path):
    db, pairs = _store(tmp_path, n=20, calibration=0.0)
    real = reward_model_scorer(reward_models[0])
    calls = []

    def dies_on_second_chunk(prompts, completions):
        calls.append(len(completions))
        if len(calls) == 2:
            raise _Stops()  # the machine goes away mid-run
        return real.reward(prompts, completions)

    with Store.open(db) as store:
        with pytest.raises(_Stops):
            prioritise(store, "p", [RewardPairScorer(dies_on_second_chunk, real.identity)], chunk=8)
        (run,) = store.priority_runs("p")
        assert run.finished_at is None and run.scored == 8
        assert not store.queue_order("p")  # the queue is not ranked from half a run
        before = set(store.priority_scores(run.id))
        again = prioritise(store, "p", [real], chunk=8)
        assert again.run.id == run.id and again.scored_before == 8 and again.scored_now == 12 and again.resumed
        now = {s.pair_id for s in again.scores}
        assert now.isdisjoint(before) and now | before == {p.pair_id for p in pairs}  # none scored twice
        assert len(store.priority_scores(run.id)) == 20 and again.run.ranked == 20
        assert sum(again.queue.values()) == 20 and set(again.queue) <= {"random", "uncertainty"}
