"""Two iterative rounds end to end on the tiny model, recorded in rounds.json:
generate → scripted judge (a labelled file) → export → reward → policy (rejection sampling, then PPO)."""

import json
from pathlib import Path

import pytest
import yaml

from prefkit.data.schema import Judgement, Strength

QUESTIONS = [
    "Xin chào",
    "Viết một câu về phở",
    "Tính tổng 1 đến 10",
    "Hà Nội mùa thu",
    "Giải thích quang hợp",
    "Kể về sông Hồng",
    "Mô tả áo dài",
    "Nói về trà",
]


def scripted_judge(pairs_dir: Path, out: Path) -> int:
    """Prefers the answer with more letters 'a' (longer on a tie); strength grows with the gap."""
    from prefkit.data.readers import read_pairs
    from prefkit.data.writers import write_judgements

    judgements = []
    for pair in read_pairs(pairs_dir):
        score = {r.id: (r.text.count("a"), len(r.text)) for r in (pair.a, pair.b)}
        win = max(score, key=score.__getitem__)
        gap = abs(score[pair.a.id][0] - score[pair.b.id][0])
        judgements.append(
            Judgement(
                pair.pair_id,
                "script",
                win,
                Strength.from_level(max(1, min(3, gap))),
                shown_order=(pair.a.id, pair.b.id),
            )
        )
    write_judgements(judgements, out)
    return len(judgements)


def write_configs(root: Path, model: Path) -> Path:
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"question": q}, ensure_ascii=False) + "\n" for q in QUESTIONS))
    stages = {
        "generate": {
            "engine": "hf",
            "temperatures": [0.8, 1.3],
            "max_tokens": 12,
            "batch_size": 16,
            "device": "cpu",
            "dtype": "float32",
            "progress": False,
            "near_duplicate_threshold": 1.0,
        },
        "reward": {
            "max_steps": 4,
            "batch_size": 4,
            "lr": 3e-3,
            "save_steps": 100,
            "logging_steps": 1,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
            "data": {"max_length": 128},
        },
        "sft": {
            "max_steps": 3,
            "batch_size": 4,
            "lr": 3e-3,
            "save_steps": 100,
            "logging_steps": 1,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
            "data": {"max_length": 128},
        },
        "best_of_k": {"k": 3, "max_new_tokens": 12, "device": "cpu", "batch_size": 24},
        "ppo": {
            "max_steps": 2,
            "batch_size": 4,
            "mini_batch_size": 4,
            "ppo_epochs": 1,
            "max_new_tokens": 8,
            "save_steps": 0,
            "lr": 1e-3,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        },
    }
    for name, body in stages.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(body))
    rounds = {
        "model": str(model),
        "prompts": str(prompts),
        "methods": ["rejection_sampling", "ppo"],
        "test_size": 0.25,
        **{name: str(root / f"{name}.yaml") for name in stages},
    }
    (root / "rounds-test.yaml").write_text(yaml.safe_dump(rounds))
    return root / "rounds-test.yaml"


@pytest.mark.slow
def test_two_rounds_rejection_sampling_then_ppo(tiny_model_path, tmp_path):
    from datasets import load_from_disk

    from prefkit.data.readers import read_pairs
    from prefkit.train.rounds import AwaitingJudgements, RoundProject, run_round, status_text

    config = write_configs(tmp_path, tiny_model_path)
    project = tmp_path / "project"
    RoundProject.init(project, config)
    for n in (1, 2):
        with pytest.raises(AwaitingJudgements, match=f"round {n}: pairs are in"):
            run_round(project)
        state = json.loads((project / "rounds.json").read_text())
        assert state["rounds"][-1]["status"] == "awaiting_judgements"
        labels = tmp_path / f"labels-{n}.parquet"
        assert scripted_judge(project / state["rounds"][-1]["steps"]["generate"]["output"], labels) > 0
        run_round(project, judgements=labels)

    state = json.loads((project / "rounds.json").read_text())
    r1, r2 = state["rounds"]
    assert [r1["method"], r2["method"]] == ["rejection_sampling", "ppo"]
    assert r1["status"] == r2["status"] == "done"
    assert r1["policy"] == {"model": str(tiny_model_path), "adapter": None}
    # round 1's SFT adapter is round 2's policy, and round 2's pairs were sampled from it
    assert r1["next_policy"] == {"model": str(tiny_model_path), "adapter": str(project / "round-1" / "sft" / "model")}
    assert r2["policy"] == r1["next_policy"]
    pairs = read_pairs(project / r2["steps"]["generate"]["output"])
    assert pairs and {p.a.adapter for p in pairs} == {r1["next_policy"]["adapter"]}
    # round 2 started from round 1's adapter: PPO kept training it and saved it as an adapter over the base
    assert r2["next_policy"] == {"model": str(tiny_model_path), "adapter": str(project / "round-2" / "ppo" / "model")}
    assert (project / "round-2" / "ppo" / "model" / "adapter_config.json").exists()
    for rnd, policy_cmd in ((r1, "prefkit train sft"), (r2, "prefkit train ppo")):
        steps = rnd["steps"]
        assert steps["export"]["rows"] > 0
        assert (project / steps["reward"]["output"]).is_dir()
        assert steps["policy"]["command"].startswith(policy_cmd)
        for step in steps.values():  # every recorded config file exists beside its output
            for word in step["command"].split():
                if word.endswith(".yaml"):
                    assert (project / word).is_file(), word
    assert r2["steps"]["reward"]["output"].endswith("reward/model")
    # Llama 2: round 2's reward model trained on both rounds' labels (reward_data: all, the default)
    rd = r2["steps"]["reward"]["reward_data"]
    assert (
        rd["rounds"] == [1, 2]
        and rd["rows"] == r1["steps"]["export"]["rows"] + r2["steps"]["export"]["rows"] - rd["duplicates_dropped"]
    )
    assert r1["steps"]["reward"]["reward_data"]["rounds"] == [1]
    reward_yaml = yaml.safe_load((project / "round-2" / "reward.yaml").read_text())
    assert reward_yaml["data"]["source"] == str(project / "round-2" / "reward-data")
    assert set(r2["steps"]["reward"]["data"]["inputs"]) == {"round-1/dataset", "round-2/dataset"}
    assert r2["steps"]["reward"]["data"]["outputs"]["round-2/reward-data"].startswith("sha256:")
    assert r2["steps"]["reward"]["metrics"]["test_accuracy_by_strength"]  # per-strength accuracy is kept
    for rnd in (r1, r2):
        for name, step in rnd["steps"].items():
            assert step["code"]["prefkit"] and "git_commit" in step["code"], name
            assert step["libraries"]["torch"] and step["libraries"]["transformers"], name
            assert all(h is None or h.startswith("sha256:") for h in step["data"]["inputs"].values()), name
    assert r1["steps"]["export"]["data"]["outputs"]["round-1/dataset"].startswith("sha256:")
    assert set(r1["steps"]["export"]["data"]["inputs"]) == {"round-1/pairs", "round-1/judgements/labels-1.parquet"}
    assert "best_of_k" in r1["steps"] and "best_of_k" not in r2["steps"]
    assert r1["steps"]["best_of_k"]["splits"] == list(load_from_disk(str(project / r1["steps"]["best_of_k"]["output"])))

    text = status_text(project)
    assert "round 1 [rejection_sampling] done" in text and "round 2 [ppo] done" in text
    assert f"$ prefkit train ppo --config {project / 'round-2' / 'ppo.yaml'}" in text
    assert f"current policy: {tiny_model_path} + adapter {project / 'round-2' / 'ppo' / 'model'}" in text


def test_round_cli_init_status_and_clear_errors(tmp_path):
    from typer.testing import CliRunner

    from prefkit.cli import app

    config = tmp_path / "rounds.yaml"
    config.write_text(yaml.safe_dump({"model": "some/model", "prompts": "p.jsonl", "methods": ["ppo"]}))
    runner = CliRunner()
    result = runner.invoke(app, ["round", "init", str(tmp_path / "proj"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "current policy: some/model" in result.output
    state = json.loads((tmp_path / "proj" / "rounds.json").read_text())
    assert state["rounds"] == [] and state["initial_policy"] == {"model": "some/model", "adapter": None}

    status = runner.invoke(app, ["round", "status", str(tmp_path / "proj")])
    assert status.exit_code == 0 and "project" in status.output

    from prefkit.core.errors import ConfigError, DataError
    from prefkit.train.rounds import RoundProject

    with pytest.raises(ConfigError, match="already a rounds project"):
        RoundProject.init(tmp_path / "proj", config)
    config.write_text(yaml.safe_dump({"model": "m", "prompts": "p", "methods": ["dpo"]}))
    with pytest.raises(ConfigError, match="methods"):
        RoundProject.init(tmp_path / "other", config)
    assert not (tmp_path / "other" / "rounds.json").exists()

    config.write_text(yaml.safe_dump({"model": "m", "prompts": "p", "methods": ["ppo"]}))
    mine = tmp_path / "mine"  # a folder holding the user's own files is never written into
    mine.mkdir()
    (mine / "rounds.yaml").write_text("my own notes\n")
    refused = runner.invoke(app, ["round", "init", str(mine), "--config", str(config)])
    assert isinstance(refused.exception, DataError) and "not empty" in str(refused.exception)  # exit 2, one line
    assert (mine / "rounds.yaml").read_text() == "my own notes\n" and sorted(p.name for p in mine.iterdir()) == [
        "rounds.yaml"
    ]
    (tmp_path / "empty").mkdir()
    assert runner.invoke(app, ["round", "init", str(tmp_path / "empty"), "--config", str(config)]).exit_code == 0


@pytest.mark.slow
def test_round_export_card_names_its_source_format_and_counts(tiny_model_path, tmp_path):
    """The export step goes through prefkit.data.export.export_judged: the card has the pairs' source,
    their format and the aggregation counts, like `prefkit data export --judgements`."""
    from prefkit.train.rounds import AwaitingJudgements, RoundProject, RoundRunner, run_round

    project = tmp_path / "project"
    RoundProject.init(project, write_configs(tmp_path, tiny_model_path))
    with pytest.raises(AwaitingJudgements):
        run_round(project)
    state = json.loads((project / "rounds.json").read_text())
    labels = tmp_path / "labels.parquet"
    judged = scripted_judge(project / state["rounds"][-1]["steps"]["generate"]["output"], labels)
    proj = RoundProject(project)
    runner = RoundRunner(proj, proj.state["rounds"][-1])
    runner.judgements(labels)
    runner.export()
    step = proj.state["rounds"][-1]["steps"]["export"]
    card = (project / step["output"] / "README.md").read_text(encoding="utf-8")
    assert f"`{project / 'round-1' / 'pairs'}` (format `pairs`)" in card
    assert f"- **Judgements**: `{project / 'round-1' / 'judgements' / 'labels.parquet'}`" in card
    assert f"{judged} pairs, {judged} judgements, {step['rows']} exported" in card and step["rows"] > 0


def _fake_round(project, n, rows, tmp_path):
    """A round whose export step is done (an exported dataset of `rows`), as `run_round` records it."""
    from prefkit.data.export import export_dataset

    out = project.folder / f"round-{n}" / "dataset"
    export_dataset(rows, out, test_size=0.25, seed=n)
    project.state["rounds"].append(
        {
            "round": n,
            "method": "ppo",
            "status": "running",
            "dir": f"round-{n}",
            "policy": {"model": "m", "adapter": None},
            "next_policy": None,
            "steps": {"export": {"output": f"round-{n}/dataset", "rows": len(rows)}},
        }
    )
    return project.state["rounds"][-1]


def test_reward_data_all_accumulates_rounds_dedups_pairs_and_mixes_open_data_by_share(tmp_path):
    from prefkit.data.export import export_dataset
    from prefkit.data.readers import read_preferences
    from prefkit.data.schema import PreferenceRow, Strength
    from prefkit.train.rounds import RoundProject, RoundRunner

    def row(i, flip=False, strength=Strength.BETTER):
        a, b = f"trả lời tốt {i}", f"trả lời kém {i}"
        return PreferenceRow(
            question=f"câu hỏi {i}", chosen=b if flip else a, rejected=a if flip else b, strength=strength
        )

    open_rows = [PreferenceRow(question=f"open {i}", chosen=f"yes {i}", rejected=f"no {i}") for i in range(100)]
    export_dataset(open_rows, tmp_path / "open", test_size=0.0, seed=0)
    config = tmp_path / "rounds.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": "m",
                "prompts": "p.jsonl",
                "test_size": 0.25,
                "reward_mix": [{"source": str(tmp_path / "open"), "share": 0.2}],
            }
        )
    )
    project = RoundProject.init(tmp_path / "proj", config)
    _fake_round(project, 1, [row(i) for i in range(8)], tmp_path)
    # round 2 labels pairs 6, 7 again (7 the other way round) and 8 new pairs
    r2 = _fake_round(
        project,
        2,
        [row(6), row(7, flip=True, strength=Strength.SLIGHTLY_BETTER)] + [row(i) for i in range(8, 16)],
        tmp_path,
    )
    source, info, inputs = RoundRunner(project, r2).reward_data()
    assert source == project.folder / "round-2" / "reward-data"
    assert info["rounds"] == [1, 2] and info["rows_read"] == 18 and info["duplicates_dropped"] == 2
    # 16 distinct pairs are 80 %: open data adds round(0.2 × 16 / 0.8) = 4 rows
    assert info["mix"][0]["wanted"] == 4 and info["mix"][0]["rows"] == 4 and info["rows"] == 20
    got = [r for split in ("train", "test") for r in read_preferences(source, split)]
    assert len(got) == 20 and sum(r.question.startswith("open") for r in got) == 4
    seven = [r for r in got if r.question == "câu hỏi 7"]
    assert len(seven) == 1 and seven[0].chosen == "trả lời kém 7"  # the newest label wins
    assert seven[0].strength == Strength.SLIGHTLY_BETTER
    assert {str(p) for p in inputs} == {
        str(project.folder / "round-1" / "dataset"),
        str(project.folder / "round-2" / "dataset"),
        str(tmp_path / "open"),
    }
    # the train and test splits share no prompt
    train_q = {r.question for r in read_preferences(source, "train")}
    assert not train_q & {r.question for r in read_preferences(source, "test")}

    project.cfg.reward_data, project.cfg.reward_mix = "round", []
    own, info, inputs = RoundRunner(project, r2).reward_data()
    assert own == project.folder / "round-2" / "dataset" and info["rounds"] == [2] and inputs == []


def test_content_hash_and_code_versions(tmp_path):
    import subprocess

    from prefkit.data.export import export_dataset
    from prefkit.data.schema import PreferenceRow
    from prefkit.train.rounds import code_versions, content_hash

    rows = [PreferenceRow(question=f"q{i}", chosen=f"c{i}", rejected=f"r{i}") for i in range(6)]
    export_dataset(rows, tmp_path / "a", test_size=0.3, seed=1)
    export_dataset(rows, tmp_path / "b", test_size=0.3, seed=1)  # same rows, another folder (and card name)
    export_dataset(
        rows[:5] + [PreferenceRow(question="q5", chosen="c5!", rejected="r5")], tmp_path / "c", test_size=0.3, seed=1
    )
    assert content_hash(tmp_path / "a") == content_hash(tmp_path / "b")
    assert content_hash(tmp_path / "a") != content_hash(tmp_path / "c")
    assert content_hash(tmp_path / "a").startswith("sha256:") and content_hash("org/hub-id") is None
    (tmp_path / "f.jsonl").write_text("x\n")
    import hashlib

    assert content_hash(tmp_path / "f.jsonl") == "sha256:" + hashlib.sha256(b"x\n").hexdigest()
    code = code_versions()
    repo = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert code["git_commit"] == head.stdout.strip() and isinstance(code["git_dirty"], bool)
    import torch
    import transformers

    assert (
        code["libraries"]["torch"] == torch.__version__
        and code["libraries"]["transformers"] == transformers.__version__
    )


def test_reward_mix_config_errors(tmp_path):
    from prefkit.core.config import load_config
    from prefkit.core.errors import ConfigError
    from prefkit.train.rounds import RoundsConfig

    with pytest.raises(ConfigError, match="share must be in"):
        load_config(RoundsConfig, None, ["model=m", "prompts=p"], reward_mix=[{"source": "x", "share": 1.5}])
    with pytest.raises(ConfigError, match="add up to less than 1"):
        load_config(
            RoundsConfig,
            None,
            ["model=m", "prompts=p"],
            reward_mix=[{"source": "x", "share": 0.5}, {"source": "y", "share": 0.5}],
        )
    with pytest.raises(ConfigError, match="reward_data"):
        load_config(RoundsConfig, None, ["model=m", "prompts=p", "reward_data=some"])
