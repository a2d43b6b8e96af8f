"""Guidelines: the project's instructions, as Markdown; admins can edit them here."""

from __future__ import annotations

import streamlit as st

from prefkit.annotate.render import safe_markdown
from prefkit.annotate.store import User
from prefkit.annotate.ui import session


def _save(project: str) -> None:
    session.store().set_guidelines(project, st.session_state["guidelines-edit"])
    st.toast("Guidelines saved.")


def render(user: User, project: str) -> None:
    st.header("Guidelines")
    text = session.store().get_project(project).guidelines
    if text.strip():
        st.markdown(safe_markdown(text))
    else:
        st.info("This project has no guidelines yet.")
    if user.is_admin:
        with st.expander("Edit the guidelines (admins)"):
            st.text_area("Markdown", value=text, key="guidelines-edit", height=300)
            st.button("Save guidelines", key="guidelines-save", on_click=_save, args=(project,), type="primary")


if __name__ == "__main__":  # run as a page script by st.navigation
    render(*session.page_context())
