"""The flags OpenRLHF's PPO entry point accepts, read from its source (not run: it needs Ray and GPUs).

    git clone https://github.com/OpenRLHF/OpenRLHF && git -C OpenRLHF checkout v0.11.0
    python dev/openrlhf_flags.py OpenRLHF/openrlhf/cli/train_ppo_ray.py \
        > tests/train/samples/openrlhf_train_ppo_ray_flags.txt

Walks the file's syntax tree: every `parser.add_argument("--name", …)` call, with f-string names
expanded over an enclosing `for prefix in ("actor", "critic")` loop, and how many values each
flag takes (`store_true`/`store_false`: none; `nargs=N`: N; otherwise one). Prints `FLAG VALUES`
per line, sorted, after a header naming the source. `tests/test_docs.py` parses the documented
`openrlhf.cli.train_ppo_ray` command against that list.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def _values(call: ast.Call) -> int:
    for kw in call.keywords:
        if (
            kw.arg == "action"
            and isinstance(kw.value, ast.Constant)
            and kw.value.value in ("store_true", "store_false")
        ):
            return 0
        if kw.arg == "nargs" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, int):
            return kw.value.value
    return 1


def _names(node: ast.expr, env: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name) and v.value.id in env:
                parts.append(env[v.value.id])
            else:
                return None
        return "".join(parts)
    return None


def flags(source: str) -> dict[str, int]:
    found: dict[str, int] = {}

    def visit(node: ast.AST, env: dict[str, str]) -> None:
        if (
            isinstance(node, ast.For)
            and isinstance(node.target, ast.Name)
            and isinstance(node.iter, (ast.Tuple, ast.List))
        ):
            for item in node.iter.elts:
                if isinstance(item, ast.Constant) and isinstance(item.value, str):
                    for child in node.body:
                        visit(child, {**env, node.target.id: item.value})
            return
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            for arg in node.args:
                name = _names(arg, env)
                if name and name.startswith("--"):
                    found[name] = _values(node)
        for child in ast.iter_child_nodes(node):
            visit(child, env)

    visit(ast.parse(source), {})
    return found


def main(path: str) -> None:
    found = flags(Path(path).read_text(encoding="utf-8"))
    print(f"# {len(found)} flags of {path}: FLAG and how many values it takes (dev/openrlhf_flags.py)")
    for name in sorted(found):
        print(f"{name} {found[name]}")


if __name__ == "__main__":
    main(sys.argv[1])
