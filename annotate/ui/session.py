"""Who is signed in, kept in the store, not in the browser tab's memory.

Signing in with a token (or an identity provider through `st.login`) opens a session row in the
store; the tab keeps only the random session key, in the URL's `?s=` query parameter (and in its
session state, because moving between pages drops query parameters), so a reload stays signed
in, and the server can end the session (sign out, user disabled): the key is checked against the
store on every rerun. Trade-off: the key is visible in the address bar and browser history of
that machine; it is not the sign-in token, it can be revoked, and teams with an identity
provider use OIDC instead.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import streamlit as st

from prefkit.annotate.render import escape_text
from prefkit.annotate.store import LOCAL, SESSION_TTL, SignInThrottled, Store, User
from prefkit.core.errors import ConfigError, PrefkitError

SESSION_PARAM = "s"
PROJECT_PARAM = "p"
DB_ENV = "PREFKIT_DB"
SESSION_HOURS_ENV = "PREFKIT_SESSION_HOURS"


def session_lifetime() -> timedelta:
    """How long a sign-in lasts: `$PREFKIT_SESSION_HOURS` (`prefkit annotate serve
    --session-hours`), 12 h by default. Closing the tab does not end it; signing out does."""
    raw = os.environ.get(SESSION_HOURS_ENV)
    if not raw:
        return SESSION_TTL
    try:
        hours = float(raw)
    except ValueError:
        hours = -1.0
    if not hours > 0:
        st.error(f"${SESSION_HOURS_ENV} must be a number of hours above 0, got {raw!r}.")
        st.stop()
    return timedelta(hours=hours)


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def store_url() -> str:
    """The store's URL, from `$PREFKIT_DB`; stops the page with a message when it is not set."""
    url = os.environ.get(DB_ENV)
    if not url:
        st.error(f"No store configured: start the app with `prefkit annotate serve --db URL` (or set ${DB_ENV}).")
        st.stop()
    return url


def store() -> Store:
    """The store named by `$PREFKIT_DB`, opened once per server process (a plain dictionary:
    a run asks for it several times, and `st.cache_resource` hashes its arguments each time)."""
    url = store_url()
    found = _stores.get(url)
    if found is None:
        with _stores_lock:
            found = _stores.get(url)
            if found is None:
                found = _stores[url] = Store.open(url)
    return found


def pairs_in(project: str) -> int:
    """How many pairs `project` has, counted at most every 30 s (100,000 pairs: ~5 ms): pairs are
    only ever added, so a count a few seconds old serves the progress line; a new import shows
    in it within 30 s."""
    return _count_pairs(store_url(), project)


@st.cache_data(ttl=30, show_spinner=False, max_entries=256)
def _count_pairs(url: str, project: str) -> int:  # keyed by the store too
    return store().count_pairs(project)


def current_user() -> User | None:
    """The signed-in user of this tab, checked against the store on every run."""
    # After a page move the key comes from the tab's state and goes back into the URL.
    key = st.query_params.get(SESSION_PARAM) or st.session_state.get(SESSION_PARAM)
    if key:
        user = store().session_user(key)
        if user is not None:
            _remember(key)
            return user
        _forget()  # expired, signed out elsewhere, or user disabled
    if _oidc_configured() and st.user.get("is_logged_in"):
        return _oidc_user()
    return None


SIGNED_OUT_NOTE = "signed-out-note"  # why the sign-in form is back, said on it once
PROJECT_NOTE = "project-note"  # why the page shows another project, said on it once


def still_signed_in(user: User) -> bool:
    """For a button's callback, which runs before the page (and so before its sign-in check):
    whether this tab is still signed in as `user`. When not (the sign-in ran out, `--session-hours`;
    signed out elsewhere; the account disabled) the action must not run: the sign-in form that
    comes next says so, and that nothing was recorded."""
    current = current_user()
    if current is not None and current.name == user.name:
        return True
    hours = session_lifetime().total_seconds() / 3600
    st.session_state[SIGNED_OUT_NOTE] = (
        f"Your sign-in has ended (it lasts {hours:g} h; or you signed out in another tab, or an admin disabled "
        "your account), so that last action was not recorded. Sign in again to go on."
    )
    return False


def store_action(
    error_key: str, on_success: Callable[[], None] | None = None
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A button's callback that calls the store, its first argument the signed-in `User`.
    Callbacks run before the page and its sign-in check, so it does nothing once this tab's sign-in
    has ended (`still_signed_in`: the sign-in form says so); a refusal (a pair withdrawn meanwhile,
    taken off the project) is kept under `error_key` for the page to show on its next draw instead
    of a traceback; `on_success` runs only when the call went through."""

    def wrap(action: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(action)
        def run(user: User, *args: object) -> None:
            if not still_signed_in(user):
                return
            try:
                action(user, *args)
            except PrefkitError as e:
                st.session_state[error_key] = str(e)
            else:
                if on_success is not None:
                    on_success()

        return run

    return wrap


def _set_param(name: str, value: str) -> None:
    """Put `value` in the URL's `?name=`, only if it is not there already: every write sends the
    browser a message (and a history entry) ahead of the page's own elements."""
    if st.query_params.get_all(name) != [value]:
        st.query_params[name] = value


def _remember(key: str) -> None:
    _set_param(SESSION_PARAM, key)
    st.session_state[SESSION_PARAM] = key


def _forget() -> None:
    st.query_params.pop(SESSION_PARAM, None)
    st.session_state.pop(SESSION_PARAM, None)


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except FileNotFoundError:  # no secrets.toml at all
        return False


def _oidc_user() -> User | None:
    """An identity-provider user maps onto the store user named by their e-mail address."""
    email = st.user.get("email")
    try:
        user = store().get_user(email) if isinstance(email, str) and email else None
    except ConfigError:  # no such user
        user = None
    if user is None or user.disabled:
        st.error(f"{escape_text(str(email))} has no annotator account here; ask an admin to add one for this address.")
        st.button("Sign out", on_click=st.logout)
        st.stop()
    key = store().start_session(user, ttl=session_lifetime())
    _remember(key)
    return user


def _sign_in_with_token() -> None:
    token = st.session_state.get("sign_in_token", "")
    user = _authenticate(token) if token else None
    st.session_state["sign_in_token"] = ""  # never keep the token in the tab's state
    if user is None:
        st.session_state.setdefault("sign_in_error", "That token is not valid (or the account is disabled).")
        return
    _remember(store().start_session(user, ttl=session_lifetime()))


def _authenticate(token: str) -> User | None:
    """`Store.authenticate` for this client's address (`st.context.ip_address`: the connection's
    own, or the client a trusted proxy names, `prefkit annotate serve --trusted-proxies`; `local`
    when there is none, as on localhost): never the browser tab, so a new tab starts no count. A
    correct token signs in at once; a wrong one beyond the free failures is answered only after
    its wait (this tab waits; others are not held up)."""
    ip = st.context.ip_address
    try:
        return store().authenticate(token, client=f"ip:{ip}" if isinstance(ip, str) and ip else LOCAL)
    except SignInThrottled as e:
        time.sleep(e.wait_seconds)  # the answer to a wrong guess is held: guessing is slow
        st.session_state["sign_in_error"] = f"That token is not valid ({e}; a correct token never waits)."
        return None


def sign_in_page() -> None:
    """The only thing an unsigned visitor sees."""
    st.title("prefkit annotate")
    if note := st.session_state.pop(SIGNED_OUT_NOTE, None):
        st.warning(note)
    st.write("Sign in with the token an admin gave you (`prefkit annotate users add NAME`).")
    with st.form("sign_in", enter_to_submit=True):
        st.text_input("Sign-in token", type="password", key="sign_in_token")
        st.form_submit_button("Sign in", on_click=_sign_in_with_token, type="primary")
    if error := st.session_state.pop("sign_in_error", None):
        st.error(error)
    if _oidc_configured():
        st.button("Sign in with your identity provider", on_click=st.login)


def sign_out() -> None:
    key = st.query_params.get(SESSION_PARAM) or st.session_state.get(SESSION_PARAM)
    if key:
        store().end_session(key)
    _forget()
    if _oidc_configured() and st.user.get("is_logged_in"):
        st.logout()


PROJECT_KEY = "project"  # the project every page shows and acts on
_PICKER_KEY = "project-picker"  # the sidebar widget, kept equal to it


def _picked() -> None:
    st.session_state[PROJECT_KEY] = st.session_state[_PICKER_KEY]


def choose_project(user: User) -> list[str]:
    """The project the pages show and act on, among those `user` may label (returned, for
    `project_picker`). The choice lives in `st.session_state["project"]`, changed only by the
    picker's own change callback (never by a widget that lost its state on a fast page move), and
    the widget is set from it on every run: what the sidebar shows is what the page acts on. It is
    kept in `?p=` too, so a reload (or a shared link) opens the same project."""
    names = [p.name for p in store().projects_for(user)]
    state = st.session_state
    chosen = state.get(PROJECT_KEY)
    if chosen is not None and chosen not in names:  # taken off it since the last page: say so
        state[PROJECT_NOTE] = f"You can no longer label project {chosen!r}: an admin took you off it" + (
            f". Now showing {names[0]!r}." if names else "."
        )
    if not names:
        state.pop(PROJECT_KEY, None)
        return names
    if chosen not in names:
        wanted = st.query_params.get(PROJECT_PARAM)
        chosen = wanted if wanted in names else names[0]
    state[PROJECT_KEY] = state[_PICKER_KEY] = chosen
    _set_param(PROJECT_PARAM, chosen)
    return names


def project_picker(names: list[str]) -> None:
    """The sidebar's project picker over `names` (from `choose_project` in the same run)."""
    if names:
        st.sidebar.selectbox("Project", names, key=_PICKER_KEY, on_change=_picked)


# The user the app checked against the store at the start of this script run, while it runs the
# page (`run_page`): the page's own check then needs no second trip to the store. Per thread, set
# and cleared around the page's run; a page script run on its own finds it unset and checks.
_this_run = threading.local()


def run_page(page: st.Page, user: User, then: Callable[[], None]) -> None:
    """Run the page `st.navigation` chose, for `user` (just checked by `current_user`), and then
    `then` (the sidebar), even when the page stops early (`st.stop`)."""
    _this_run.user = user
    try:
        page.run()
    finally:
        _this_run.user = None
        then()


def page_context(admin: bool = False, review: bool = False) -> tuple[User, str]:
    """(user, project) for a page script; stops the page for visitors who may not see it
    (`admin`: admins only; `review`: reviewers and admins)."""
    user = getattr(_this_run, "user", None) or current_user()
    if user is None:
        st.stop()
    if admin and not user.is_admin:
        st.error("This page is for admins.")
        st.stop()
    if review and not user.may_review:
        st.error("This page is for reviewers and admins.")
        st.stop()
    if note := st.session_state.pop(PROJECT_NOTE, None):
        st.warning(escape_text(note))
    project = st.session_state.get(PROJECT_KEY)
    if not project:
        st.info(
            "There is no project for you yet: an admin creates one with `prefkit annotate import PAIRS --project NAME`"
            " and assigns annotators with `prefkit annotate assign NAME --project NAME`."
        )
        st.stop()
    return user, project
