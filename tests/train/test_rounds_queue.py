"""`queue: uncertainty` in a rounds project: each round's pairs go into a store project, the last
finished round's reward model orders them, and rounds.json records which model (folder and
sha256 of its weights) ordered which round's queue. Rounds are built by hand up to the step under
test (generation and training have their own tests)."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from prefkit.annotate.store import Store
from prefkit.core.errors import ConfigError
from prefkit.data.schema import Pair, Prompt, Response
from prefkit.data.writers import write_pairs


def _pairs(n: int, tag: str) -> list[Pair]:
    return [
        Pair(
            Prompt(f"{tag} câu {i}: nói về trà?"),
            Response(f"trà xanh {'ngon ' * (i % 4)}", model="policy"),
            Response(f"trà đen {'đắng ' * ((i * 3) % 5)}", model="policy"),
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def reward_model(tiny_model_path, tmp_path_factory):
    """A randomly initialised reward model saved as the reward stage saves one."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("round-rm") / "model"
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _project(tmp_path, **extra):
    from prefkit.train.rounds import RoundProject

    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "rounds.yaml"
    config.write_text(yaml.safe_dump({"model": "m", "prompts": "p.jsonl", **extra}))
    return RoundProject.init(tmp_path / "proj", config)


def _generated(project, n: int, count: int, reward_dir=None) -> dict:
    """Round n with its pairs generated (and, when `reward_dir`, its reward model trained and the round done)."""
    folder = project.folder / f"round-{n}" / "pairs"
    folder.mkdir(parents=True)
    write_pairs(_pairs(count, f"r{n}"), folder / "pairs.parquet")
    rnd = {
        "round": n,
        "method": "ppo",
        "status": "running",
        "dir": f"round-{n}",
        "policy": {"model": "m", "adapter": None},
        "next_policy": None,
        "steps": {"generate": {"output": f"round-{n}/pairs", "command": "prefkit generate"}},
    }
    project.state["rounds"].append(rnd)
    project.save()
    return rnd


def test_uncertainty_queue_is_ordered_by_the_previous_rounds_reward_model(reward_model, tmp_path):
    from prefkit.train.rounds import AwaitingJudgements, RoundProject, RoundRunner, run_round, status_text

    db = tmp_path / "annotations.db"
    project = _project(
        tmp_path,
        queue="uncertainty",
        annotate={"db": str(db), "overlap": 1, "random_share": 0.25, "project": "tea-{round}"},
    )
    r1 = _generated(project, 1, 12)
    RoundRunner(project, r1).queue()
    step = project.state["rounds"][0]["steps"]["queue"]
    assert step["project"] == "tea-1" and step["pairs"] == 12 and step["ordered_by"] is None  # no model yet
    with Store.open(str(db)) as store:
        assert store.count_pairs("tea-1") == 12 and store.priority_runs("tea-1") == []
    # round 1 trains its reward model and finishes; round 2's pairs are ordered by it
    r1["steps"]["reward"] = {"output": str(reward_model), "command": "prefkit train reward"}
    r1["status"], r1["next_policy"] = "done", {"model": "m", "adapter": None}
    project.save()
    _generated(project, 2, 16)
    project = RoundProject(project.folder)
    with pytest.raises(AwaitingJudgements, match=r"project tea-2 of the store .*ordered by round 1's reward model"):
        run_round(project.folder)
    state = json.loads((project.folder / "rounds.json").read_text())
    step = state["rounds"][1]["steps"]["queue"]
    sha = hashlib.sha256((reward_model / "model.safetensors").read_bytes()).hexdigest()
    assert step["ordered_by"]["round"] == 1 and step["ordered_by"]["sha256"] == sha
    assert step["ordered_by"]["weights"] == "model.safetensors" and step["ordered_by"]["random_share"] == 0.25
    assert "prefkit annotate prioritise --project tea-2 --reward-model" in step["command"]
    assert step["data"]["inputs"][str(reward_model)].startswith("sha256:")
    with Store.open(str(db)) as store:
        (run,) = store.priority_runs("tea-2")
        assert run.id == step["ordered_by"]["run"] and run.models[0]["sha256"] == sha
        assert run.random_share == 0.25 and len(store.queue_order("tea-2")) == 16
        assert sum(step["ordered_by"]["queue"].values()) == 16
    assert "ordered by round 1's reward model" in status_text(project.folder)
    # run again: the queue step is done, nothing is imported or scored twice
    with pytest.raises(AwaitingJudgements):
        run_round(project.folder)
    with Store.open(str(db)) as store:
        assert len(store.priority_runs("tea-2")) == 1 and store.count_pairs("tea-2") == 16


def test_shuffle_queue_with_a_store_imports_without_ordering_and_config_errors(reward_model, tmp_path):
    from prefkit.train.rounds import RoundRunner

    db = tmp_path / "annotations.db"
    project = _project(tmp_path, annotate={"db": str(db)})
    r1 = _generated(project, 1, 5)
    r1["steps"]["reward"], r1["status"] = {"output": str(reward_model), "command": "prefkit train reward"}, "done"
    r1["next_policy"] = {"model": "m", "adapter": None}
    r2 = _generated(project, 2, 6)
    RoundRunner(project, r2).queue()
    step = r2["steps"]["queue"]
    assert step["queue"] == "shuffle" and step["ordered_by"] is None and "prioritise" not in step["command"]
    with Store.open(str(db)) as store:
        assert store.count_pairs("round-2") == 6 and store.priority_runs("round-2") == []
    with pytest.raises(ConfigError, match=r"queue: uncertainty needs annotate\.db"):
        _project(tmp_path / "x", queue="uncertainty")
    with pytest.raises(ConfigError, match=r"rounds\.yaml: queue: must be one of"):
        _project(tmp_path / "y", queue="fifo")
