"""The app's own CSS (installed on every page by `app.py`) and the colours it uses, with the
contrast check that keeps them readable (WCAG 2.1: 4.5:1 for text, 3:1 for other marks).

Text keeps the theme's own colour at full strength: Streamlit draws key hints (`kbd`) and
captions at 60 % opacity (3.9:1 on white), which this CSS undoes inside the choice row. The only
colours of ours are the strength bars (a mark, not text) and the note the page script shows
while a key waits for its buttons (text).
"""

from __future__ import annotations

# Streamlit's two built-in themes (light, dark): the backgrounds our marks must stand out from.
THEME_BACKGROUNDS = {"light": "#ffffff", "dark": "#0e1117"}
SIDE_COLOURS = {"A": "#1c83e1", "B": "#d9480f"}  # strength bars: A blue, B orange
NOTE_TEXT, NOTE_BACKGROUND = "#ffffff", "#1f2430"  # the "key kept" note
# Strength cue: the bar under a choice button is as wide as its level (4 = significantly better).
BAR_WIDTH = {4: "100%", 3: "72%", 2: "46%", 1: "22%"}
BAR_PX = 5
GROUP_GAP_REM = 0.6  # the extra space either side of Unsure
TEXT_CONTRAST, MARK_CONTRAST = 4.5, 3.0  # WCAG 2.1 AA: 1.4.3 (text), 1.4.11 (non-text)


def relative_luminance(colour: str) -> float:
    """WCAG 2.1's relative luminance of "#rrggbb" or "rgb(r, g, b)"."""
    if colour.startswith("#"):
        channels = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    else:
        channels = [int(float(c)) for c in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3]]

    def linear(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2.1's contrast ratio of two colours, 1 to 21."""
    lighter, darker = sorted((relative_luminance(foreground), relative_luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _bars() -> str:
    rules = []
    for point in range(-4, 5):
        if point == 0:
            continue
        colour = SIDE_COLOURS["A" if point < 0 else "B"]
        rules.append(
            f'.st-key-choices [class*="st-key-choice{point}-"] button {{'
            f" background-image: linear-gradient({colour}, {colour});"
            f" background-size: {BAR_WIDTH[abs(point)]} {BAR_PX}px;"
            " background-position: center bottom; background-repeat: no-repeat; }"
        )
    return "\n".join(rules)


_UNSURE = '.st-key-choices [class*="st-key-choice0-"]'  # the Unsure button's element

# The choice row's container sticks to the bottom of the window, on the page's own background;
# a wide table in model text scrolls inside its box instead of spilling out. Below 1,100 px the
# page starts below Streamlit's toolbar (it covered the project's name and progress).
PAGE_CSS = f"""<style>
[data-testid=stLayoutWrapper]:has(> .st-key-choices) {{
  position: sticky; bottom: 0; z-index: 99;
}}
.st-key-choices {{ padding: 0.3rem 0 0.5rem; gap: 0.35rem;
  background: var(--prefkit-bg, #fff); border-top: 1px solid rgba(128, 128, 128, 0.35);
}}
[data-testid=stMainBlockContainer] {{ padding-top: 2.5rem; padding-bottom: 1rem; }}
@media (max-width: 1099.98px) {{
  [data-testid=stMainBlockContainer] {{ padding-top: 4rem; }}
}}
.st-key-choices button {{ min-height: 2.4rem; padding: 0.15rem 0.3rem {BAR_PX + 2}px; }}
.st-key-choices button p {{ font-size: 0.8rem; line-height: 1.15; }}
.st-key-choices kbd {{ opacity: 1; color: inherit; }}
.st-key-choices [data-testid=stCaptionContainer], .st-key-choices [data-testid=stCaptionContainer] p {{
  color: inherit; opacity: 1; font-size: 0.72rem; margin: 0;
}}
.st-key-choices [data-testid=stCaptionContainer] p {{ line-height: 1.4; }}
.st-key-choices [data-testid=stCaptionContainer] strong {{ font-size: 0.8rem; }}
/* Unsure stands apart from the two sides (room inside its column, so the nine columns keep their
   widths); the groups' captions line up with the columns below (Streamlit's "small" gap, 1rem). */
{_UNSURE} {{ padding: 0 {GROUP_GAP_REM}rem; }}
.prefkit-groups {{ display: grid; grid-template-columns: 4fr 1fr 4fr; column-gap: 1rem;
  font-size: 0.72rem; line-height: 1.2; color: inherit; }}
.prefkit-groups span:nth-child(2) {{ text-align: center; }}
.prefkit-groups span:nth-child(3) {{ text-align: right; }}
.st-key-choices [class*="st-key-choice"] button {{ min-height: 3.45rem; }}
.st-key-undone-choice button {{ outline: 2px dashed currentColor; outline-offset: 2px; }}
{_bars()}
@media (max-width: 1099.98px) {{
  {_UNSURE} {{ padding: 0 {GROUP_GAP_REM / 2}rem; }}
  .st-key-choices kbd {{ display: none; }}
  .st-key-choices button p {{ font-size: 0.74rem; }}
}}
#prefkit-key-note {{ position: fixed; left: 50%; transform: translateX(-50%); bottom: 9.5rem; z-index: 1000;
  padding: 0.35rem 0.8rem; border-radius: 0.5rem; font-size: 0.85rem;
  color: {NOTE_TEXT}; background: {NOTE_BACKGROUND};
}}
.st-key-prompt [data-testid=stChatMessage] {{ padding: 0.35rem 0.5rem; }}
[data-testid=stMarkdownContainer] table {{ display: block; max-width: 100%; overflow-x: auto; }}
</style>"""
