"""Every key of the Label page is assigned once, in `prefkit.annotate.shortcuts`, and the colours
the page adds are readable (WCAG 2.1 contrast, computed from the colours the CSS uses)."""

from __future__ import annotations

import json
import re

import pytest

from prefkit.annotate import shortcuts
from prefkit.annotate.ui import style
from prefkit.data.schema import CHOICE_LABELS, SafetyBin


def test_every_key_is_assigned_once_and_none_is_streamlits() -> None:
    assigned = (
        list(shortcuts.CHOICE_KEYS.values())
        + [shortcuts.SKIP_KEY, shortcuts.REPORT_KEY, shortcuts.UNDO_KEY, shortcuts.RATIONALE_KEY]
        + [shortcuts.NEXT_KEY, shortcuts.EDIT_KEY]
        + list(shortcuts.UNSAFE_KEYS.values())
        + list(shortcuts.SAFETY_KEYS.values())
    )
    assert len(assigned) == len(set(assigned)), "a key is used twice"
    assert set(assigned) == set(shortcuts.KEYS), "every key is listed in KEYS, and KEYS lists no other"
    assert not set(assigned) & set(shortcuts.STREAMLIT_KEYS)
    assert [shortcuts.CHOICE_KEYS[p] for p in sorted(CHOICE_LABELS)] == [str(i) for i in range(1, 10)]
    assert set(shortcuts.SAFETY_KEYS) == {b.value for b in SafetyBin} - {SafetyBin.UNSAFE_VS_SAFE.value}


def test_the_page_script_gets_the_same_keys() -> None:
    script = shortcuts.page_script()
    config = json.loads(re.search(r"const CFG = (\{.*?\});", script).group(1))
    assert config["pairKeys"] == {
        **{k: f"choice{p}" for p, k in shortcuts.CHOICE_KEYS.items()},
        "S": "skip",
        "P": "report",
    }
    assert config["shiftKeys"] == {
        "A": ["unsafeA", 0],
        "B": ["unsafeB", 0],
        "P": ["safety", 0],
        "S": ["safety", 1],
        "U": ["safety", 2],
    }
    assert (config["undo"], config["rationale"], config["narrow"]) == ("U", "T", shortcuts.NARROW_PX)
    body = script.removeprefix("<script>").removesuffix("</script>")
    assert re.search(r"<[A-Za-z/!]", body) is None  # parsed as HTML: nothing tag-like inside


@pytest.mark.parametrize("theme", sorted(style.THEME_BACKGROUNDS))
def test_colours_of_ours_meet_wcag_contrast(theme: str) -> None:
    background = style.THEME_BACKGROUNDS[theme]
    for side, colour in style.SIDE_COLOURS.items():  # strength bars: a mark, 3:1
        assert style.contrast_ratio(colour, background) >= style.MARK_CONTRAST, (side, theme)
        assert colour in style.PAGE_CSS
    assert style.contrast_ratio(style.NOTE_TEXT, style.NOTE_BACKGROUND) >= style.TEXT_CONTRAST
    assert f"color: {style.NOTE_TEXT}; background: {style.NOTE_BACKGROUND}" in style.PAGE_CSS


def test_contrast_ratio_against_known_values() -> None:
    assert style.contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert style.contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert style.contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the classic near-miss
    assert style.contrast_ratio("rgb(119, 119, 119)", "#ffffff") == pytest.approx(4.48, abs=0.01)
    # Streamlit's key hint before the fix: text rgb(47, 45, 43) at 60 % opacity on white
    faded = tuple(round(0.6 * c + 0.4 * 255) for c in (47, 45, 43))
    assert style.contrast_ratio(f"rgb{faded}", "#ffffff") == pytest.approx(3.9, abs=0.1)
