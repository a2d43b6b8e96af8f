"""Typed configs from YAML plus `--set key=value` overrides, strict about unknown keys.

Rooms describe their settings as dataclasses; `load_config(Cls, path, overrides)` builds one and
names the file and key in any error. Nested dataclasses are addressed with dots (`lora.r=16`).

Each setting is declared once, with its default and its documentation:
`threshold: float = setting(0.8, "Jaccard similarity ...")` (TRL's `field(metadata={"help": ...})`).
The command's options (`prefkit.core.options.option`), the Python functions' defaults (`default_of`) and
the config reference (`field_help`) all read it from there.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast, get_args, get_origin, get_type_hints

from prefkit.core.errors import ConfigError

T = TypeVar("T")


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None, **kw: Any) -> Any:
    """A documented dataclass field: `setting(0.8, "what it is")`, or `setting(help=..., factory=list)`
    for a mutable default. The text is the option's help and the config reference's entry."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help}, **kw)
    return dataclasses.field(default=default, metadata={"help": help}, **kw)


def config_field(cls: type, name: str) -> dataclasses.Field[Any]:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def default_of(cls: type, name: str) -> Any:
    """Field `name`'s default in config dataclass `cls` (a fresh one for a default_factory)."""
    f = config_field(cls, name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")


def field_help(cls: type, name: str) -> str:
    """Field `name`'s documentation (`setting(..., help)`); empty when it has none."""
    return str(config_field(cls, name).metadata.get("help", ""))


def parse_mapping(text: str | None, where: str = "mapping") -> dict[str, str]:
    """`"question=instruction,chosen=output_1"` -> {"question": "instruction", "chosen": "output_1"}:
    a mapping written on the command line (empty text: an empty mapping)."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{where}: expected NAME=VALUE[,NAME=VALUE...], got {item.strip()!r}")
        out[key.strip()] = value.strip()
    return out


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(tp, type) and isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(cast(type, tp), value, where=where)
    if origin in (list, tuple, Sequence):  # get_origin(typing.Sequence[X]) is the abc
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if isinstance(value, str):
            value = parse_mapping(value, where)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return str(value)
    if tp is Path:
        return Path(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(f"{where}: must be one of {', '.join(e.value for e in tp)}, got {value!r}") from None
    return value


def from_dict(cls: type[T], values: dict[str, Any], *, where: str = "config") -> T:
    """Build dataclass `cls` from a mapping; unknown keys and bad types raise ConfigError."""
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cast(Any, cls)) if f.init}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{where}: {k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """`["lora.r=16", "lr=1e-4"]` -> nested dict, values parsed as YAML scalars."""
    import yaml

    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.load(raw, Loader=_loader()) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p} is not a section")
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


@functools.cache
def _loader() -> type:
    """YAML 1.2's booleans: only true/false. YAML 1.1 also reads on/off/yes/no as booleans, which
    would turn dedup's `on: prompt` key into `True` (a boolean field still takes yes/no/on/off).
    Built on first use: `prefkit --help` does not import yaml."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return Loader


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_loader()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{line} not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def raw_settings(path: str | Path | None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The `--config` file's mapping with the `--set` overrides laid over it, not yet checked
    against any dataclass: what a command can look at before importing heavy libraries."""
    return _merge(read_yaml(path) if path else {}, parse_overrides(overrides))


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    **values: Any,
) -> T:
    """YAML file (if any) < keyword values < `--set` overrides; the result is a `cls`."""
    base = read_yaml(path) if path else {}
    typed = _merge(base, {k: v for k, v in values.items() if v is not None})
    where = str(path) if path else cls.__name__
    sets = parse_overrides(overrides)
    if not sets:
        return from_dict(cls, typed, where=where)
    try:
        return from_dict(cls, _merge(typed, sets), where=where)
    except ConfigError as e:
        try:  # blame --set only when the file and the options alone make a good config
            from_dict(cls, typed, where=where)
        except ConfigError:
            raise e from None
        raise ConfigError(str(e).replace(f"{where}: ", "--set: ", 1)) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain YAML/JSON-friendly data (for summaries and reproducibility)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        if hasattr(v, "value") and isinstance(v.value, (str, int)):
            return v.value
        return v

    out: dict[str, Any] = conv(cfg)
    return out
