"""Every command's help, and the one-place-per-setting rule: options, Python defaults and the
config dataclasses agree because the first two are read from the third."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import typer
from typer.testing import CliRunner

from prefkit.cli import app
from prefkit.core.config import default_of, field_help
from prefkit.data.dedup_config import DedupConfig
from prefkit.data.export_config import ExportConfig
from prefkit.generate.config import GenerateConfig, SettingConfig

runner = CliRunner()


def _command_paths(group, prefix=()):
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        yield path
        if hasattr(cmd, "commands"):
            yield from _command_paths(cmd, path)


COMMANDS = sorted(_command_paths(typer.main.get_command(app)))


def test_the_tree_is_walked():
    assert ("data", "dedup") in COMMANDS and ("generate",) in COMMANDS and ("annotate", "users", "add") in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_shows_no_braces_and_no_bool_values(path):
    result = runner.invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert "{" not in usage, usage  # arguments read SOURCE OUT, optional ones [OUT]
    assert "<bool>" not in result.output  # a flag takes no value


def test_usage_names_arguments_in_capitals():
    dedup = runner.invoke(app, ["data", "dedup", "--help"], terminal_width=200).output
    assert "prefkit data dedup [OPTIONS] SOURCE OUT" in dedup
    generate = runner.invoke(app, ["generate", "--help"], terminal_width=200).output
    assert "prefkit generate [OPTIONS] [PROMPTS] [OUT]" in generate


def test_generate_help_shows_the_config_defaults():
    out = runner.invoke(app, ["generate", "--help"], terminal_width=200).output
    for text in (
        "[default: 0.95]",
        "[default: 512]",
        "[default: 0.6,0.9,1.2]",
        "[default: random_pair]",
        "[default: hf]",
    ):
        assert text in out, text


def test_export_flags_have_a_negative_form(tmp_path):
    result = runner.invoke(app, ["data", "export", "--help"], terminal_width=200)
    assert "--no-parquet" in result.output and "--no-trl" in result.output
    # `--parquet true` stays an error (a flag takes no value), and names the stray argument
    bad = runner.invoke(app, ["data", "export", "in.jsonl", str(tmp_path / "o"), "--parquet", "true"])
    assert bad.exit_code == 2 and "true" in bad.output


def _params(path):
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {p.name: p for p in command.params}


@pytest.mark.parametrize(
    ("path", "cls", "renamed"),
    [
        (("data", "dedup"), DedupConfig, {}),
        (("data", "export"), ExportConfig, {}),
        (("annotate", "export"), ExportConfig, {}),
        (("generate",), GenerateConfig, {"model": "models"}),
    ],
    ids=["data dedup", "data export", "annotate export", "generate"],
)
def test_options_take_default_and_help_from_the_config(path, cls, renamed):
    params = _params(path)
    fields = {f.name for f in dataclasses.fields(cls)}
    matched = 0
    for name, param in params.items():
        field = renamed.get(name, name)
        if field not in fields or param.param_type_name != "option":
            continue
        matched += 1
        default = default_of(cls, field)
        if isinstance(default, list):
            default = ",".join(map(str, default)) if default else None
        if isinstance(default, dict):  # a mapping is typed as NAME=VALUE,… text
            default = ",".join(f"{k}={v}" for k, v in default.items()) if default else None
        assert param.default == default, name
        if name != "name" or path != ("annotate", "export"):  # the one option with its own wording
            assert field_help(cls, field).split("[")[0] in param.help.replace("\\", ""), name
    assert matched >= 6


def test_python_defaults_are_the_configs():
    from prefkit.data.dedup import dedup_file, dedup_records
    from prefkit.data.export import export_dataset, export_judged

    for fn, cls in (
        (dedup_records, DedupConfig),
        (dedup_file, DedupConfig),
        (export_dataset, ExportConfig),
        (export_judged, ExportConfig),
    ):
        checked = 0
        for name, p in inspect.signature(fn).parameters.items():
            if p.default is inspect.Parameter.empty or name not in {f.name for f in dataclasses.fields(cls)}:
                continue
            if name == "sets":  # the functions take the parsed tuple, () for none (the config's None)
                assert p.default == () and default_of(cls, name) is None
                continue
            if name == "columns":  # the functions take None for no mapping (the config's {})
                assert p.default is None and default_of(cls, name) == {}
                continue
            assert p.default == default_of(cls, name), f"{fn.__name__}({name}=)"
            checked += 1
        assert checked >= 5, fn.__name__


def _train_configs():
    from prefkit.train.best_of_k import BestOfKConfig
    from prefkit.train.chain import ChainConfig
    from prefkit.train.config import (
        DataConfig,
        DpoConfig,
        LoraSection,
        ModelConfig,
        QuantConfig,
        RewardConfig,
        RunConfig,
        ScoreConfig,
        SftConfig,
    )
    from prefkit.train.online import GrpoConfig, OnlineConfig, RlooConfig
    from prefkit.train.rounds import MixSet, RoundsConfig
    from prefkit.train.scoring import RewardSection

    return [
        ModelConfig,
        LoraSection,
        QuantConfig,
        DataConfig,
        RunConfig,
        SftConfig,
        RewardConfig,
        DpoConfig,
        ScoreConfig,
        OnlineConfig,
        RlooConfig,
        GrpoConfig,
        BestOfKConfig,
        ChainConfig,
        MixSet,
        RoundsConfig,
        RewardSection,
    ]


@pytest.mark.parametrize(
    "cls", [DedupConfig, ExportConfig, GenerateConfig, SettingConfig, *_train_configs()], ids=lambda c: c.__name__
)
def test_every_setting_is_documented(cls):
    missing = [f.name for f in dataclasses.fields(cls) if not field_help(cls, f.name).strip()]
    assert missing == []
