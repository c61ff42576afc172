"""A student's feedback page works as a file on a laptop without a network.

One submission (right answers, plus a 5,000-character line in code, in its
output and in a free-text answer, and formulas of its own) is autograded and
given feedback with real nbgrader and the course's configuration. The page is
opened from disk in headless Chromium with every network request refused: it
asks for nothing, shows the sheet's and the student's formulas rendered, makes
no link out of a formula, and stays as wide as the window.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.engine import grading
from coursekit.notebooks import fill_answers, master_answers, read_notebook, write_notebook
from conftest import MASTER_PATH

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
STUDENT = "longline"
WIDTH = 1280
LONG = "x" * 5000
STUDENT_FORMULA = r"$\frac{QK^\top}{\sqrt{d_k}}$"
LINK_FORMULA = r"$\href{javascript:document.title='PWNED'}{\text{click}}$"


@pytest.fixture(scope="module")
def feedback_page(prototype_course, tmp_path_factory) -> Path:
    course = tmp_path_factory.mktemp("offline") / "course"
    shutil.copytree(prototype_course, course)
    answers = master_answers(read_notebook(MASTER_PATH))
    answers["squeeze_target"] += f"\nwide = '{LONG}'\nprint(wide)\n"
    answers["squeeze_explain"] = f"Squeeze drops size-1 axes, see {STUDENT_FORMULA} and {LINK_FORMULA}.\n\n{LONG}"
    release = read_notebook(course / "release" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb")
    write_notebook(fill_answers(release, answers), grading.submission_path(course, STUDENT))
    for command in ("autograde", "generate_feedback"):
        run = grading.run_nbgrader(course, command, ASSIGNMENT_ID, "--force")
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return course / "feedback" / STUDENT / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.html"


def test_feedback_needs_no_network_shows_formulas_and_wraps_long_lines(feedback_page):
    from playwright.sync_api import sync_playwright

    release_formulas = sum(cell.source.count("$$") // 2 for cell in read_notebook(MASTER_PATH).cells
                           if cell.cell_type == "markdown")
    assert release_formulas >= 1
    page_source = feedback_page.read_text(encoding="utf-8")
    assert page_source.count(LONG) >= 3  # in the code, its output and the free-text answer
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        context = browser.new_context(viewport={"width": WIDTH, "height": 900})
        asked: list[str] = []

        def refuse_network(route):
            if route.request.url.startswith(("file:", "data:")):
                route.continue_()
            else:
                asked.append(route.request.url)
                route.abort()

        context.route("**/*", refuse_network)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(feedback_page.as_uri(), wait_until="load")
        page.wait_for_function("document.querySelectorAll('.katex').length > 0")
        assert asked == [] and errors == []
        # The sheet's display formulas and the student's own, rendered; no TeX source left where they were.
        assert page.locator(".katex-display").count() >= release_formulas
        assert page.locator(".katex", has_text="QK").count() >= 1
        assert "$\\frac" not in page.inner_text("body") and "$$" not in page.inner_text("body")
        # \href makes no link (KaTeX's trust is off), and nothing ran.
        assert page.locator("a[href^='javascript']").count() == 0 and "PWNED" not in page.title()
        # A 5,000-character line in code, output and text wraps: the page is as wide as the window.
        assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
        browser.close()
