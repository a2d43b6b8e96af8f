"""The reviewer's path in the real app (`streamlit run annotate/app.py` on loopback, Debian's headless
Chromium through Playwright): a reviewer signs in, opens the Review page from the navigation,
reads both judgements with their rationales, records a final decision with a note, and the store
has it; the admin downloads the Dashboard's per-annotator table as CSV, whose figures are the
ones computed by hand."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dev.browser_driver import after_run, needs_chromium, settled
from prefkit.annotate.server import running_app
from prefkit.annotate.store import Store
from prefkit.data.schema import Judgement, Pair, Prompt, Response, Strength

WAIT_MS = 30_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    needs_chromium,
]

PAIR = Pair(
    Prompt("Nên uống bao nhiêu nước mỗi ngày?"),
    Response("Khoảng hai lít, tùy cơ thể và thời tiết.", model="m-a"),
    Response("Càng nhiều càng tốt.", model="m-b"),
)
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("review")
    db_url = f"sqlite:///{folder / 'store.db'}"
    now = [T0]
    store = Store.open(db_url, clock=lambda: now[0])
    store.import_project("water", [PAIR], overlap=2)
    tokens = {"rev": store.add_user("rev"), "alice": store.add_user("alice", admin=True)}
    store.set_role("rev", "reviewer")
    for name, side, level, rationale, seconds in (
        ("bob", PAIR.a.id, Strength.BETTER, "A nói rõ lượng nước", 30.0),
        ("chi", PAIR.b.id, Strength.SLIGHTLY_BETTER, "B ngắn hơn", 50.0),
    ):
        store.add_user(name)
        a = store.claim("water", name)
        j = Judgement(PAIR.pair_id, name, side, level, rationale=rationale, seconds=seconds)
        store.submit(a.id, name, j)
        now[0] += timedelta(minutes=90)
    with running_app(db_url) as url:
        yield {
            "url": url,
            "store": store,
            "tokens": tokens,
            "shown": {n: store.my_judgements(n)[0][1] for n in ("bob", "chi")},
        }
    store.close()


@pytest.fixture
def page(browser: Any, app: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(app["url"]) else r.abort())
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    yield tab
    context.close()


def _sign_in(page: Any, url: str, token: str) -> None:
    page.goto(f"{url}/?p=water")
    page.get_by_label("Sign-in token").fill(token)
    page.keyboard.press("Enter")
    page.get_by_role("link", name="Review").wait_for()
    settled(page)


def test_reviewer_records_a_decision_in_the_browser(page: Any, app: dict[str, Any]) -> None:
    store: Store = app["store"]
    _sign_in(page, app["url"], app["tokens"]["rev"])
    page.get_by_role("link", name="Review").click()
    page.get_by_role("heading", name="Review · water").wait_for()
    settled(page)
    body = page.inner_text("body")
    assert "A nói rõ lượng nước" in body and "B ngắn hơn" in body
    assert "bob: A better" in body and "chi: B slightly better" in body
    assert "1 pairs have judgements that disagree; 0 decided" in body
    after_run(page, page.get_by_text("A slightly better", exact=True).click)
    page.get_by_label("Note (why)").fill("A đúng, B nói quá")
    after_run(page, page.get_by_label("Note (why)").blur)  # leaving the box sends its text: a run
    page.get_by_role("button", name="Record the decision").click()
    page.get_by_text("Decision recorded: A slightly better.").wait_for()
    review = store.reviews("water")[PAIR.pair_id]
    assert (review.reviewer, review.preferred, review.strength, review.note) == (
        "rev",
        PAIR.a.id,
        Strength.SLIGHTLY_BETTER,
        "A đúng, B nói quá",
    )
    assert "1 decided, 0 to go" in page.inner_text("body")


def test_admin_downloads_the_annotator_table(page: Any, app: dict[str, Any]) -> None:
    _sign_in(page, app["url"], app["tokens"]["alice"])
    page.get_by_role("link", name="Dashboard").click()
    page.get_by_role("button", name="Download this table (.csv)").wait_for()
    with page.expect_download() as info:
        page.get_by_role("button", name="Download this table (.csv)").click()
    download = info.value
    assert download.suggested_filename == "water-annotators.csv"
    rows = {r["annotator"]: r for r in csv.DictReader(io.StringIO(Path(download.path()).read_text("utf-8")))}
    assert set(rows) == {"bob", "chi"}
    for name, seconds in (("bob", 30.0), ("chi", 50.0)):
        r = rows[name]
        shown = app["shown"][name].shown_order
        left = 1.0 if shown[0] == app["shown"][name].preferred else 0.0
        # By hand: one judgement in one clock hour; no unsure; the only other judgement takes
        # the other side, so no agreement with the consensus; no gold.
        assert (r["status"], r["judgements"], r["active_hours"], float(r["per_hour"])) == ("ok", "1", "1", 1.0)
        assert (float(r["median_seconds"]), float(r["left_share"]), float(r["unsure_share"])) == (seconds, left, 0.0)
        assert (float(r["consensus"]), r["consensus_pairs"], r["gold"], r["gold_side"]) == (0.0, "1", "0", "")
