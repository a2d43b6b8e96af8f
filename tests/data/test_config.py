"""Typed configs from YAML with `--set` overrides: strict about unknown keys and types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from prefkit.core.config import load_config, parse_overrides, to_dict
from prefkit.core.errors import ConfigError


@dataclass
class Lora:
    r: int = 8
    target_modules: list[str] = field(default_factory=lambda: ["q_proj"])


@dataclass
class Cfg:
    model: str = "tiny"
    lr: float = 1e-4
    bf16: bool = False
    loss: Literal["sigmoid", "ipo"] = "sigmoid"
    out: Path = Path("runs/x")
    lora: Lora = field(default_factory=Lora)


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m\nlr: 2e-5\nlora:\n  r: 16\n")
    cfg = load_config(Cfg, path, ["lora.r=4", "bf16=true", "lora.target_modules=q_proj,v_proj"])
    assert cfg.model == "m" and cfg.lr == 2e-5 and cfg.bf16 is True
    assert cfg.lora.r == 4 and cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert isinstance(cfg.out, Path)
    assert to_dict(cfg)["lora"] == {"r": 4, "target_modules": ["q_proj", "v_proj"]}


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m\nlearning_rate: 1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*unknown key\(s\) learning_rate"):
        load_config(Cfg, path)
    with pytest.raises(ConfigError, match=r"lora.*unknown key\(s\) rank"):
        load_config(Cfg, None, ["lora.rank=3"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("lr=fast", "lr: expected a number"),
        ("bf16=maybe", "expected true/false"),
        ("loss=hinge", "must be one of"),
        ("lora.r=1.5", "expected an integer"),
    ],
)
def test_bad_types(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Cfg, None, [override])


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Cfg, bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(Cfg, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["lr"])


@dataclass
class WithSequence:
    sizes: Sequence[int] = (1,)


def test_sequence_fields_are_lists_of_their_type() -> None:
    assert load_config(WithSequence, None, ["sizes=2,3"]).sizes == [2, 3]
    with pytest.raises(ConfigError, match=r"sizes\[1\]: expected an integer"):
        load_config(WithSequence, None, ["sizes=2,x"])
