"""The annotation app: `streamlit run annotate/app.py` with the store's URL in `$PREFKIT_DB`
(`prefkit annotate serve --db URL` does this).

Nothing but the sign-in form exists for a visitor who is not signed in: the pages are registered
with `st.navigation` only after the store has recognised the session, the Review page only for
reviewers and admins, the Dashboard only for admins, and each page checks sign-in (and rights)
again itself.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from prefkit.annotate.render import escape_text
from prefkit.annotate.shortcuts import install_page_script
from prefkit.annotate.store import User
from prefkit.annotate.ui import session
from prefkit.annotate.ui.style import PAGE_CSS

UI = Path(__file__).parent / "ui"

st.set_page_config(page_title="prefkit annotate", page_icon="⚖️", layout="wide", initial_sidebar_state="auto")

signed_in = session.current_user()
if signed_in is None:
    st.navigation([st.Page(session.sign_in_page, title="Sign in", url_path="sign-in")], position="hidden").run()
    st.stop()
user: User = signed_in  # a User from here on, in `sidebar` too (st.stop() does not return)

pages = [
    st.Page(UI / "label.py", title="Label", icon=":material/thumbs_up_down:", default=True),
    st.Page(UI / "my_work.py", title="My work", icon=":material/history:"),
    st.Page(UI / "guidelines.py", title="Guidelines", icon=":material/menu_book:"),
]
if user.may_review:
    pages.append(st.Page(UI / "review.py", title="Review", icon=":material/gavel:"))
if user.is_admin:
    pages.append(st.Page(UI / "dashboard.py", title="Dashboard", icon=":material/monitoring:"))
page = st.navigation(pages)
projects = session.choose_project(user)  # before the page: it acts on the chosen project


def sidebar() -> None:
    """Drawn after the page, so the page (the next pair) reaches the browser first."""
    with st.sidebar:
        st.caption(f"Signed in as **{escape_text(user.name)}**" + (f" ({user.role})" if user.may_review else ""))
        session.project_picker(projects)
        st.button("Sign out", on_click=session.sign_out, key="sign-out")
        install_page_script()
        st.html(PAGE_CSS)


session.run_page(page, user, then=sidebar)
