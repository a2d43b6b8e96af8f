"""Keyboard shortcuts of the Label page, and the one browser script that keeps them honest.

Every key the page answers to is assigned here, and only here: `KEYS` lists them all with what
they do (the docs' table and the collision test read it). Adding a key? Add it to `KEYS`; the
test refuses a key used twice or one of Streamlit's own (`STREAMLIT_KEYS`: R reruns the app, C
clears its cache).

- 1..9 follow the choice row left to right (A significantly better … unsure … B significantly
  better); S skips, P reports (R is Streamlit's), U undoes. These are Streamlit 1.67's
  `st.button(shortcut=...)`, which ignores keys typed in a form field, so typing a rationale
  never submits.
- N goes to the rationale; Shift+A / Shift+B tick or untick "A/B is unsafe"; on a project that
  asks for the pair's safety label, Shift+P / Shift+S / Shift+U pick "Preferred is safe, the
  other not" / "Both safe" / "Both unsafe". Widgets without Streamlit shortcuts: the page
  script below does these.

The rule: a key either does what its label says or nothing, wherever the focus is; a key that
arrives while the pair on screen has no buttons yet waits for them (it is never dropped
silently, and never lands on another pair).
"""

from __future__ import annotations

import json

import streamlit as st

from prefkit.data.schema import CHOICE_LABELS, SafetyBin

# Choice value (-4 = A significantly better … 0 unsure … 4 = B significantly better) -> key.
CHOICE_KEYS: dict[int, str] = {point: str(i + 1) for i, point in enumerate(sorted(CHOICE_LABELS))}
SKIP_KEY = "S"
REPORT_KEY = "P"
UNDO_KEY = "U"
RATIONALE_KEY = "T"  # T for text: N is Next after a suggestion
NEXT_KEY = "N"  # suggestions shown after the choice: on to the next pair (`prefkit.annotate.ui.suggestion`)
EDIT_KEY = "E"  # opens the editor of the preferred answer, on projects that take edits (`prefkit.annotate.ui.edit`)
UNSAFE_KEYS: dict[str, str] = {"A": "Shift+A", "B": "Shift+B"}  # side -> key
SAFETY_KEYS: dict[str, str] = {  # the pair's safety label (a SafetyBin value) -> key
    SafetyBin.SAFE_VS_UNSAFE.value: "Shift+P",
    SafetyBin.BOTH_SAFE.value: "Shift+S",
    SafetyBin.BOTH_UNSAFE.value: "Shift+U",
}
STREAMLIT_KEYS = ("R", "C")  # Streamlit's own: rerun, clear cache

# Every key of the page -> what it does.
KEYS: dict[str, str] = {
    **{key: f"choose “{CHOICE_LABELS[point]}”" for point, key in CHOICE_KEYS.items()},
    SKIP_KEY: "skip the pair",
    REPORT_KEY: "report a problem (with the reason chosen beside it)",
    UNDO_KEY: "undo your last judgement, skip or report",
    RATIONALE_KEY: "go to the rationale",
    NEXT_KEY: "next pair, once a model's suggestion is shown after your choice (suggestions: after)",
    EDIT_KEY: "open or close the editor of the answer you prefer (projects that take edits)",
    **{key: f"tick or untick “{side} is unsafe or harmful”" for side, key in UNSAFE_KEYS.items()},
    SAFETY_KEYS[SafetyBin.SAFE_VS_UNSAFE.value]: "safety label “Preferred is safe, the other not”",
    SAFETY_KEYS[SafetyBin.BOTH_SAFE.value]: "safety label “Both safe”",
    SAFETY_KEYS[SafetyBin.BOTH_UNSAFE.value]: "safety label “Both unsafe”",
}
# Not assignable: they leave the rationale (kept here so the docs list them too).
LEAVE_TEXT_KEYS = ("Esc", "Tab", "Ctrl+Enter")

# Below this window width the sidebar starts collapsed, and closes again after a page is picked in
# it (Streamlit itself collapses it only below 768 px, leaving a 300 px sidebar beside the pair).
NARROW_PX = 1100


def key_hint(key: str) -> str:
    """How a key is written on the page: Shift as ⇧ ("Shift+A" -> "⇧A")."""
    return key.replace("Shift+", "⇧")


def _script_config() -> dict[str, object]:
    """What the page script needs to know about the keys (and nothing else)."""
    return {
        # keys whose button belongs to the pair on screen: key -> the button's widget key prefix
        "pairKeys": {
            **{key: f"choice{point}" for point, key in CHOICE_KEYS.items()},
            SKIP_KEY: "skip",
            REPORT_KEY: "report",
        },
        "undo": UNDO_KEY,
        "rationale": RATIONALE_KEY,
        # Shift+letter -> [widget key, option index]: a checkbox (index 0) or a radio option
        "shiftKeys": {
            **{key.removeprefix("Shift+"): [f"unsafe{side}", 0] for side, key in UNSAFE_KEYS.items()},
            **{key.removeprefix("Shift+"): ["safety", i] for i, key in enumerate(SAFETY_KEYS.values())},
        },
        "narrow": NARROW_PX,
    }


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
# - A key of the pair (a choice, skip, report) that arrives while the pair on screen has no
#   buttons yet (the next pair is drawn before its buttons: ~0.1-0.4 s) is kept, with a note on
#   the page, and clicks that pair's button once it arrives; a second key meanwhile is refused
#   (the note says so). If another pair comes instead, the key is dropped with a note: it never
#   lands on a pair the annotator has not seen. Undo drops a kept key.
# - N focuses the rationale; Shift+letters tick the unsafe flags or pick the safety label.
# A MutationObserver (looking at most once per frame) releases a kept key, and moves the page to
# the top when a new pair is drawn (its container's key holds the assignment id). On a narrow
# window the sidebar is collapsed once per tab, and again after a page is picked in it.
# (Nothing tag-like may appear in the script, not even in a comment: the body is parsed as HTML.)
# A constant of ours (never model text), installed once per browser tab.
_PAGE_SCRIPT = """<script>
if (!window.__prefkitKeys) {
  window.__prefkitKeys = true;
  const CFG = CONFIG;
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
  const pairOnScreen = () => {
    const pair = document.querySelector("[class*='st-key-pair-']");
    const cls = pair ? [...pair.classList].find((c) => c.startsWith("st-key-pair-")) : null;
    return cls ? cls.slice("st-key-pair-".length) : null;
  };
  const buttonOf = (key, pair) => document.querySelector(".st-key-" + CFG.pairKeys[key] + "-" + pair + " button");
  let note = null, noteTimer = null;
  const say = (text, ms) => {
    if (!note) {
      note = document.createElement("div");
      note.id = "prefkit-key-note";
      note.setAttribute("role", "status");
      note.setAttribute("aria-live", "polite");
      document.body.appendChild(note);
    }
    note.textContent = text;
    note.hidden = !text;
    clearTimeout(noteTimer);
    if (text && ms) noteTimer = setTimeout(() => say(""), ms);
  };
  let kept = null;  // {key, pair}: a key waiting for its pair's buttons
  const release = () => {
    if (!kept) return;
    const pair = pairOnScreen();
    if (pair !== kept.pair) {
      say("Key " + kept.key + " not used: the pair changed before it was ready. Press it again.", 4000);
      kept = null;
      return;
    }
    const button = buttonOf(kept.key, kept.pair);
    if (button) { kept = null; say(""); button.click(); }
  };
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
    if ((e.key === "Enter" || e.key === " ") && inChoices(el)) { stop(e); return; }
    if (modified(e) || e.key.length !== 1 || combo) return;
    const key = e.key.toUpperCase();
    if (e.shiftKey) {
      const target = CFG.shiftKeys[key];
      if (!target) return;
      stop(e);
      const inputs = document.querySelectorAll(".st-key-" + target[0] + " input");
      if (inputs[target[1]]) inputs[target[1]].click();
      return;
    }
    if (key === CFG.rationale) {
      const box = document.querySelector(".st-key-rationale textarea");
      if (box) { stop(e); box.focus(); }
      return;
    }
    if (key === CFG.undo && kept) { kept = null; say(""); return; }
    if (!(key in CFG.pairKeys)) return;
    if (kept) {
      stop(e);
      say("Key " + kept.key + " is waiting for this pair's buttons: one key at a time.", 3000);
      return;
    }
    const pair = pairOnScreen();
    if (pair && !buttonOf(key, pair)) {
      stop(e);
      kept = {key: key, pair: pair};
      say("Key " + key + " kept: it acts as soon as this pair's buttons are ready.", 0);
    }
  }, true);
  window.addEventListener("keyup", (e) => { if (e.key === " " && inChoices(e.target)) stop(e); }, true);
  let shown = null, queued = false;
  const newFrame = () => {
    queued = false;
    release();
    const pair = pairOnScreen();
    if (pair && pair !== shown) {
      const app = document.querySelector(".stApp");
      if (app) document.documentElement.style.setProperty("--prefkit-bg", getComputedStyle(app).backgroundColor);
      if (shown !== null) {
        window.scrollTo(0, 0);
        for (const m of document.querySelectorAll("[data-testid=stMain], [data-testid=stAppViewContainer]"))
            m.scrollTop = 0;
      }
      shown = pair;
    }
  };
  // At most one look per frame, however many mutations a rerun makes.
  new MutationObserver(() => {
    if (!queued) { queued = true; requestAnimationFrame(newFrame); }
  }).observe(document.body, {childList: true, subtree: true});
  const collapse = () => {
    const b = document.querySelector("[data-testid=stSidebarCollapseButton] button");
    if (b) { b.click(); return true; }
    return false;
  };
  if (window.innerWidth < CFG.narrow) {
    if (!collapse()) {
      const o = new MutationObserver(() => { if (collapse()) o.disconnect(); });
      o.observe(document.body, {childList: true, subtree: true});
      setTimeout(() => o.disconnect(), 10000);
    }
  }
  // A page picked in the sidebar on a narrow window: close the sidebar again, so the page
  // gets the whole width (it otherwise stays open over it).
  document.addEventListener("click", (e) => {
    const link = e.target instanceof Element && e.target.closest("[data-testid=stSidebarNav] a");
    if (link && window.innerWidth < CFG.narrow) setTimeout(collapse, 0);
  }, true);
}
</script>"""


def help_line(safety_labels: bool = False) -> str:
    """The one-line reminder shown under the choice row (Markdown)."""
    keys = list(CHOICE_KEYS.values())
    flags = (
        " ".join(key_hint(k) for k in SAFETY_KEYS.values()) + " safety label"
        if safety_labels
        else " ".join(key_hint(k) for k in UNSAFE_KEYS.values()) + " unsafe"
    )
    return (
        f"Keys: {keys[0]}–{keys[-1]} choose, left to right · {SKIP_KEY} skip · {REPORT_KEY} report · "
        f"{UNDO_KEY} undo · {RATIONALE_KEY} rationale · {flags} · Esc, Tab or Ctrl+Enter leave the rationale"
    )


def page_script() -> str:
    """The page script with its key configuration filled in."""
    return _PAGE_SCRIPT.replace("CONFIG", json.dumps(_script_config()))


def install_page_script() -> None:
    """Keep the keys working (and meaning what they say) wherever the focus is."""
    st.html(page_script(), unsafe_allow_javascript=True)
