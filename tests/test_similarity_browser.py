"""The similarity pages of two hostile submissions run nothing in a TA's browser (headless Chromium).

Two teams share answers full of payloads (script tags, event handlers, `javascript:`
links, markup that closes the page's <pre>), one of them with a team id that is markup
too. Their pair page and the index page are opened in Chromium through Playwright; every
payload would set the page title, open a dialog or request a URL the browser watches.
The same answers pasted into a page as they are do fire: that shows the watching works.
"""
from __future__ import annotations

import pytest

from coursekit.reports.similarity_report import write_similarity
from coursekit.similarity.answers import release_notebook
from coursekit.similarity.compare import compare_answers
from coursekit.similarity.records import Answer, AnswerKind, Settings
from conftest import REPOSITORY
from test_browser_safety import CHROMIUM, MARKER, Visit, assert_nothing_ran, browser, js, serve_folder  # noqa: F401

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                               "(apt-get install chromium; make setup does)")

HOSTILE_TEAM = "mallory<svg onload=alert(7)>"
TEXT_MARKER = "both teams wrote this sentence about batch matrix products"
HOSTILE_TEXT = (f"{TEXT_MARKER}. <script>{js('text-script')}</script> <img src=x onerror=\"{js('text-img')}\"> "
                f"[click](javascript:{js('text-link')}) <a href=\"javascript:{js('text-a')}\">here</a> "
                f"<svg onload=\"{js('text-svg')}\"></svg> </pre></td><script>{js('text-escape')}</script>")
HOSTILE_CODE = (f"# </pre><script>{js('code-script')}</script><img src=x onerror=\"{js('code-img')}\">\n"
                "sizes = [236, 472, 472, 10]\n"
                f"label = \"<iframe srcdoc='<script>{js('code-iframe')}</script>'></iframe>\"\n"
                "n_params = sum(a * b for a, b in zip(sizes, sizes[1:])) + 1\n")


def hostile_class() -> dict[str, list[Answer]]:
    teams = {}
    for team in (HOSTILE_TEAM, "oscar"):
        teams[team] = [Answer(team, "bmm_why_d", AnswerKind.TEXT, HOSTILE_TEXT),
                       Answer(team, "param_count", AnswerKind.CODE, HOSTILE_CODE, ("[FAILED] n_params: wrong",))]
    teams["trent"] = [Answer("trent", "bmm_why_d", AnswerKind.TEXT, "An answer of its own.")]
    return teams


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("similarity-pages")
    report = compare_answers(answers=hostile_class(), release=release_notebook(REPOSITORY),
                             settings=Settings(threshold=0.45, record_threshold=0.3))
    assert [(pair.team_a, pair.team_b) for pair in report.flagged] == [(HOSTILE_TEAM, "oscar")]
    files = write_similarity(report=report, output_folder=folder)
    return folder, files


@pytest.mark.parametrize("page", ["similarity/pair-001.html", "similarity/index.html"])
def test_similarity_pages_of_hostile_submissions_run_nothing(pages, browser, page):  # noqa: F811
    folder, _ = pages
    with serve_folder(folder) as base:
        visit = Visit(browser, f"{base}/{page}")
        try:
            assert_nothing_ran(visit)
            body = visit.page.inner_text("body")
            assert HOSTILE_TEAM in body  # the team id is shown, as text
            if "pair" in page:
                assert TEXT_MARKER in body and f"<script>{js('text-script')}</script>" in body
                assert visit.page.locator("mark").count() >= 2  # the shared passages are highlighted
        finally:
            visit.close()


def test_the_watch_sees_the_same_answers_pasted_into_a_page(browser, tmp_path):  # noqa: F811
    """Control: string concatenation instead of the autoescaping templates runs the payloads."""
    (tmp_path / "raw.html").write_text(
        f"<html><body><pre>{HOSTILE_CODE}</pre><div>{HOSTILE_TEXT}</div><h1>{HOSTILE_TEAM}</h1></body></html>",
        encoding="utf-8")
    with serve_folder(tmp_path) as base:
        visit = Visit(browser, f"{base}/raw.html")
        try:
            assert MARKER in visit.page.title()
            assert {"text-img", "code-img"} <= set(visit.hits), visit.hits
        finally:
            visit.close()
