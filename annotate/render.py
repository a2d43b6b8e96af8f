"""Model output is untrusted: turn it into Markdown that is safe to hand to `st.markdown`.

The text is parsed with markdown-it-py (CommonMark + tables + strikethrough, raw HTML off) and
written back out as Markdown from an allowlist of constructs. Every character of text is
backslash-escaped, so the only markup Streamlit's renderer sees is markup written here:

- headings, paragraphs, lists, block quotes, tables, emphasis, strikethrough, code spans and
  code blocks are kept;
- raw HTML (`<script>`, `<img onerror=...>`) shows as literal text;
- images are never loaded (a remote image is a tracking beacon): they become a visible
  "[image removed: alt — url]" note;
- links keep only absolute http, https and mailto targets; any other link (`javascript:`,
  `data:`, relative) shows as its text.

The result is meant for `st.markdown(..., unsafe_allow_html=False)`.
"""

from __future__ import annotations

import re
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

_SAFE_LINK = re.compile(r"^(https?://|mailto:)", re.IGNORECASE)
# All ASCII punctuation may be backslash-escaped in CommonMark; escaping every one of them
# also switches off Streamlit's extras ($ maths, :color[...] directives) inside model text.
_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")
_FENCE_INFO = re.compile(r"[^\w+#.-]")


def _markdown_parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    # markdown-it-py's way to restrict links is to replace validateLink on the instance
    md.validateLink = lambda url: bool(_SAFE_LINK.match(url))  # type: ignore[method-assign]
    return md


_MD = _markdown_parser()


def escape_text(text: str) -> str:
    """Text that Markdown shows exactly as written (no markup, no entities, no maths)."""
    return _PUNCT.sub(r"\\\1", text)


def _longest_run(text: str, char: str) -> int:
    runs = re.findall(re.escape(char) + "+", text)
    return max((len(r) for r in runs), default=0)


def _inline(node: SyntaxTreeNode, in_table: bool = False) -> str:
    out: list[str] = []
    for child in node.children:
        kind = child.type
        if kind == "text":
            out.append(escape_text(child.content))
        elif kind == "softbreak":
            out.append("\n")
        elif kind == "hardbreak":
            out.append("\\\n")
        elif kind == "code_inline":
            code = child.content.replace("|", "\\|") if in_table else child.content  # GFM: \| in a cell
            ticks = "`" * (_longest_run(code, "`") + 1)
            out.append(f"{ticks} {code} {ticks}")
        elif kind in ("em", "strong", "s"):
            mark = {"em": "*", "strong": "**", "s": "~~"}[kind]
            out.append(f"{mark}{_inline(child, in_table)}{mark}")
        elif kind == "link":
            href = str(child.attrs.get("href", ""))
            inner = _inline(child, in_table)
            # markdown-it has already validated and percent-encoded the target: no <, > or spaces.
            out.append(f"[{inner}](<{href}>)" if _SAFE_LINK.match(href) else inner)
        elif kind == "image":
            alt = "".join(t.content for t in child.walk() if t.type == "text")
            src = str(child.attrs.get("src", ""))
            out.append(escape_text(f"[image removed: {alt} — {src}]" if alt else f"[image removed: {src}]"))
        else:  # anything unforeseen is shown as its plain text, never as markup
            out.append(escape_text("".join(t.content for t in child.walk() if t.type == "text")))
    return "".join(out)


def _indent(text: str, first: str, rest: str) -> str:
    lines = text.split("\n")
    return "\n".join([first + lines[0]] + [(rest + ln) if ln else ln for ln in lines[1:]])


def _fence(content: str, info: str = "") -> str:
    ticks = "`" * max(3, _longest_run(content, "`") + 1)
    if content and not content.endswith("\n"):
        content += "\n"
    return f"{ticks}{_FENCE_INFO.sub('', info.split(' ')[0] if info else '')}\n{content}{ticks}"


def _table(node: SyntaxTreeNode) -> str:
    rows: list[list[str]] = []
    aligns: list[str] = []
    for section in node.children:
        for tr in section.children:
            cells = [
                _inline(cell.children[0], in_table=True).replace("\n", " ") if cell.children else ""
                for cell in tr.children
            ]
            if section.type == "thead":
                style = [str(cell.attrs.get("style", "")) for cell in tr.children]
                aligns = [
                    {"text-align:left": ":--", "text-align:right": "--:", "text-align:center": ":-:"}.get(s, "---")
                    for s in style
                ]
            rows.append(cells)
    if not rows:
        return ""
    lines = ["| " + " | ".join(rows[0]) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def _blocks(nodes: list[SyntaxTreeNode], tight: bool = False) -> str:
    return ("\n" if tight else "\n\n").join(b for b in (_block(n) for n in nodes) if b)


def _is_tight(node: SyntaxTreeNode) -> bool:
    return any(p.type == "paragraph" and p.hidden for item in node.children for p in item.children)


def _block(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "paragraph":
        return _inline(node.children[0]) if node.children else ""
    if kind == "heading":
        return "#" * int(node.tag[1]) + " " + _inline(node.children[0])
    if kind in ("fence", "code_block"):
        return _fence(node.content, node.info if kind == "fence" else "")
    if kind == "hr":
        return "---"
    if kind == "blockquote":
        return _indent(_blocks(node.children), "> ", "> ").replace("\n\n", "\n>\n")
    if kind == "table":
        return _table(node)
    if kind in ("bullet_list", "ordered_list"):
        tight = _is_tight(node)
        start = int(node.attrs.get("start", 1)) if kind == "ordered_list" else 0
        items = []
        for i, item in enumerate(node.children):
            marker = f"{start + i}. " if kind == "ordered_list" else "- "
            body = _blocks(item.children, tight=tight) or ""
            items.append(_indent(body, marker, " " * len(marker)))
        return ("\n" if tight else "\n\n").join(items)
    # An unknown block is shown as its plain text.
    return escape_text("".join(t.content for t in node.walk() if t.type == "text"))


@lru_cache(maxsize=4096)
def safe_markdown(text: str) -> str:
    """Markdown for `st.markdown(..., unsafe_allow_html=False)` that renders `text` inertly."""
    return _blocks(SyntaxTreeNode(_MD.parse(text)).children)


# Display only: the hh-rlhf transcript ("\n\nHuman: …\n\nAssistant: …") split into turns. Once
# prompts carry their turns (a list of {role, content}), those are passed in as they are.
_TURN_MARK = re.compile(r"(?:^\s*|\n[ \t]*\n)(Human|Assistant):[ \t]?")
_ROLE = {"human": "user", "user": "user", "assistant": "assistant", "system": "system"}


def dialogue_turns(prompt: str | list[dict[str, str]]) -> list[tuple[str, str]]:
    """(role, text) per turn, role "user", "assistant" or "system". A list of {role, content}
    turns is taken as given (roles normalised); a transcript string is split on its
    "Human:" / "Assistant:" markers; a string without markers (or with only one "Human:") is
    one user turn."""
    if not isinstance(prompt, str):
        return [(_ROLE.get(str(t["role"]).lower(), str(t["role"]).lower()), str(t["content"])) for t in prompt]
    marks = list(_TURN_MARK.finditer(prompt))
    if not marks or prompt[: marks[0].start()].strip():
        return [("user", prompt.strip())]
    turns = []
    for m, nxt in zip(marks, marks[1:] + [None], strict=True):
        text = prompt[m.end() : nxt.start() if nxt else len(prompt)].strip()
        turns.append((_ROLE[m.group(1).lower()], text))
    if turns and not turns[-1][1] and turns[-1][0] == "assistant":
        turns.pop()  # the transcript's trailing "Assistant:" cue is where the responses go
    return turns
