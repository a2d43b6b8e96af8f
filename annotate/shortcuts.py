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

# A checkbox ticked with the mouse keeps the focus, and Streamlit ignores shortcuts while any
# <input> has it: after ticking "unsafe" the next key would do nothing. Hand the focus back to the
# page after a click (keyboard users tabbing to a checkbox keep it, to toggle it with Space); the
# timeout lets the widget's own handlers, which focus its hidden <input>, run first. (Nothing
# tag-like may appear in the script, not even in a comment: the body is parsed as HTML first.)
# A constant of ours (never model text), installed once per browser tab.
_RELEASE_CHECKBOX_FOCUS = """<script>
if (!window.__prefkitCheckboxFocus) {
  window.__prefkitCheckboxFocus = true;
  document.addEventListener("click", (e) => {
    if (!(e.target instanceof Element) || !e.target.closest("[data-testid=stCheckbox]")) return;
    setTimeout(() => {
      const box = document.activeElement;
      if (box instanceof HTMLInputElement && box.type === "checkbox") box.blur();
    }, 0);
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
