"""Typer options built from config dataclasses, and the help layout every prefkit command uses.

A command's settings live in one dataclass (`prefkit.core.config.setting`: default + documentation);
`option(Cls, "field")` turns a field into a Typer option with that default and help, so the
command line, the Python API and the config reference cannot disagree. `given` keeps only the
options the user typed, so a `--config` file's values are not overwritten by option defaults.

`App` is `typer.Typer` whose commands are `Command`s: usage lines name arguments in capitals
(`SOURCE OUT`, optional ones `[OUT]`) and boolean flags show no `<bool>` value (`--parquet` /
`--no-parquet` take none).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from prefkit.core.config import default_of, field_help, load_config

T = TypeVar("T")


def option(cls: type, name: str, *param_decls: str, **kw: Any) -> Any:
    """`typer.Option` for field `name` of config dataclass `cls`: the field's default and help.

    A boolean field becomes a `--name/--no-name` flag unless `param_decls` say otherwise. `kw`
    overrides anything (e.g. `default=None` for an option whose text form differs from the field).
    """
    kw.setdefault("help", field_help(cls, name).replace("[", "\\["))  # "prefkit[ray]" is text, not a style tag
    default = kw.pop("default", dataclasses.MISSING)
    if default is dataclasses.MISSING:
        default = default_of(cls, name)
        if isinstance(default, (list, tuple)):  # a list field is typed as text on the command line
            default = ",".join(map(str, default)) if default else None
        elif isinstance(default, dict):  # so is a mapping: NAME=VALUE,NAME=VALUE
            default = ",".join(f"{k}={v}" for k, v in default.items()) if default else None
    return typer.Option(default, *param_decls, **kw)


def given(ctx: typer.Context, **values: Any) -> dict[str, Any]:
    """`values` (the command's parameters by name) less those left at their default: what the
    user typed, to lay over a config file (`prefkit.core.config.load_config`)."""

    def typed(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    return {k: v for k, v in values.items() if typed(k)}


def command_config(
    cls: type[T], ctx: typer.Context, config: Path | None, overrides: list[str] | None, **values: Any
) -> T:
    """A command's config dataclass: the `--config` YAML file (its keys are the field names), the
    options the user typed over it, `--set key=value` over both. With neither a file nor `--set`,
    simply `cls(**values)` (every option's value, defaults included)."""
    if config is None and not overrides:
        return cls(**values)
    return load_config(cls, config, overrides or (), **given(ctx, **values))


CONFIG_HELP = "YAML file of this command's settings (keys: the long option names with _ for -); typed options win."
SET_HELP = "Override one setting: --set key=value (repeatable; wins over --config and the options)."


class _PlainFlags:
    """Flags show no `<bool>` (they take no value) and arguments are named in capitals."""

    params: list[Any]

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        for param in self.params:
            _plain_flag(param)

    def get_help_option(self, ctx: Any) -> Any:
        help_option = super().get_help_option(ctx)  # type: ignore[misc]
        if help_option is not None:
            _plain_flag(help_option)
        return help_option


class Command(_PlainFlags, TyperCommand):
    """A Typer command whose help reads as the docs write it: `prefkit data dedup [OPTIONS] SOURCE OUT`,
    and `--overwrite` with no `<bool>` beside it (a flag takes no value)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = (param.metavar or param.name or "").upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class Group(_PlainFlags, TyperGroup):
    """A Typer group with the same flag layout as `Command` (`prefkit --version`, not `--version <bool>`)."""


def _plain_flag(param: Any) -> None:
    if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
        param.metavar = ""  # the rich help prints the metavar in place of "<bool>"
    if isinstance(param, TyperArgument) and param.metavar is None and param.name:
        param.metavar = param.name.upper()


class App(typer.Typer):
    """`typer.Typer` whose groups are `Group`s and commands `Command`s (see the module docstring)."""

    def __init__(self, *args: Any, cls: type[TyperGroup] | None = None, **kw: Any) -> None:
        super().__init__(*args, cls=cls or Group, **kw)

    def command(
        self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kw: Any
    ) -> Callable[[Any], Any]:
        return super().command(name, cls=cls or Command, **kw)
