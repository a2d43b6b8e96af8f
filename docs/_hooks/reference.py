"""mkdocs hook: pages generated at build time, from the code and the repository's root files.

- `index.md`      the repository's README.md (the front page), its links into docs/ made site-relative;
- `changelog.md`  CHANGELOG.md, `license.md` LICENSE;
- `reference/cli.md`     every command of the `prefkit` Typer app (walked as a click tree with
  `typer.main.get_command`): usage, help, arguments and options with their defaults;
- `reference/config.md`  every config dataclass the rooms define (`*/config.py`, and any module of a
  room with a `@dataclass` class named `...Config`): each field with its type, default and help,
  taken from `field(metadata={"help"|"doc"|"description": ...})`, an `Annotated[type, "help"]` hint,
  an attribute docstring (a string right below the field), a comment on the field's line(s), or a
  `Parameters:`/`Attributes:`/`Args:` entry of the class docstring, in that order.

Nothing is downloaded; the modules are imported (heavy libraries load lazily in prefkit), and a
module that cannot be imported is read from its source alone. Run it by hand to see the pages:
`python docs/_hooks/reference.py OUTDIR`.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import io
import re
import sys
import textwrap
import tokenize
import typing
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOMS = ("data", "generate", "annotate", "train", "prefkit")


# --------------------------------------------------------------------------- root pages


def front_page() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"\]\(docs/", "](", text)
    text = text.replace("](CHANGELOG.md)", "](changelog.md)").replace("](LICENSE)", "](license.md)")
    return text


def changelog_page() -> str:
    return (REPO / "CHANGELOG.md").read_text(encoding="utf-8")


def license_page() -> str:
    body = (REPO / "LICENSE").read_text(encoding="utf-8")
    return f"# License\n\nprefkit is released under the Apache License 2.0 (`LICENSE`):\n\n```text\n{body}\n```\n"


# --------------------------------------------------------------------------- CLI reference


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _default(param) -> str:
    if getattr(param, "is_flag", False) and not getattr(param, "secondary_opts", None):
        return "off" if not param.default else "on"
    default = param.default
    if default is None or default == () or isinstance(default, type(dataclasses.MISSING)):
        return ""
    if callable(default):
        return "(computed)"
    if getattr(param, "secondary_opts", None) and isinstance(default, bool):
        return param.opts[0] if default else param.secondary_opts[0]
    if isinstance(default, (list, tuple)):
        return ", ".join(map(str, default))
    if type(default).__name__ in ("Sentinel", "_Unset", "UnsetType"):
        return ""
    return f"`{default}`"


def _param_type(p) -> str:
    """The value's type, across click and Typer's own copy of it (whose parameters changed shape)."""
    kind = getattr(p, "type", None)
    if kind is not None and getattr(kind, "name", None):
        return str(kind.name)
    desc = getattr(p, "type_descriptor", None)
    annotation = getattr(desc, "annotation", None)
    if annotation is not None:
        return _type_name(annotation)
    for attr in ("display_type", "bare_type"):
        try:
            value = getattr(p, attr)()
        except Exception:
            continue
        if value:
            return str(value)
    return ""


def _context(cmd, name: str, parent=None):
    # Typer carries its own copy of click (typer._click): use the command's own Context class.
    return cmd.context_class(cmd, info_name=name, parent=parent)


def _command_md(cmd, ctx, depth: int) -> list[str]:
    path = ctx.command_path
    out = [f"{'#' * min(depth, 6)} `{path}`", ""]
    helptext = inspect.cleandoc(cmd.help or cmd.short_help or "")
    if helptext:
        out += [helptext.split("\f")[0].strip(), ""]
    out += ["```text", cmd.get_usage(ctx).strip(), "```", ""]
    args = [p for p in cmd.params if p.param_type_name == "argument"]
    opts = [p for p in cmd.params if p.param_type_name == "option" and not getattr(p, "hidden", False)]
    if args:
        out += ["| argument | required | help |", "| --- | --- | --- |"]
        for p in args:
            out.append(
                f"| `{(p.metavar or p.name).upper()}` | {'yes' if p.required else 'no'} | "
                f"{_cell(getattr(p, 'help', '') or '')} |"
            )
        out.append("")
    if opts:
        out += ["| option | type | default | help |", "| --- | --- | --- | --- |"]
        for p in opts:
            names = " / ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            kind = "flag" if getattr(p, "is_flag", False) else _param_type(p)
            default = "required" if p.required else _default(p)
            helptext = _cell(p.help or "")
            if p.envvar:
                helptext += f" (env `{p.envvar}`)"
            out.append(f"| {names} | {_cell(kind)} | {_cell(default)} | {helptext} |")
        out.append("")
    if hasattr(cmd, "list_commands"):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            out += _command_md(sub, _context(sub, name, ctx), depth + 1)
    return out


def cli_page() -> str:
    import typer.main

    from prefkit.cli import app

    root = typer.main.get_command(app)
    ctx = _context(root, "prefkit")
    lines = [
        "# CLI reference",
        "",
        "Generated from the `prefkit` Typer app (`prefkit.cli.app`, walked with `typer.main.get_command`)",
        "each time the site is built, so it is the command's own help. `prefkit COMMAND --help` prints",
        "the same on a terminal. Guides: [data](../guides/data-engineers/data.md),",
        "[dedup](../guides/data-engineers/dedup.md), [generate](../guides/data-engineers/generate.md),",
        "[annotate](../guides/annotators/admin.md), [train](../guides/researchers/training.md),",
        "[online stages and rounds](../guides/researchers/online.md).",
        "",
    ]
    lines += _command_md(root, ctx, 2)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- config reference


def _config_modules() -> list[str]:
    """Modules of the rooms that define config dataclasses: every `config.py` / `config/` module,
    and any other module with a `@dataclass` class whose name ends in `Config`."""
    found = []
    for room in ROOMS:
        for path in sorted((REPO / room).rglob("*.py")):
            if any(part in ("tests", "static", "samples") or part.startswith(".") for part in path.parts):
                continue
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join(parts)
            is_config = path.stem == "config" or "config" in rel.parts[:-1]
            if not is_config:
                try:
                    tree = ast.parse(path.read_text(encoding="utf-8"))
                except SyntaxError:
                    continue
                is_config = any(
                    isinstance(n, ast.ClassDef) and re.search(r"(Config|Section)$", n.name) and _is_dataclass_node(n)
                    for n in tree.body
                )
            if is_config:
                found.append(name)
    return found


def _is_dataclass_node(node: ast.ClassDef) -> bool:
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "dataclass":
            return True
    return False


def _source_docs(cls: type) -> dict[str, str]:
    """Field help from the class's own source: attribute docstrings and line comments."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except tokenize.TokenError:
        pass
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        nxt = body[i + 1] if i + 1 < len(body) else None
        if (
            isinstance(nxt, ast.Expr)
            and isinstance(getattr(nxt, "value", None), ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[name] = inspect.cleandoc(nxt.value.value)
            continue
        # a comment on the field's own line(s); a comment block above a field is often a section
        # heading ("# Engines"), so it is not taken as that field's help
        lines = [comments[n] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1) if n in comments]
        text = " ".join(lines).strip()
        if text:
            docs[name] = text
    return docs


_SECTION = re.compile(r"^\s*(Parameters|Attributes|Args|Arguments|Fields)\s*:?\s*$", re.M)


def _docstring_params(doc: str) -> tuple[str, dict[str, str]]:
    """Split a class docstring into its prose and a `name: help` map from a Parameters-style section."""
    doc = inspect.cleandoc(doc or "")
    match = _SECTION.search(doc)
    if not match:
        return doc, {}
    prose, rest = doc[: match.start()].strip(), doc[match.end() :]
    params: dict[str, list[str]] = {}
    current = None
    indent = None
    for line in rest.splitlines():
        if not line.strip():
            continue
        stripped = line.lstrip()
        level = len(line) - len(stripped)
        if indent is None:
            indent = level
        m = re.match(r"`?(\w+)`?\s*(\([^)]*\))?\s*:\s*(.*)", stripped)
        if level <= indent and m:
            current = m.group(1)
            params[current] = [m.group(3)] if m.group(3) else []
        elif current is not None and level > indent:
            params[current].append(stripped)
        elif level < indent:
            break
    return prose, {k: " ".join(v).strip() for k, v in params.items()}


def _type_name(tp: object) -> str:
    if isinstance(tp, str):
        return tp
    if isinstance(tp, type):
        return tp.__name__
    # list[prefkit.generate.config.SettingConfig] reads as list[SettingConfig]
    return re.sub(r"\b(?:[a-z_][a-z0-9_]*\.)+([A-Z]\w*)", r"\1", str(tp).replace("typing.", ""))


def _field_default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        factory = f.default_factory  # type: ignore[misc]
        try:
            value = factory()
        except Exception:
            return f"`{getattr(factory, '__name__', factory)}()`"
        if dataclasses.is_dataclass(value):
            return f"a `{type(value).__name__}` section (its own table)"
    else:
        return "required"
    if isinstance(value, str) and "\n" in value:
        value = value.split("\n")[0] + " …"
    text = repr(value) if isinstance(value, str) else str(value)
    if len(text) > 80:
        text = text[:77] + "…"
    return f"`{text}`"


def _annotated_doc(cls: type, name: str) -> str:
    """`x: Annotated[int, "help"]` (or a `Doc("help")`-like object with a `.documentation`)."""
    try:
        hint = typing.get_type_hints(cls, include_extras=True).get(name)
    except Exception:
        return ""
    for extra in getattr(hint, "__metadata__", ()):
        if isinstance(extra, str):
            return extra
        if isinstance(getattr(extra, "documentation", None), str):
            return extra.documentation
    return ""


def _field_help(f: dataclasses.Field, cls: type, param_docs: dict[str, dict[str, str]]) -> str:
    for key in ("help", "doc", "description"):
        value = f.metadata.get(key) if f.metadata else None
        if value:
            return str(value)
    annotated = _annotated_doc(cls, f.name)
    if annotated:
        return annotated
    for klass in cls.__mro__:  # the class that declares the field first
        if f.name in inspect.get_annotations(klass):
            docs = param_docs.setdefault(klass.__qualname__, {})
            if not docs:
                docs.update(_docstring_params(klass.__doc__ or "")[1])
                docs.update(_source_docs(klass))
            if f.name in docs:
                return docs[f.name]
    return ""


def _config_classes(module, whole: bool) -> list[type]:
    """The module's dataclasses: all of them in a config module (`whole`), else its `...Config` /
    `...Section` classes and the dataclasses their fields hold (a list of `MixSet`, say)."""
    classes: list[type] = []
    for _, obj in vars(module).items():
        if (
            inspect.isclass(obj)
            and dataclasses.is_dataclass(obj)
            and obj.__module__ == module.__name__
            and obj not in classes
        ):
            classes.append(obj)
    if not whole:
        keep = [c for c in classes if re.search(r"(Config|Section)$", c.__name__)]
        used = " ".join(str(f.type) for c in keep for f in dataclasses.fields(c))
        keep += [c for c in classes if c not in keep and re.search(rf"\b{c.__name__}\b", used)]
        classes = keep
    try:
        order = {name: i for i, name in enumerate(re.findall(r"^class (\w+)", inspect.getsource(module), re.M))}
    except (OSError, TypeError):
        order = {}
    return sorted(classes, key=lambda c: order.get(c.__name__, 10**6))


def _ast_classes(name: str) -> list[str]:
    """A module that cannot be imported: its dataclasses from the source, fields as written."""
    path = REPO / Path(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and _is_dataclass_node(node):
            out += [
                f"### `{node.name}`",
                "",
                inspect.cleandoc(ast.get_docstring(node) or ""),
                "",
                "| field | type | default |",
                "| --- | --- | --- |",
            ]
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    default = ast.unparse(item.value) if item.value is not None else "required"
                    out.append(f"| `{item.target.id}` | `{_cell(ast.unparse(item.annotation))}` | `{_cell(default)}` |")
            out.append("")
    return out


def config_page() -> str:
    lines = [
        "# Config reference",
        "",
        "Generated from the config dataclasses each time the site is built: every dataclass that the",
        "rooms' config modules define (and every `...Config` dataclass elsewhere in a room), field by",
        "field, with its type, its default and its documentation. A YAML config (`--config FILE`) holds",
        "these keys; `--set key=value` (dotted for sections, e.g. `--set lora.r=16`) overrides one.",
        "Unknown keys and wrong types are refused with one line naming the key.",
        "",
    ]
    param_docs: dict[str, dict[str, str]] = {}
    for name in _config_modules():
        try:
            module = importlib.import_module(name)
        except Exception as e:
            body = _ast_classes(name)
            if body:
                lines += [
                    f"## `{name}`",
                    "",
                    f"(read from the source: importing it failed here: {type(e).__name__})",
                    "",
                ]
                lines += body
            continue
        classes = _config_classes(module, whole=name.split(".")[-1] == "config" or ".config." in name)
        if not classes:
            continue
        lines += [f"## `{name}`", ""]
        mod_doc = inspect.getdoc(module)
        if mod_doc:
            lines += [mod_doc.split("\n\n")[0], ""]
        for cls in classes:
            prose, _ = _docstring_params(cls.__doc__ or "")
            if prose.startswith(f"{cls.__name__}("):  # dataclass's generated signature, no docstring
                prose = ""
            bases = [b.__name__ for b in cls.__bases__ if dataclasses.is_dataclass(b)]
            lines += [f"### `{cls.__name__}`", ""]
            if bases:
                lines += [f"Extends {', '.join(f'`{b}`' for b in bases)} (its fields are listed here too).", ""]
            if prose:
                lines += [prose, ""]
            try:
                hints = typing.get_type_hints(cls)
            except Exception:
                hints = {}
            fields = [f for f in dataclasses.fields(cls) if f.init or f.repr]
            if not fields:
                continue
            lines += ["| field | type | default | help |", "| --- | --- | --- | --- |"]
            for f in fields:
                kind = _type_name(hints.get(f.name, f.type))
                lines.append(
                    f"| `{f.name}` | `{_cell(kind)}` | {_cell(_field_default(f))} | "
                    f"{_cell(_field_help(f, cls, param_docs))} |"
                )
            lines.append("")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the hook

PAGES = {
    "index.md": front_page,
    "changelog.md": changelog_page,
    "license.md": license_page,
    "reference/cli.md": cli_page,
    "reference/config.md": config_page,
}


def _ensure_path() -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def on_files(files, config):  # mkdocs hook
    from mkdocs.structure.files import File

    _ensure_path()
    for uri, make in PAGES.items():
        existing = files.get_file_from_path(uri)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, uri, content=make()))
    return files


if __name__ == "__main__":
    _ensure_path()
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "site-pages")
    for uri, make in PAGES.items():
        target = out / uri
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(make(), encoding="utf-8")
        print(target)
