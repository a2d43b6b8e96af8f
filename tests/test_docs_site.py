"""The docs site works opened from disk, as the README says (`site/index.html` over file://): every
link and asset of every built page is a file (a link to a folder shows a folder listing from disk),
nothing is fetched from the network, and in Debian's Chromium a click on a link opens the page and
the search finds pages.

The site is the one `make docs` built into `site/` when it is newer than everything it is built
from (so CI, which runs `make docs` first, builds it once); else it is built here into a
temporary folder (`mkdocs build --strict`, the same command).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from dev.browser_driver import CHROMIUM, CHROMIUM_ARGS, needs_chromium

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # builds the site unless `make docs` just did (the hook imports every room)


def _inputs() -> Iterator[Path]:
    yield REPO / "mkdocs.yml"
    yield REPO / "README.md"
    yield REPO / "CHANGELOG.md"
    for folder in ("docs", "core", "data", "generate", "annotate", "train", "prefkit"):
        yield from (p for p in (REPO / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = REPO / "site" / "index.html"
    if built.is_file() and built.stat().st_mtime > max(p.stat().st_mtime for p in _inputs()):
        return built.parent
    out = tmp_path_factory.mktemp("site")
    mkdocs = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)]
    proc = subprocess.run(
        mkdocs, cwd=REPO, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    )
    assert proc.returncode == 0, proc.stderr
    return out


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append((tag, value))


def page_links(page: Path) -> list[tuple[str, str]]:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.links


def broken_links(site: Path) -> list[str]:
    """Every href/src of every page that is not a file of the site (a folder counts as broken),
    and every script or stylesheet that would be fetched from the network."""
    problems = []
    for page in sorted(site.rglob("*.html")):
        if (
            page.name == "404.html" and page.parent == site
        ):  # a server's error page (absolute links), never opened from disk
            continue
        for tag, link in page_links(page):
            parts = urlsplit(link)
            if parts.scheme in ("http", "https") or link.startswith("//"):
                if tag in ("script", "link", "img", "iframe"):  # fetched, not followed
                    problems.append(f"{page.relative_to(site)}: <{tag}> from the network: {link}")
                continue
            if parts.scheme or not parts.path:  # mailto:, data:, or "#anchor" on the same page
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            if not target.is_file():
                kind = "a folder" if target.is_dir() else "missing"
                problems.append(f"{page.relative_to(site)}: {link} is {kind}")
    return problems


def test_every_link_of_the_built_site_is_a_file(site: Path) -> None:
    pages = list(site.rglob("*.html"))
    assert len(pages) > 20
    assert sum(len(page_links(p)) for p in pages) > 1000  # the check looked at something
    assert broken_links(site) == []


def test_the_link_check_catches_a_folder_link_and_a_remote_script(tmp_path: Path) -> None:
    (tmp_path / "guide").mkdir()
    (tmp_path / "guide" / "index.html").write_text("<p>guide</p>")
    (tmp_path / "index.html").write_text(
        '<a href="guide/">guide</a> <a href="guide/index.html#top">ok</a> <a href="#here">here</a> '
        '<script src="https://unpkg.com/x/shim"></script> <a href="https://example.org">out</a>'
    )
    assert broken_links(tmp_path) == [
        "index.html: guide/ is a folder",
        "index.html: <script> from the network: https://unpkg.com/x/shim",
    ]


@pytest.mark.browser
@needs_chromium
def test_from_disk_a_link_opens_its_page_and_search_finds_pages(site: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})

            def guard(route) -> None:  # only files of the site; anything else is refused and kept
                if route.request.url.startswith("file://"):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            context.route("**/*", guard)
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto((site / "index.html").as_uri())
            page.locator("a.md-nav__link", has_text="Concepts").first.click()
            page.wait_for_url(re.compile(r"concepts\.html$"))
            assert page.locator("article h1").inner_text().strip().rstrip("¶") == "Concepts"

            search = page.locator("input.md-search__input")
            search.click()
            page.keyboard.type("duplicates", delay=20)
            # The list is drawn again for each letter typed, so wait for the page wanted to be in
            # it (a bound, not a pause); the hrefs read in one go name what was there instead.
            results = page.locator(".md-search-result__item")
            try:
                results.locator("a[href*='dedup.html']").first.wait_for()
            except PlaywrightTimeout:
                hrefs = results.evaluate_all("items => items.map(i => i.querySelector('a')?.getAttribute('href'))")
                pytest.fail(f"search for 'duplicates' did not list dedup.html: {hrefs}")
        finally:
            browser.close()
    assert outside == []
