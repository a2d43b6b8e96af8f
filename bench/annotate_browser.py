"""Click-to-next-pair latency of the annotation app in a real headless Chromium.

The real server (`streamlit run annotate/app.py`) runs on loopback against a SQLite store with
100,000 pairs; a signed-in annotator clicks a choice button and we time, inside the page, from the
click to the moment the next pair's prompt is on screen (a MutationObserver on the DOM). Two
baselines run in the same way: the same app on a 1,000-pair store (what the store's size costs)
and a bare Streamlit app whose button only bumps a counter (the framework's own round trip).
All three servers and pages stay up, and the configurations take turns in short batches
(`--rounds` of them), so a load spike on the machine falls on all of them alike.

    .venv/bin/python bench/annotate_browser.py [--pairs 100000] [--clicks 63] [--rounds 7]

Target: the 100,000-pair app's click-to-next-pair p95 within 1.3x the bare button's (and under
300 ms). Needs Debian's chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # dev/ (the browser's path and flags, shared with the tests) is not installed

from dev.browser_driver import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from prefkit.annotate.seed import SAMPLE  # noqa: E402
from prefkit.annotate.server import running_app, running_server  # noqa: E402
from prefkit.annotate.store import Store  # noqa: E402
from prefkit.data.readers import read_pairs  # noqa: E402
from prefkit.data.schema import Pair, Prompt  # noqa: E402

WARMUP = 5

# In the page: click, then resolve with [ms until the watched text changed (the next pair is on
# screen), ms until the script run finished (the rest of the page, e.g. the progress bar)].
CLICK_AND_TIME = """([buttonSelector, watchSelector]) => new Promise(resolve => {
    const text = () => (document.querySelector(watchSelector) || {}).innerText;
    const idle = () => document.querySelector('[data-testid=stApp]').dataset.testScriptState === 'notRunning';
    const before = text();
    const t0 = performance.now();
    let shown = null;
    const check = () => {
        const now = text();
        if (shown === null && now !== undefined && now !== before) shown = performance.now() - t0;
        if (shown !== null && idle()) { obs.disconnect(); resolve([shown, performance.now() - t0]); }
    };
    const obs = new MutationObserver(check);
    obs.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
    document.querySelector(buttonSelector).click();
})"""
SETTLED = "document.querySelector('[data-testid=stApp]')?.dataset.testScriptState === 'notRunning'"

BARE_APP = """import streamlit as st
st.session_state.setdefault("n", 0)
def bump():
    st.session_state.n += 1
with st.container(key="prompt"):
    st.markdown(f"pair {st.session_state.n}")
st.button("next", key="next", on_click=bump)
"""


def seeded_store(folder: Path, name: str, n_pairs: int) -> tuple[str, str]:
    """A store `name`.db with `n_pairs` pairs (the bundled sample, repeated with numbered prompts)."""
    url = f"sqlite:///{folder / f'{name}.db'}"
    store = Store.open(url)
    store.create_project("bench", overlap=2)
    base = read_pairs(SAMPLE)
    repeated = base * (n_pairs // len(base) + 1)
    numbered = (Pair(Prompt(f"{b.prompt.question} (#{i})"), b.a, b.b) for i, b in enumerate(repeated))
    store.import_pairs("bench", itertools.islice(numbered, n_pairs))
    token = store.add_user("bench-annotator")
    store.close()
    return url, token


def timed_clicks(page: Page, button: str, clicks: int, warmup: int = WARMUP) -> list[tuple[float, float]]:
    times = []
    for i in range(warmup + clicks):
        page.locator(button).wait_for()
        shown_settled = page.evaluate(CLICK_AND_TIME, [button, ".st-key-prompt"])
        page.wait_for_function(SETTLED)
        if i >= warmup:
            times.append(tuple(shown_settled))
    return times


def app_page(browser, url: str, token: str) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(f"{url}/?p=bench")
    page.get_by_label("Sign-in token").fill(token)
    page.keyboard.press("Enter")
    page.locator(".st-key-prompt").wait_for()
    page.wait_for_function(SETTLED)
    return page


def app_latencies(page: Page, clicks: int, warmup: int) -> list[tuple[float, float]]:
    """Cycle through the row so every kind of judgement is submitted (Llama 2's nine choices)."""
    times = []
    for i, point in enumerate(itertools.islice(itertools.cycle(range(-4, 5)), clicks)):
        # Choice buttons are keyed per assignment: st-key-choice{point}-{assignment id}.
        times += timed_clicks(page, f"[class*='st-key-choice{point}-'] button", 1, warmup if i == 0 else 0)
    return times


def bare_app(folder: Path) -> contextlib.AbstractContextManager[str]:
    """A bare Streamlit page with one button: the framework's own round trip, the baseline."""
    script = folder / "bare_app.py"
    script.write_text(BARE_APP)
    return running_server(
        lambda port: [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(script),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--browser.gatherUsageStats",
            "false",
        ]
    )


def bare_page(browser, url: str) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(url)
    page.locator(".st-key-prompt").wait_for()
    page.wait_for_function(SETTLED)
    return page


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20, method="inclusive")[18]


def report(name: str, times: list[tuple[float, float]], base: list[tuple[float, float]] | None) -> None:
    for i, what in enumerate(("next pair on screen", "run finished")):
        xs = [t[i] for t in times]
        line = f"{name:<30} {what:<20} n={len(xs):>3}  p50 {statistics.median(xs):7.1f} ms  p95 {p95(xs):7.1f} ms"
        if base:
            line += f"  (p95 x{p95(xs) / p95([t[i] for t in base]):.2f} the floor)"
        print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--clicks", type=int, default=63, help="timed clicks per configuration (after 5 warm-up clicks)")
    ap.add_argument("--rounds", type=int, default=7, help="alternating batches the clicks are spread over")
    args = ap.parse_args()
    batch = max(1, args.clicks // args.rounds)
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} not found: apt-get install chromium (make system-deps)")

    with tempfile.TemporaryDirectory(prefix="prefkit-bench-") as tmp, sync_playwright() as pw:
        folder = Path(tmp)
        t = time.perf_counter()
        big_url, big_token = seeded_store(folder, "big", args.pairs)
        print(f"seeded {args.pairs:,} pairs in {time.perf_counter() - t:.1f} s", flush=True)
        small_url, small_token = seeded_store(folder, "small", 1_000)  # its own file, whatever --pairs is
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        bare: list[tuple[float, float]] = []
        small: list[tuple[float, float]] = []
        big: list[tuple[float, float]] = []
        with bare_app(folder) as bare_url, running_app(small_url) as s_url, running_app(big_url) as b_url:
            pages = (
                bare_page(browser, bare_url),
                app_page(browser, s_url, small_token),
                app_page(browser, b_url, big_token),
            )
            for r in range(args.rounds):  # alternate, so the three see the same machine
                warm = WARMUP if r == 0 else 0
                bare += timed_clicks(pages[0], ".st-key-next button", batch, warm)
                small += app_latencies(pages[1], batch, warm)
                big += app_latencies(pages[2], batch, warm)
            for page in pages:
                page.close()
        browser.close()

        print(f"\nclick -> next pair, real Chromium, {os.cpu_count()} CPUs")
        report("bare Streamlit button (floor)", bare, None)
        report("app, 1,000 pairs", small, bare)
        report(f"app, {args.pairs:,} pairs", big, bare)
        shown = p95([t[0] for t in big])
        ratio = shown / p95([t[0] for t in small])
        print(f"\n{args.pairs:,}-pair store vs 1,000 pairs, next pair on screen: p95 x{ratio:.2f}")
        floor = p95([t[0] for t in bare])
        verdict = "meets" if shown <= 1.3 * floor else "MISSES"
        print(
            f"target: next pair on screen p95 within 1.3x the bare button's with {args.pairs:,} pairs: "
            f"{verdict} (x{shown / floor:.2f}: {shown:.0f} ms vs {floor:.0f} ms)"
        )
        print(f"target: next pair on screen p95 < 300 ms: {'meets' if shown < 300 else 'MISSES'} ({shown:.0f} ms)")


if __name__ == "__main__":
    main()
