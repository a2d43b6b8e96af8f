"""The safe Markdown renderer: model output keeps its code blocks and formatting, but raw HTML,
images and non-http links come out inert, whatever the input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from prefkit.annotate.render import escape_text, safe_markdown


def _permissive_tokens(markdown: str) -> list[SyntaxTreeNode]:
    """Parse the way the most permissive renderer would: raw HTML on, every link scheme allowed."""
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    md.validateLink = lambda url: True
    return list(SyntaxTreeNode(md.parse(markdown)).walk())


def _assert_inert(markdown: str) -> None:
    for node in _permissive_tokens(markdown):
        assert node.type not in ("html_block", "html_inline", "image"), (node.type, markdown)
        if node.type == "link":
            assert str(node.attrs["href"]).startswith(("http://", "https://", "mailto:")), markdown


ATTACKS = {
    "script": "Hello <script>window.__pwned = 1</script> world",
    "img beacon": 'Look <img src="http://beacon.invalid/x.gif" onerror="window.__pwned=1">',
    "md image": "![pixel](http://beacon.invalid/pixel.png)",
    "ref image": "![pixel][p]\n\n[p]: http://beacon.invalid/pixel.png",
    "javascript link": "[click me](javascript:window.__pwned=1)",
    "javascript autolink": "<javascript:alert(1)>",
    "javascript ref link": "[click][j]\n\n[j]: javascript:alert(1)",
    "data link": "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "entity-encoded js": "[x](jav&#x61;script:alert(1))",
    "html block": "<div onclick=alert(1)>\n\n*hi*\n\n</div>",
    "iframe": '<iframe src="http://beacon.invalid/"></iframe>',
}


def test_attacks_render_inert_and_visible() -> None:
    for name, attack in ATTACKS.items():
        out = safe_markdown(attack)
        _assert_inert(out)
        assert out.strip(), name  # the annotator still sees that something was there


def test_raw_html_shows_as_literal_text() -> None:
    out = safe_markdown("Hello <script>alert(1)</script>")
    assert out == r"Hello \<script\>alert\(1\)\<\/script\>"


def test_images_become_a_visible_note_not_a_request() -> None:
    out = safe_markdown("![pixel](http://beacon.invalid/pixel.png)")
    assert "![" not in out
    assert "image removed" in out and r"beacon\.invalid" in out


def test_safe_links_kept_unsafe_links_become_text() -> None:
    assert safe_markdown("[docs](https://example.org/a)") == "[docs](<https://example.org/a>)"
    assert safe_markdown("[mail](mailto:a@b.org)") == "[mail](<mailto:a@b.org>)"
    out = safe_markdown("[click](javascript:alert(1))")
    assert "](" not in out.replace(r"\]\(", "")  # only escaped brackets remain
    assert safe_markdown("[rel](/admin)") == r"\[rel\]\(\/admin\)"


def test_code_blocks_and_formatting_survive() -> None:
    src = "## Cách làm\n\n1. **Bước một**: chạy `pip install x`\n2. *Bước hai*\n\n```python\nprint('<b>')\n```\n"
    out = safe_markdown(src)
    assert "```python\nprint('<b>')\n```" in out  # code kept verbatim: a code block is inert
    assert "## Cách làm" in out
    assert "1. **Bước một**\\: chạy ` pip install x `" in out
    nodes = {n.type for n in _permissive_tokens(out)}
    assert {"heading", "ordered_list", "strong", "em", "code_inline", "fence"} <= nodes


def test_tables_lists_quotes_round_trip() -> None:
    src = "| a | b `c\\|d` |\n|:-|-:|\n| 1 | **2** |\n\n> quoted\n> more\n\n- x\n  - y\n"
    out = safe_markdown(src)
    assert "| :-- | --: |" in out
    assert safe_markdown(out) == out  # the output is a fixed point: nothing is re-interpreted
    kinds = [n.type for n in _permissive_tokens(out)]
    assert "table" in kinds and "blockquote" in kinds and kinds.count("bullet_list") == 2


def test_code_fence_cannot_be_closed_early() -> None:
    src = "````\n```\n<script>x</script>\n```\n````"
    out = safe_markdown(src)
    fences = [n for n in _permissive_tokens(out) if n.type == "fence"]
    assert len(fences) == 1 and "<script>" in fences[0].content
    _assert_inert(out)


def test_streamlit_extras_are_escaped() -> None:
    # $maths$ and :color[text] are Streamlit markdown extensions; in model text they are literal.
    assert escape_text("$x$ :red[hi]") == r"\$x\$ \:red\[hi\]"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<",
                ">",
                "[",
                "]",
                "(",
                ")",
                "!",
                "`",
                "*",
                "_",
                "\\",
                "\n",
                "\n\n",
                " ",
                "    ",
                "|",
                "-",
                "#",
                "javascript:",
                "http://x.invalid/",
                "<img src=x>",
                "<script>",
                "&#106;",
                "![",
                "](",
                "> ",
                "1. ",
                "```",
                "~~",
                ":",
                "a",
                "Việt",
            ]
        ),
        max_size=40,
    ).map("".join)
)
def test_any_input_renders_inert(text: str) -> None:
    _assert_inert(safe_markdown(text))


def test_dialogue_turns_from_a_transcript_or_a_list_of_turns() -> None:
    from prefkit.annotate.render import dialogue_turns

    transcript = "\n\nHuman: Chào bạn?\nHuman: là một dòng\n\nAssistant: Chào!\n\nHuman: Giúp tôi.\n\nAssistant:"
    # The trailing "Assistant:" cue goes; a "Human:" not after a blank line is text of its turn.
    assert dialogue_turns(transcript) == [
        ("user", "Chào bạn?\nHuman: là một dòng"),
        ("assistant", "Chào!"),
        ("user", "Giúp tôi."),
    ]
    assert dialogue_turns("Human: chỉ một câu") == [("user", "chỉ một câu")]
    # A plain question (even one that mentions the markers later) is one user turn.
    assert dialogue_turns("Giải thích Human: và Assistant: là gì?") == [
        ("user", "Giải thích Human: và Assistant: là gì?")
    ]
    # Turns from the data model pass through, roles normalised.
    turns = [
        {"role": "system", "content": "Be brief"},
        {"role": "Human", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]
    assert dialogue_turns(turns) == [("system", "Be brief"), ("user", "hi"), ("assistant", "yo")]
