"""A prompt drawn as a conversation (Label and My work): one bubble per turn with its role; a
single question as it is. Model text goes through `safe_markdown`; a long turn scrolls in a box
of its own."""

from __future__ import annotations

import streamlit as st

from prefkit.annotate.render import dialogue_turns, escape_text, safe_markdown
from prefkit.data.schema import Prompt

LONG_TURN = 1200  # characters: a longer turn scrolls in a box of its own
LONG_TURN_PX = 260
ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}


def prompt_turns(prompt: Prompt) -> str | list[dict[str, str]]:
    """What `render_prompt` takes for a stored prompt: a dialogue's turns
    (`prefkit.data.schema.Prompt.turns`), a flat question as it is, so that a transcript stored
    as one question (older stores) is still split for display."""
    return [{"role": r, "content": c} for r, c in prompt.turns] if prompt.history else prompt.question


def _text(text: str) -> None:
    if len(text) > LONG_TURN:
        with st.container(height=LONG_TURN_PX, border=False):
            st.markdown(safe_markdown(text))
    else:  # no box of its own: one element fewer ahead of the question on every click
        st.markdown(safe_markdown(text))


def _turn(role: str, text: str) -> None:
    with st.chat_message(role, avatar=":material/person:" if role == "user" else ":material/smart_toy:"):
        st.caption(ROLE_NAMES.get(role, escape_text(role)))
        _text(text)


def render_prompt(
    prompt: str | list[dict[str, str]], system: str | None = None, *, fold: bool = True, key: str | None = "prompt"
) -> None:
    """The prompt. A dialogue is a conversation: one bubble per turn, roles named. With `fold`
    (the Label page) the turns before the last user turn are folded in an expander and the last
    user turn (and anything after it) is always shown; without it (My work) every turn is shown.
    A single question is shown as it is (a long one scrolls in its box)."""
    turns = dialogue_turns(prompt)
    last_user = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=0)
    with st.container(border=True, key=key):
        if system:
            st.caption("System: " + escape_text(system))
        if len(turns) == 1:
            _text(turns[0][1])
            return
        if fold and last_user > 0:
            with st.expander(f"Earlier in the conversation ({last_user} turns)", expanded=False):
                for role, text in turns[:last_user]:
                    _turn(role, text)
            turns = turns[last_user:]
        for role, text in turns:
            _turn(role, text)
