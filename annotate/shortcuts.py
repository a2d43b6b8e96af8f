"""Keyboard shortcuts of the Label page, one key per button.

Streamlit 1.67's `st.button(shortcut=...)` binds the key in the browser and ignores it while the
focus is in a form field, so typing a rationale never submits. Keys 1..7 follow the 7-point row
left to right. Streamlit reserves C and R (R reruns the app), so "Report a problem" is P.
"""

from __future__ import annotations

import streamlit as st

from data.schema import SEVEN_POINT_LABELS

# 7-point value (-3 = A significantly better … 3 = B significantly better) -> key.
CHOICE_KEYS: dict[int, str] = {point: str(i + 1) for i, point in enumerate(sorted(SEVEN_POINT_LABELS))}
SKIP_KEY = "S"
REPORT_KEY = "P"

# A checkbox ticked with the mouse keeps the focus, and Streamlit's shortcut filter ignores any key
# whose event path holds an <input>: after ticking "unsafe" the next key would do nothing. Releasing
# the focus on a timer after the click raced a fast key press (and the path of an event already
# dispatched cannot change). So a capture listener on `window`, which runs before any listener on
# `document`, takes a key that arrives while a checkbox has the focus (not Space, Tab or Enter,
# which work the checkbox), releases the focus and sends the same key again from the page body.
# The copy carries `keyCode`/`which`, which the shortcut library reads.
# (Nothing tag-like may appear in the script, not even in a comment: the body is parsed as HTML.)
# A constant of ours (never model text), installed once per browser tab.
_RELEASE_CHECKBOX_FOCUS = """<script>
if (!window.__prefkitCheckboxFocus) {
  window.__prefkitCheckboxFocus = true;
  window.addEventListener("keydown", (e) => {
    const box = e.target;
    if (!(box instanceof HTMLInputElement) || box.type !== "checkbox") return;
    if ([" ", "Tab", "Enter"].includes(e.key) || e.ctrlKey || e.metaKey || e.altKey) return;
    e.stopImmediatePropagation();
    e.preventDefault();
    box.blur();
    const copy = new KeyboardEvent("keydown", {key: e.key, code: e.code, shiftKey: e.shiftKey, bubbles: true, cancelable: true});
    for (const name of ["keyCode", "which"]) Object.defineProperty(copy, name, {get: () => e[name]});
    document.body.dispatchEvent(copy);
  }, true);
}
</script>"""


def help_line() -> str:
    """The one-line reminder shown under the choice row."""
    keys = list(CHOICE_KEYS.values())
    return f"Keys: {keys[0]}–{keys[-1]} choose, left to right · {SKIP_KEY} skip · {REPORT_KEY} report a problem"


def release_checkbox_focus() -> None:
    """Keep the keys working right after a flag is ticked."""
    st.html(_RELEASE_CHECKBOX_FOCUS, unsafe_allow_javascript=True)
