"""Keyboard shortcuts of the Label page, one key per button.

Streamlit 1.67's `st.button(shortcut=...)` binds the key in the browser (and ignores it while
the focus is in a text field, so typing a rationale never submits). Keys 1..7 follow the 7-point
row left to right. Streamlit reserves C and R (R reruns the app), so "Report a problem" is P.
"""

from __future__ import annotations

from data.schema import SEVEN_POINT_LABELS

# 7-point value (-3 = A significantly better … 3 = B significantly better) -> key.
CHOICE_KEYS: dict[int, str] = {point: str(i + 1) for i, point in enumerate(sorted(SEVEN_POINT_LABELS))}
SKIP_KEY = "S"
REPORT_KEY = "P"


def help_line() -> str:
    """The one-line reminder shown under the choice row."""
    keys = list(CHOICE_KEYS.values())
    return f"Keys: {keys[0]}–{keys[-1]} choose, left to right · {SKIP_KEY} skip · {REPORT_KEY} report a problem"
