"""Nothing a student wrote runs in the browser of a student or TA.

One hostile submission (script in markdown answers, HTML, JavaScript, SVG and
markdown outputs with handlers, `javascript:` links, image sizes that break out
of their attribute) is autograded and given feedback with real nbgrader. Its
feedback page and its formgrader page, served by a real Jupyter server, are
opened in headless Chromium. Every payload would set the page title and
request a URL the browser watches; none may.

The same payloads, rendered without the sanitizer (stock nbconvert, and the
formgrader showing an unsanitized autograded notebook), do fire: that shows
the watching works.
"""
from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbconvert import HTMLExporter
from nbgrader.api import Gradebook

from coursekit.engine import grading
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.notebooks import fill_answers, master_answers, read_notebook, write_notebook
from conftest import MASTER_PATH

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                               "(apt-get install chromium; make setup does)")

STUDENT = "mallory"
MARKER = "PWNED"
# Payload requests go here; the browser's router answers them, so nothing leaves the machine.
HIT_URL = "http://127.0.0.1:9/hit/"
TEXT_MARKER = "Squeezing removes axes of size one"  # harmless text the pages must still show
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f8cfc0f01f0005"
    "0001ff5f6e0f0a0000000049454e44ae426082")).decode()


def js(name: str) -> str:
    """Script that proves it ran: no spaces or double quotes, so it fits in any attribute."""
    return f"document.title='{MARKER}-{name}';fetch('{HIT_URL}{name}')"


MARKDOWN_ANSWERS = {
    "squeeze_explain": (f"{TEXT_MARKER}. <script>{js('markdown-script')}</script>\n\n"
                        f'<img src=x onerror="{js("markdown-img")}"> <details open ontoggle="{js("markdown-details")}">'
                        f"<summary>s</summary></details>\n\n<iframe srcdoc=\"<script>{js('markdown-iframe')}</script>\">"
                        "</iframe>"),
    "bmm_why_d": f"Click [here](javascript:{js('markdown-link')}) or <a href=\"javascript:{js('markdown-a')}\">here</a>.",
    "bmm_context": (f"```mermaid\ngraph <img src=x onerror=\"{js('mermaid')}\">\n```\n\n"
                    f"&#91;entity&#93;(javascript:{js('entity-link')})"),
}


def hostile_outputs() -> list[tuple[dict, dict]]:
    """Script-capable outputs: (data, metadata) of each, as display_data."""
    return [
        ({"text/html": f'<img src=x onerror="{js("html-img")}"><script>{js("html-script")}</script>'}, {}),
        ({"application/javascript": js("javascript-output")}, {}),
        ({"image/svg+xml": f'<svg xmlns="http://www.w3.org/2000/svg" onload="{js("svg-onload")}"><circle r="3"/></svg>'},
         {}),
        ({"text/markdown": f'[md](javascript:{js("markdown-output-link")}) <img src=x onerror="{js("markdown-output")}">'},
         {}),
        ({"image/png": PNG, "text/plain": "a dot"}, {"image/png": {"width": f"1 onload={js('image-width')} onerror={js('image-width')}"}}),
        ({"text/html": f"<script>{js('isolated-html')}</script>"}, {"text/html": {"isolated": True}}),
        ({"application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2, "version_minor": 0},
          "text/javascript": js("text-javascript"), "text/plain": "a widget"}, {}),
    ]


# Code that makes those outputs when the autograder runs it.
OUTPUT_CODE = "\nfrom IPython.display import publish_display_data\n" + "".join(
    f"publish_display_data({data!r}, metadata={metadata!r})\n" for data, metadata in hostile_outputs())


def hostile_submission(release) -> nbformat.NotebookNode:
    answers = master_answers(read_notebook(MASTER_PATH))
    answers.update(MARKDOWN_ANSWERS)
    answers["squeeze_target"] += OUTPUT_CODE
    notebook = fill_answers(release, answers)
    for cell in notebook.cells:  # outputs saved in the file, as if the student had run it
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade_id") == "squeeze_target":
            cell.outputs = [nbformat.v4.new_output("display_data", data=data, metadata=metadata)
                            for data, metadata in hostile_outputs()]
    return notebook


@pytest.fixture(scope="module")
def graded_course(prototype_course, tmp_path_factory) -> Path:
    course = tmp_path_factory.mktemp("browser") / "course"
    shutil.copytree(prototype_course, course)
    release = read_notebook(course / "release" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb")
    write_notebook(hostile_submission(release), grading.submission_path(course, STUDENT))
    for command in ("autograde", "generate_feedback"):
        run = grading.run_nbgrader(course, command, ASSIGNMENT_ID, "--force")
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return course


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright  # in the [test] extra: missing is an error, not a skip

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


class Visit:
    """One page in a fresh browser context; records payload requests, blocks the internet."""

    def __init__(self, browser, url: str):
        self.hits: list[str] = []
        self.context = browser.new_context()
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.goto(url, wait_until="load")
        with contextlib.suppress(Exception):  # pages that keep polling never go idle
            self.page.wait_for_load_state("networkidle", timeout=5000)
        self.page.wait_for_timeout(500)  # let error handlers of broken images run

    def _route(self, route):
        url = route.request.url
        if url.startswith(HIT_URL):
            self.hits.append(url.removeprefix(HIT_URL))
            route.fulfill(status=204, body="")
        elif url.startswith(("http://127.0.0.1", "data:", "file:")):
            route.continue_()
        else:  # CDNs (MathJax, require.js): the test machine is offline anyway
            route.abort()

    def injected_markup(self) -> list[str]:
        """Elements that still carry a payload in a place where it could run."""
        return self.page.evaluate("""marker => {
            const found = [];
            for (const element of document.querySelectorAll('*')) {
                for (const attribute of element.attributes) {
                    const name = attribute.name.toLowerCase(), value = attribute.value;
                    // The formgrader's own buttons have onclick handlers; payloads all carry the marker.
                    if (value.includes(marker) || /^\\s*javascript:/i.test(value) || name === 'srcdoc')
                        found.push(element.tagName + ' ' + name + '=' + value.slice(0, 80));
                }
                if (element.tagName === 'SCRIPT' && element.textContent.includes(marker))
                    found.push('SCRIPT ' + element.textContent.slice(0, 80));
                if (element.tagName === 'IFRAME') found.push('IFRAME');
            }
            return found;
        }""", MARKER)

    def close(self) -> None:
        self.context.close()


@contextlib.contextmanager
def serve_folder(folder: Path):
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *arguments):
        pass


def assert_nothing_ran(visit: Visit) -> None:
    assert visit.hits == []
    assert MARKER not in visit.page.title()
    assert visit.dialogs == []
    assert visit.injected_markup() == []


def test_the_watch_sees_payloads_of_an_unsanitized_page(browser, tmp_path, release):
    """Control: stock nbconvert HTML of the same submission runs the payloads."""
    html, _ = HTMLExporter(template_name="classic").from_notebook_node(hostile_submission(release))
    (tmp_path / "raw.html").write_text(html, encoding="utf-8")
    with serve_folder(tmp_path) as base:
        visit = Visit(browser, f"{base}/raw.html")
        try:
            assert MARKER in visit.page.title()
            ran = set(visit.hits)
            assert {"markdown-img", "html-img", "image-width"} <= ran, ran
            assert visit.injected_markup()
        finally:
            visit.close()


def test_feedback_page_runs_nothing_from_the_student(graded_course, browser):
    feedback = graded_course / "feedback" / STUDENT / ASSIGNMENT_ID
    assert (feedback / f"{NOTEBOOK_NAME}.html").exists()
    with serve_folder(feedback) as base:
        visit = Visit(browser, f"{base}/{NOTEBOOK_NAME}.html")
        try:
            assert_nothing_ran(visit)
            body = visit.page.inner_text("body")
            assert TEXT_MARKER in body
            # The harmless part of the outputs is still shown: the PNG, without the forged width.
            assert visit.page.locator("img[src^='data:image/png']").count() >= 1
        finally:
            visit.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def formgrader(graded_course):
    """A real Jupyter server with nbgrader's formgrader, as a TA starts it in the course folder."""
    port, token = free_port(), secrets.token_hex(16)
    jupyter = Path(sys.executable).parent / "jupyter"
    log = open(graded_course / "jupyter.log", "w")
    server = subprocess.Popen(
        [str(jupyter), "server", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
         f"--ServerApp.root_dir={graded_course}", "--allow-root"],
        cwd=graded_course, env=grading.tool_environment(), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("jupyter server did not start:\n" + (graded_course / "jupyter.log").read_text()[-3000:])
                time.sleep(0.3)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
        log.close()


def test_formgrader_page_runs_nothing_from_the_student(graded_course, formgrader, browser):
    base, token = formgrader
    with Gradebook(f"sqlite:///{graded_course / 'gradebook.db'}") as gradebook:
        submission_id = gradebook.find_submission_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID, STUDENT).id
    visit = Visit(browser, f"{base}/formgrader/submissions/{submission_id}/?index=0&token={token}")
    try:
        # The page loaded for real: the TA's score box for the manually graded answer is there.
        visit.page.wait_for_selector("input.score#squeeze_explain", state="attached", timeout=10000)
        assert TEXT_MARKER in visit.page.inner_text("body")
        assert_nothing_ran(visit)
    finally:
        visit.close()


def test_the_watch_sees_payloads_in_an_unsanitized_formgrader_page(graded_course, formgrader, browser, release):
    """Control: the formgrader shows what autograded/ holds; without the sanitizer, payloads run there."""
    base, token = formgrader
    autograded = graded_course / "autograded" / STUDENT / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb"
    sanitized = autograded.read_bytes()
    write_notebook(hostile_submission(release), autograded)
    with Gradebook(f"sqlite:///{graded_course / 'gradebook.db'}") as gradebook:
        submission_id = gradebook.find_submission_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID, STUDENT).id
    visit = Visit(browser, f"{base}/formgrader/submissions/{submission_id}/?index=0&token={token}")
    try:
        assert MARKER in visit.page.title()
        assert {"markdown-img", "html-img", "javascript-output", "mermaid"} <= set(visit.hits), visit.hits
    finally:
        visit.close()
        autograded.write_bytes(sanitized)
