"""Every `prefkit` command the docs show names a real command and real options.

The docs are README.md (the front page) and every page under docs/. Each ```bash block is split into
shell commands (continuation lines joined, `;`, `&&`, `|`, `&` separate commands, comments dropped);
a command that runs `prefkit` (also as `.venv/bin/prefkit`, after `VAR=value` assignments, or as
`-m prefkit.cli` under `accelerate launch`) is walked down the real click tree of `prefkit.cli.app`:
each sub-command must exist, and every `--option` must be one of that command's options. Optional
parts written in brackets (`[--parquet]`) are checked too. `tests/test_readme_round.py` runs the
CPU round as written; this test keeps the other commands from naming what does not exist.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from prefkit.cli import app

REPO = Path(__file__).resolve().parent.parent
SEPARATORS = {";", "&&", "||", "|", "&", ";;", "(", ")"}
SHELL_WORDS = {"do", "then", "else", "time", "exec", "nohup"}


def doc_pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M)


def shell_commands(block: str) -> list[list[str]]:
    """The block's simple commands as token lists."""
    joined = re.sub(r"\\\n", " ", block)
    commands: list[list[str]] = []
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError:  # an unbalanced quote: not a command we can read
            continue
        current: list[str] = []
        for token in tokens:
            if token in SEPARATORS:
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token)
        if current:
            commands.append(current)
    return commands


def prefkit_args(tokens: list[str]) -> list[str] | None:
    """The arguments after `prefkit` when this command runs prefkit, else None."""
    i = 0
    while i < len(tokens) and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[i]) or tokens[i] in SHELL_WORDS):
        i += 1
    if i < len(tokens) and tokens[i].split("/")[-1] == "prefkit":
        return tokens[i + 1 :]
    for j in range(len(tokens) - 1):
        if tokens[j] == "-m" and tokens[j + 1] == "prefkit.cli":
            return tokens[j + 2 :]
    return None


def _options(command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if param.param_type_name == "option":
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def _takes_value(command, option: str) -> bool:
    for param in command.params:
        if param.param_type_name == "option" and option in (*param.opts, *param.secondary_opts):
            return not getattr(param, "is_flag", False)
    return False


def check(args: list[str]) -> str | None:
    """None when `prefkit ARGS` names a real command and real options, else what is wrong."""
    command = typer.main.get_command(app)
    path = ["prefkit"]
    args = [a.strip("[]") for a in args]
    args = [a for a in args if a]
    i = 0
    while hasattr(command, "list_commands"):  # a group: options of its own, then a sub-command
        while i < len(args) and args[i].startswith("-"):
            if args[i].split("=")[0] not in _options(command):
                return f"{' '.join(path)}: no option {args[i]}"
            i += 1
        if i == len(args) or args[i] in ("...", "…"):
            return None  # `prefkit annotate ...`: a placeholder, not a command
        ctx = command.context_class(command, info_name=path[-1])
        sub = command.get_command(ctx, args[i])
        if sub is None:
            return f"{' '.join(path)}: no command {args[i]!r}"
        path.append(args[i])
        command = sub
        i += 1
    known = _options(command)
    while i < len(args):
        token = args[i]
        if token.startswith("-") and token not in ("-", "--") and not re.match(r"^-\d", token):
            name = token.split("=")[0]
            if name not in known:
                return f"{' '.join(path)}: no option {name}"
            if "=" not in token and _takes_value(command, name):
                i += 1
        i += 1
    return None


def shown_commands() -> list[tuple[str, list[str]]]:
    found = []
    for page in doc_pages():
        for block in bash_blocks(page.read_text(encoding="utf-8")):
            for tokens in shell_commands(block):
                args = prefkit_args(tokens)
                if args is not None:
                    found.append((str(page.relative_to(REPO)), args))
    return found


def test_the_docs_show_prefkit_commands_from_every_room() -> None:
    shown = {" ".join(args[:2]) for _, args in shown_commands()}
    for command in (
        "data validate",
        "data dedup",
        "data export",
        "data stats",
        "annotate serve",
        "annotate export",
        "train sft",
        "train ppo",
        "round run",
    ):
        assert command in shown, command
    assert any(a and a[0] == "generate" for _, a in shown_commands())


@pytest.mark.parametrize("page,args", shown_commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v[:3]))
def test_every_prefkit_command_shown_exists(page: str, args: list[str]) -> None:
    problem = check(args)
    assert problem is None, f"{page}: `prefkit {' '.join(args)}`: {problem}"


def test_the_check_catches_a_wrong_command_or_option() -> None:
    [tokens] = shell_commands(
        "HF_TOKEN=x prefkit data export in.jsonl out \\\n    --parquet --no-such-flag  # comment\n"
    )
    args = prefkit_args(tokens)
    assert args is not None
    assert check(args) == "prefkit data export: no option --no-such-flag"
    assert check(["data", "exprot", "a", "b"]) == "prefkit data: no command 'exprot'"
    assert check(["train", "dpo", "--config", "c.yaml", "--set", "beta=0.1"]) is None
    # an option's value is not read as an option, and `[...]` marks optional parts
    assert check(["annotate", "serve", "--db", "x.db", "[--port", "8600]"]) is None
    loop = shell_commands(
        "for i in 0 1; do\n  CUDA_VISIBLE_DEVICES=$i prefkit generate p.jsonl o --shard $i/2 &\ndone; wait\n"
    )
    assert [prefkit_args(c) for c in loop if prefkit_args(c)] == [["generate", "p.jsonl", "o", "--shard", "$i/2"]]


# --------------------------------------------------------------------------- the generated references


def _hook():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_reference_hook", REPO / "docs" / "_hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_lists_every_command_with_its_options() -> None:
    page = _hook().cli_page()
    root = typer.main.get_command(app)

    def leaves(command, path):
        if not hasattr(command, "list_commands"):
            yield path, command
            return
        ctx = command.context_class(command, info_name=path[-1])
        for name in command.list_commands(ctx):
            yield from leaves(command.get_command(ctx, name), [*path, name])

    found = list(leaves(root, ["prefkit"]))
    assert len(found) > 20
    for path, command in found:
        assert f"`{' '.join(path)}`" in page, path
        for param in command.params:
            if param.param_type_name == "option":
                assert f"`{param.opts[0]}`" in page, (path, param.opts[0])


from dataclasses import dataclass, field  # noqa: E402 - the sample config below
from typing import Annotated  # noqa: E402


@dataclass
class _SampleConfig:
    """A sample config, documented in every way the generator reads.

    Parameters:
        from_docstring (`int`):
            Documented in the class docstring,
            over two lines.
    """

    with_metadata: float = field(default=0.5, metadata={"help": "Documented in the field's metadata."})
    with_attribute_doc: str = "x"
    """Documented by the string below the field."""
    with_comment: list[str] = field(default_factory=lambda: ["a", "b"])  # documented by a comment
    from_docstring: int = 3
    undocumented: bool = False
    with_annotated: Annotated[int, "Documented in the type hint."] = 1


@dataclass
class _SampleChild(_SampleConfig):
    """Extends the sample."""

    own: int | None = None  # the child's own field


def test_the_config_reference_reads_each_way_of_documenting_a_field() -> None:
    import dataclasses

    hook = _hook()
    docs: dict[str, dict[str, str]] = {}
    helps = {f.name: hook._field_help(f, _SampleChild, docs) for f in dataclasses.fields(_SampleChild)}
    assert helps == {
        "with_metadata": "Documented in the field's metadata.",
        "with_attribute_doc": "Documented by the string below the field.",
        "with_comment": "documented by a comment",
        "from_docstring": "Documented in the class docstring, over two lines.",
        "undocumented": "",
        "with_annotated": "Documented in the type hint.",
        "own": "the child's own field",
    }
    defaults = {f.name: hook._field_default(f) for f in dataclasses.fields(_SampleChild)}
    assert defaults["with_comment"] == "`['a', 'b']`" and defaults["with_attribute_doc"] == "`'x'`"


@pytest.mark.slow  # imports every room's config module: train's pull in trl (~50 s on a loaded machine)
def test_the_config_reference_holds_the_rooms_configs() -> None:
    import dataclasses

    from prefkit.generate.config import GenerateConfig
    from prefkit.train.config import RunConfig

    page = _hook().config_page()
    for cls in (GenerateConfig, RunConfig):
        assert f"### `{cls.__name__}`" in page
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in page, (cls.__name__, f.name)
    # defaults and help come from the fields (`prefkit.core.config.setting`), a | inside a cell is escaped
    assert "| `threshold` | `float` | `0.8` | Jaccard similarity at or above which rows are near-duplicates. |" in page
    assert "| `address` | `str \\| None` | `None` |" in page
    assert "| `temperatures` | `list[float]` | `[0.6, 0.9, 1.2]` |" in page
    assert "| `settings` | `list[SettingConfig]` | `[]` |" in page
    assert "### `LoraSection`" in page and "| `r` | `int` | `16` | LoRA rank. |" in page
    assert "| `output_dir` | `Path` | `runs/out` |" in page


# --------------------------------------------------------------------------- the OpenRLHF hand-off

OPENRLHF_FLAGS = REPO / "tests" / "train" / "samples" / "openrlhf_train_ppo_ray_flags.txt"


def openrlhf_flags() -> dict[str, int]:
    """OpenRLHF's `train_ppo_ray` flags and how many values each takes (see the file's header:
    read from OpenRLHF's released source by dev/openrlhf_flags.py)."""
    flags = {}
    for line in OPENRLHF_FLAGS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, values = line.split()
            flags[name] = int(values)
    return flags


def openrlhf_problems(tokens: list[str], flags: dict[str, int]) -> list[str]:
    """What argparse would refuse in `python -m openrlhf.cli.train_ppo_ray ARGS`: an unknown flag,
    a flag without its value(s), or a stray word (the entry point takes no positional argument)."""
    args = tokens[tokens.index("openrlhf.cli.train_ppo_ray") + 1 :]
    problems, i = [], 0
    while i < len(args):
        token = args[i]
        name = token.split("=", 1)[0]
        if not token.startswith("--"):
            problems.append(f"stray argument {token!r}")
        elif name not in flags:
            problems.append(f"unknown flag {name}")
        elif "=" not in token:
            values = args[i + 1 : i + 1 + flags[name]]
            if len(values) < flags[name] or any(v.startswith("--") for v in values):
                problems.append(f"{name} needs {flags[name]} value(s)")
            else:
                i += flags[name]
        i += 1
    return problems


def test_the_openrlhf_command_uses_flags_openrlhf_accepts() -> None:
    page = REPO / "docs" / "beyond-one-machine.md"
    commands = [
        tokens
        for block in bash_blocks(page.read_text(encoding="utf-8"))
        for tokens in shell_commands(block)
        if "openrlhf.cli.train_ppo_ray" in tokens
    ]
    assert len(commands) == 1
    flags = openrlhf_flags()
    assert len(flags) > 100 and "--actor.model_name_or_path" in flags
    assert openrlhf_problems(commands[0], flags) == []
    used = {t for t in commands[0] if t.startswith("--")}
    for needed in ("--actor.model_name_or_path", "--reward.model_name_or_path", "--data.prompt_dataset"):
        assert needed in used


def test_the_openrlhf_check_refuses_the_flags_before_0_10_2() -> None:
    flags = openrlhf_flags()
    old = (
        "python3 -m openrlhf.cli.train_ppo_ray --pretrain runs/sft/model --bf16 --ds.zero_stage --vllm.num_engines 4 x"
    )
    assert openrlhf_problems(old.split(), flags) == [
        "unknown flag --pretrain",
        "stray argument 'runs/sft/model'",
        "unknown flag --bf16",
        "--ds.zero_stage needs 1 value(s)",
        "stray argument 'x'",
    ]
