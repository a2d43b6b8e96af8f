"""Keyboard shortcuts of the Label page, and the one browser script that keeps them honest.

Streamlit 1.67's `st.button(shortcut=...)` binds the key in the browser and ignores it while the
focus is in a form field, so typing a rationale never submits. Keys 1..9 follow the choice row
left to right (A significantly better … unsure … B significantly better). Streamlit reserves C
and R (R reruns the app), so "Report a problem" is P; S skips, U undoes.

The rule: a key either does what its label says or nothing, wherever the focus is.
"""

from __future__ import annotations

import streamlit as st

from prefkit.data.schema import CHOICE_LABELS

# Choice value (-4 = A significantly better … 0 unsure … 4 = B significantly better) -> key.
CHOICE_KEYS: dict[int, str] = {point: str(i + 1) for i, point in enumerate(sorted(CHOICE_LABELS))}
SKIP_KEY = "S"
REPORT_KEY = "P"
UNDO_KEY = "U"
# Below this window width the sidebar starts collapsed (Streamlit itself collapses it only
# below 768 px, leaving a 300 px sidebar beside the pair at 800 px).
NARROW_PX = 1100

# One capture listener on `window` (it runs before Streamlit's listener on `document`):
# - A text box (the rationale): Escape, Ctrl/Cmd+Enter and Tab leave it at once (blur). Streamlit
#   keeps the text (it commits a text area on blur) and the next key is the page's again, however
#   fast it follows. Tab therefore never walks on to a choice button, where Enter would record a
#   judgement.
# - A checkbox, radio or closed dropdown keeps the focus after a mouse click, and Streamlit's
#   shortcut filter ignores keys whose event path holds an input (a dropdown even takes the key as
#   search text: a report by key was always "Bad prompt"). A printable key (or Escape) arriving
#   there releases the focus and is sent again from the page body; the copy carries
#   `keyCode`/`which`, which the shortcut library reads. An open dropdown keeps its keys.
# - Enter or Space on a focused button of the choice row does nothing: only the keys shown on
#   the labels (and the mouse) act there.
# A MutationObserver (looking at most once per frame) moves the page to the top when a new pair
# is drawn (its container's key holds the assignment id), and on a narrow window the sidebar is collapsed once per tab.
# (Nothing tag-like may appear in the script, not even in a comment: the body is parsed as HTML.)
# A constant of ours (never model text), installed once per browser tab.
_PAGE_SCRIPT = """<script>
if (!window.__prefkitKeys) {
  window.__prefkitKeys = true;
  const NOT_TEXT = ["checkbox", "radio", "button", "submit", "reset", "range", "file", "color"];
  const resend = (e) => {
    const copy = new KeyboardEvent("keydown",
                                   {key: e.key, code: e.code, shiftKey: e.shiftKey, bubbles: true, cancelable: true});
    for (const name of ["keyCode", "which"]) Object.defineProperty(copy, name, {get: () => e[name]});
    document.body.dispatchEvent(copy);
  };
  const stop = (e) => { e.stopImmediatePropagation(); e.preventDefault(); };
  const modified = (e) => e.ctrlKey || e.metaKey || e.altKey;
  const inChoices = (el) => el instanceof Element && el.closest(".st-key-choices") && el.closest("button");
  window.addEventListener("keydown", (e) => {
    const el = e.target;
    const combo = el instanceof HTMLInputElement && el.getAttribute("role") === "combobox";
    const text = el instanceof HTMLTextAreaElement
                 || (el instanceof HTMLInputElement && !combo && !NOT_TEXT.includes(el.type));
    if (text) {
      // Left at once, in this handler: a key pressed right after must not find the box focused.
      const leave = e.key === "Escape" || (e.key === "Enter" && (e.ctrlKey || e.metaKey))
        || (e.key === "Tab" && el instanceof HTMLTextAreaElement);
      if (leave) { stop(e); el.blur(); }
      return;
    }
    const toggle = el instanceof HTMLInputElement && (el.type === "checkbox" || el.type === "radio");
    const closed = combo && el.getAttribute("aria-expanded") !== "true";
    if ((toggle || closed) && !modified(e) && ((e.key.length === 1 && e.key !== " ") || e.key === "Escape")) {
      stop(e); el.blur(); resend(e); return;
    }
    if ((e.key === "Enter" || e.key === " ") && inChoices(el)) stop(e);
  }, true);
  window.addEventListener("keyup", (e) => { if (e.key === " " && inChoices(e.target)) stop(e); }, true);
  let shown = null, queued = false;
  const newPair = () => {
    queued = false;
    const pair = document.querySelector("[class*='st-key-pair-']");
    const id = pair ? [...pair.classList].find((c) => c.startsWith("st-key-pair-")) : null;
    if (id && id !== shown) {
      const app = document.querySelector(".stApp");
      if (app) document.documentElement.style.setProperty("--prefkit-bg", getComputedStyle(app).backgroundColor);
      if (shown !== null) {
        window.scrollTo(0, 0);
        for (const m of document.querySelectorAll("[data-testid=stMain], [data-testid=stAppViewContainer]"))
            m.scrollTop = 0;
      }
      shown = id;
    }
  };
  // At most one look per frame, however many mutations a rerun makes.
  new MutationObserver(() => {
    if (!queued) { queued = true; requestAnimationFrame(newPair); }
  }).observe(document.body, {childList: true, subtree: true});
  if (window.innerWidth < NARROW) {
    const collapse = () => {
      const b = document.querySelector("[data-testid=stSidebarCollapseButton] button");
      if (b) { b.click(); return true; }
      return false;
    };
    if (!collapse()) {
      const o = new MutationObserver(() => { if (collapse()) o.disconnect(); });
      o.observe(document.body, {childList: true, subtree: true});
      setTimeout(() => o.disconnect(), 10000);
    }
  }
}
</script>""".replace("NARROW", str(NARROW_PX))


def help_line() -> str:
    """The one-line reminder shown under the choice row."""
    keys = list(CHOICE_KEYS.values())
    return (
        f"Keys: {keys[0]}–{keys[-1]} choose, left to right · {SKIP_KEY} skip · {REPORT_KEY} report · "
        f"{UNDO_KEY} undo · Esc, Tab or Ctrl+Enter leave the rationale"
    )


def install_page_script() -> None:
    """Keep the keys working (and meaning what they say) wherever the focus is."""
    st.html(_PAGE_SCRIPT, unsafe_allow_javascript=True)
