"""The TAs' question-by-question grading page, in a real Jupyter server and a real headless Chromium.

One small class is graded once with real `coursekit grade` (real nbgrader,
real kernels); the page is then driven by keyboard only, and every check reads
nbgrader's gradebook or grades.csv, never the page's own word.
"""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from coursekit import demo
from coursekit.engine import grading
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.notebooks import fill_answers, read_notebook
from coursekit.nbgrader_plugins.rebuild import is_team_members_cell, rebuild
from coursekit.ta_grading.grades import TeamChange, version_of
from coursekit.ta_grading.questions import QuestionRef, course_paths, grades_now, save_changes
from coursekit.engine.workflow import grade_download

REPOSITORY = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
KEEPING_SAVE = '"coursekit.nbgrader_plugins.keep_reviews.SaveAutoGradesKeepingReviews"'
QUESTION = "squeeze_explain"
SECOND = "bmm_why_d"
SHARED = "Squeeze removes all dimensions of size 1.\nUnsqueeze adds one at the given position."
HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script> squeeze drops size-1 dims'
ROSTER = ("username,first_name,last_name,email\nanna,Anna,Aebi,a@x.org\nbob,Bob,Baer,b@x.org\n"
          "carl,Carl,Conti,c@x.org\ndora,Dora,Dürr,d@x.org\neve,Eve,Egli,e@x.org\n")
# team file name -> (members cell, answers); blank answers get 0 from nbgrader and need no TA
TEAMS = {
    "anna_bob": ("**Team members** (name, matriculation number):\n\n- Anna Aebi, 11-111-111\n- Bob Baer, 22-222-222",
                 {QUESTION: SHARED, SECOND: "Inner dimensions must match: 512."}),
    # The same answer up to case and whitespace: one group with anna_bob.
    # "D. Duerr" names neither dora's user name nor the roster's "Dora Dürr": a problem line to check.
    "carl_dora": ("**Team members** (name, matriculation number):\n\n- Carl Conti\n- D. Duerr",
                  {QUESTION: "  squeeze removes ALL dimensions of size 1.   Unsqueeze adds one at the given position.\n",
                   SECOND: "Batch sizes must agree."}),
    "eve": ("Eve Egli, 55-555-555", {QUESTION: HOSTILE}),
}


def submission(release, members: str, answers: dict[str, str]) -> bytes:
    notebook = fill_answers(release, answers)
    cell = next(cell for cell in notebook.cells if is_team_members_cell(cell))
    cell.source = members
    return nbformat.writes(notebook).encode()


def save_as_ta(paths, question: QuestionRef, team_ids: list[str], *, score: float | None = None,
               comment: str | None = None, as_group: bool = True):
    """What a TA's page sends: the teams' new fields, with the versions it has just read."""
    seen, _ = grades_now(paths=paths, question=question)
    changes = [TeamChange(team, score=score, score_seen=seen[team].score_version if score is not None else None,
                          comment=comment, comment_seen=seen[team].comment_version if comment is not None else None)
               for team in team_ids]
    outcome, _ = save_changes(paths=paths, question=question, changes=changes, as_group=as_group)
    assert outcome.conflicts == (), outcome.conflicts
    return outcome


def graded_class(*, folder: Path, teams: dict[str, tuple[str, dict[str, str]]], roster: str, workers: int = 2,
                 db_url: str | None = None):
    """A course with `teams` graded by `coursekit grade`; returns (course, results folder, download, roster).

    `db_url`: the gradebook's database (as nbgrader_config.py names it), else the course's own SQLite file."""
    course = folder / "course"
    demo.copy_course(course_root=REPOSITORY, destination=course)
    if db_url is not None:
        with open(course / "nbgrader_config.py", "a", encoding="utf-8") as config:
            config.write(f'\nc.CourseDirectory.db_url = "{db_url}"\n')
    release = read_notebook(course / "release" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb")
    download = folder / "download.zip"
    with zipfile.ZipFile(download, "w") as archive:
        for team, (members, answers) in teams.items():
            archive.writestr(f"{team}_{NOTEBOOK_NAME}.ipynb", submission(release, members, answers))
    roster_file = folder / "roster.csv"
    roster_file.write_text(roster)
    results = folder / "results"
    grade_download(download=download, course_root=course, output_folder=results, workers=workers,
                   roster=roster_file)
    return course, results, download, roster_file


class GradingServer:
    """`coursekit ta-grade` as a TA starts it, in a child process; `url` is the URL it prints.

    `settings`: the question page's settings (c.TaGrading.…), from a Jupyter config folder of its own."""

    def __init__(self, course: Path, settings: dict | None = None) -> None:
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        self.config_folder = None
        if settings:
            self.config_folder = tempfile.TemporaryDirectory(prefix="ta-grade-config-")
            (Path(self.config_folder.name) / "jupyter_server_config.json").write_text(json.dumps({"TaGrading": settings}))
            environment["JUPYTER_CONFIG_DIR"] = self.config_folder.name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "coursekit.cli", "--course", str(course), "ta-grade", "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
        self.output: list[str] = []
        self.url = self.wait_for_url()
        self.token = self.url.split("token=")[1]
        self.root = self.url.split("/coursekit/")[0]

    def wait_for_url(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.output.append(line)
            found = re.search(r"http://127\.0\.0\.1:\d+/coursekit/questions\?token=\S+", line)
            if found:
                threading.Thread(target=self.process.stdout.read, daemon=True).start()  # keep the pipe drained
                return found.group(0)
        self.stop()
        raise AssertionError("coursekit ta-grade printed no URL:\n" + "".join(self.output))

    def post_grades(self, body: dict) -> dict:
        request = urllib.request.Request(f"{self.root}/coursekit/api/grades", data=json.dumps(body).encode(),
                                         method="POST", headers={"Authorization": f"token {self.token}",
                                                                 "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def grades(self, question: str) -> dict:
        """What a question page polls: every team's grade, with the versions of its score and comment."""
        query = urllib.parse.urlencode({"assignment": ASSIGNMENT_ID, "notebook": NOTEBOOK_NAME, "question": question})
        request = urllib.request.Request(f"{self.root}/coursekit/api/grades?{query}",
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["teams"]

    def save(self, question: str, teams: list[str], *, score: float | None = None, comment: str | None = None,
             as_group: bool = True) -> dict:
        """Change the teams' fields as a page that has just read them does."""
        seen = self.grades(question)
        changes = []
        for team in teams:
            change = {"team": team}
            if score is not None:
                change.update(score=score, score_seen=seen[team]["scoreVersion"])
            if comment is not None:
                change.update(comment=comment, comment_seen=seen[team]["commentVersion"])
            changes.append(change)
        return self.post_grades({"assignment": ASSIGNMENT_ID, "notebook": NOTEBOOK_NAME, "question": question,
                                 "as": "group" if as_group else "team", "changes": changes})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.config_folder is not None:
            self.config_folder.cleanup()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return graded_class(folder=tmp_path_factory.mktemp("ta"), teams=TEAMS, roster=ROSTER)


@pytest.fixture(scope="module")
def server(graded):
    course, *_ = graded
    running = GradingServer(course)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def gradebook_of(course: Path) -> Gradebook:
    return Gradebook(f"sqlite:///{course / 'gradebook.db'}", "ml-ex2")


def grade_and_comment(course: Path, grade_id: str, team: str) -> tuple[float | None, str | None, bool]:
    with gradebook_of(course) as gradebook:
        grade = gradebook.find_grade(grade_id, NOTEBOOK_NAME, ASSIGNMENT_ID, team)
        comment = gradebook.find_comment(grade_id, NOTEBOOK_NAME, ASSIGNMENT_ID, team)
        return grade.manual_score, comment.manual_comment, grade.needs_manual_grade


def test_team_members_survive_into_the_autograded_notebook_and_feedback(graded):
    course, results, *_ = graded
    autograded = read_notebook(course / "autograded" / "anna_bob" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb")
    cell = next(cell for cell in autograded.cells if is_team_members_cell(cell))
    assert "Anna Aebi, 11-111-111" in cell.source
    assert "Bob Baer" in (results / "feedback" / "anna_bob.html").read_text(encoding="utf-8")
    # Eve overwrote the instruction line: her cell is still found by its place.
    eve = read_notebook(course / "autograded" / "eve" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb")
    assert any(cell.source == "Eve Egli, 55-555-555" for cell in eve.cells)
    rows = {row["username"]: row for row in csv.DictReader(open(results / "grades.csv", encoding="utf-8"))}
    assert rows["anna"]["team_members"] == rows["bob"]["team_members"] == "Anna Aebi, 11-111-111 / Bob Baer, 22-222-222"
    assert rows["eve"]["team_members"] == "Eve Egli, 55-555-555"
    report = (results / "report.html").read_text(encoding="utf-8")
    assert report.count("team-members") == 1 and "dora (from the file name) is not among the names" in report


def test_grade_a_group_and_a_single_answer_by_keyboard(graded, server, browser):
    course, results, download, roster = graded
    rows = {row["username"]: row for row in csv.DictReader(open(results / "grades.csv", encoding="utf-8"))}
    assert rows["eve"]["needs_manual_grading"] == "yes"
    page = browser.new_page()
    page.goto(server.url)
    # The list of questions: the first one (squeeze_explain) has the focus; Enter opens it.
    assert page.locator("a.question").first.text_content() == QUESTION
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(f"/{QUESTION}$"))
    assert "Rubric" in page.locator("#reference").text_content()
    assert page.locator("#progress").text_content().startswith("0 / 3")

    # The focus starts on the largest ungraded group: anna_bob and carl_dora.
    current = page.locator(".target.current")
    assert json.loads(current.get_attribute("data-teams")) == ["anna_bob", "carl_dora"]
    assert "Anna Aebi" in page.locator("article.group").first.text_content()
    page.keyboard.press("3")
    page.keyboard.press("c")
    page.keyboard.type("Unsqueeze: say where the new dimension goes.")
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('progress').textContent.startsWith('2 / 3')")

    # Enter moved on to the next ungraded answer: eve's, shown as text, never run as HTML
    # (the autograded notebook holds it already sanitized: no script, no event handler).
    current = page.locator(".target.current")
    assert json.loads(current.get_attribute("data-teams")) == ["eve"]
    shown = current.locator("pre.answer").text_content()
    assert "<img" in shown and "squeeze drops size-1 dims" in shown and "onerror" not in shown
    assert page.evaluate("window.pwned") is None
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('progress').textContent.startsWith('3 / 3')")

    # After a reload, change one team of the group alone: j j reaches carl_dora.
    page.reload()
    assert page.locator("#progress").text_content().startswith("3 / 3")
    assert json.loads(page.locator(".target.current").get_attribute("data-teams")) == ["anna_bob", "carl_dora"]
    assert page.locator(".target.current input.score").input_value() == "3"
    page.keyboard.press("j")
    page.keyboard.press("j")
    assert json.loads(page.locator(".target.current").get_attribute("data-teams")) == ["carl_dora"]
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_selector(".target.current .state.saved, .state.saved")
    page.reload()
    scores = page.locator(".team-target input.score").evaluate_all("inputs => inputs.map(i => i.value)")
    assert scores == ["3", "2"]
    # carl_dora was graded alone: marked inside the group, which shows the grade of the team that follows it.
    assert page.locator(".group-target input.score").first.input_value() == "3"
    marked = page.locator(".team-target.graded-alone")
    assert marked.count() == 1 and json.loads(marked.get_attribute("data-teams")) == ["carl_dora"]

    assert grade_and_comment(course, QUESTION, "anna_bob") == (3.0, "Unsqueeze: say where the new dimension goes.", False)
    assert grade_and_comment(course, QUESTION, "carl_dora") == (2.0, "Unsqueeze: say where the new dimension goes.", False)
    assert grade_and_comment(course, QUESTION, "eve") == (4.0, None, False)

    # `coursekit grade` again (nothing changed, nothing regraded) writes the TA's points into grades.csv.
    grade_download(download=download, course_root=course, output_folder=results, workers=1, roster=roster)
    rows = {row["username"]: row for row in csv.DictReader(open(results / "grades.csv", encoding="utf-8"))}
    assert rows["anna"]["Task 1.1"] == rows["bob"]["Task 1.1"] == "3"
    assert rows["carl"]["Task 1.1"] == "2"
    assert rows["eve"]["Task 1.1"] == "4"
    # eve's other answers are blank (0 from nbgrader); anna_bob's SECOND still waits for a TA.
    assert rows["eve"]["needs_manual_grading"] == "no"
    assert rows["anna"]["needs_manual_grading"] == rows["bob"]["needs_manual_grading"] == "yes"
    page.close()


def test_needs_manual_grading_follows_the_gradebook(graded, server):
    course, results, download, roster = graded
    assert grade_and_comment(course, SECOND, "anna_bob")[2], "autograde leaves free-text answers to a TA"
    server.save(SECOND, ["anna_bob"], score=1.5, as_group=False)
    grade_download(download=download, course_root=course, output_folder=results, workers=1, roster=roster)
    rows = {row["username"]: row for row in csv.DictReader(open(results / "grades.csv", encoding="utf-8"))}
    assert rows["anna"]["needs_manual_grading"] == "no"
    assert rows["carl"]["needs_manual_grading"] == "yes"
    assert rows["anna"]["Task 1.2"] == "1.5"
    report = (results / "report.html").read_text(encoding="utf-8")
    assert re.search(r"Waiting for TA grading</t[hd]>\s*<t[hd][^>]*>1<", report), "only carl_dora waits"


def test_two_tas_on_different_questions_lose_nothing(graded, server):
    course, *_ = graded
    questions = ["bmm_why_d", "bmm_context"]
    teams = ["anna_bob", "carl_dora"]
    errors = []

    def ta(question: str, points: list[int]) -> None:
        try:
            for step, score in enumerate(points):
                saved = server.save(question, [teams[step % 2]], score=score, comment=f"{question} {step}",
                                    as_group=False)
                assert saved["conflicts"] == [], saved
        except Exception as error:  # reported below, from the test's thread
            errors.append(error)

    threads = [threading.Thread(target=ta, args=(question, [1, 2, 3, 4])) for question in questions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for question in questions:
        assert grade_and_comment(course, question, "anna_bob") == (3.0, f"{question} 2", False)
        assert grade_and_comment(course, question, "carl_dora") == (4.0, f"{question} 3", False)


def test_the_api_refuses_bad_scores_and_requests_without_xsrf(graded, server):
    course, *_ = graded
    version = server.grades(QUESTION)["eve"]["scoreVersion"]
    for score in (99, -1, None, "2", True, float("nan")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            server.post_grades({"assignment": ASSIGNMENT_ID, "notebook": NOTEBOOK_NAME, "question": QUESTION,
                                "as": "team", "changes": [{"team": "eve", "score": score, "score_seen": version}]})
        assert refused.value.code == 400, score
    # The format before versions (one unconditional score for a list of teams) is refused, not guessed at.
    with pytest.raises(urllib.error.HTTPError) as old_format:
        server.post_grades({"assignment": ASSIGNMENT_ID, "notebook": NOTEBOOK_NAME, "question": QUESTION,
                            "teams": ["eve"], "manual_score": None, "comment": ""})
    assert old_format.value.code == 400
    assert grade_and_comment(course, QUESTION, "eve")[0] == 4.0
    # A browser session (cookie) without the XSRF header is refused, as for jupyter-server's own API.
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    opener.open(server.url, timeout=30).read()
    request = urllib.request.Request(f"{server.root}/coursekit/api/grades", method="POST", data=json.dumps(
        {"assignment": ASSIGNMENT_ID, "notebook": NOTEBOOK_NAME, "question": QUESTION, "as": "team",
         "changes": [{"team": "eve", "comment": "forged", "comment_seen": version_of("")}]}).encode())
    with pytest.raises(urllib.error.HTTPError) as forged:
        opener.open(request, timeout=30)
    assert forged.value.code == 403
    assert grade_and_comment(course, QUESTION, "eve")[1] != "forged"


def test_the_formgrader_shows_the_rubric_beside_each_answer_offline(graded, server, browser):
    course, results, *_ = graded
    with gradebook_of(course) as gradebook:
        submission_id = gradebook.find_submission_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID, "anna_bob").id
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # The browser has no network but 127.0.0.1: a CDN would fail as it does in an offline grading room.
    page.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), lambda route: route.abort())
    page.goto(server.url)
    page.goto(f"{server.root}/formgrader/submissions/{submission_id}/")
    rubric = page.locator(f"#{QUESTION}-rubric")
    rubric.wait_for()
    assert "Rubric (4 points)" in rubric.text_content()
    # Beside the answer: right after the cell that holds the answer and its score and comment fields.
    assert rubric.evaluate(f"rubric => !!rubric.previousElementSibling.querySelector('#{QUESTION}-comment')")
    page.wait_for_timeout(500)
    assert not [error for error in errors if "MathJax" in error]
    # The formgrader's own keyboard shortcuts are bound once MathJax reports it is done.
    assert page.evaluate("window.MathJax.loaded") is True
    page.close()
    # Students never see it: not in the release, not in their feedback.
    assert "Rubric (4 points)" not in (REPOSITORY / "release" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb").read_text()
    assert "Rubric (4 points)" not in (results / "feedback" / "anna_bob.html").read_text(encoding="utf-8")


def test_the_formgrader_opened_first_with_its_token_loads_and_renders_formulas(graded, server, browser):
    """A TA follows a formgrader link with ?token= before opening any other page of the server."""
    course, *_ = graded
    with gradebook_of(course) as gradebook:
        submission_id = gradebook.find_submission_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID, "anna_bob").id
    for path in (f"/formgrader/gradebook/{ASSIGNMENT_ID}/{NOTEBOOK_NAME}", f"/formgrader/submissions/{submission_id}/"):
        context = browser.new_context()
        context.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), lambda route: route.abort())
        page = context.new_page()
        redirected = []
        page.on("response", lambda response: redirected.append(response.url) if response.status == 302 else None)
        page.goto(f"{server.root}{path}?token={server.token}")
        if "gradebook" in path:
            # The list of submissions comes from /formgrader/api/...: it was answered 302 (to the login page).
            page.wait_for_selector("table tbody tr td a", timeout=30_000)
            assert page.locator("table tbody tr").count() == 3
        else:
            page.wait_for_function("window.MathJax && window.MathJax.loaded === true", timeout=30_000)
            page.wait_for_selector(f"#{QUESTION}-comment", state="attached")
            # The sheet's formulas, rendered by the kit's KaTeX without a CDN.
            assert page.locator(".katex").count() >= 1
        assert [url for url in redirected if "/api/" in url or "/coursekit/static/" in url] == []
        context.close()


def test_rebuild_keeps_the_team_members_cell_however_it_was_saved():
    release = read_notebook(REPOSITORY / "release" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb")
    index = next(number for number, cell in enumerate(release.cells) if is_team_members_cell(cell))

    def rebuilt_names(notebook) -> tuple[str, str]:
        rebuilt, notes = rebuild(submission=notebook, release=release)
        return rebuilt.cells[index].source, notes.team_members

    filled = nbformat.reads(submission(release, "**Team members**:\n- Ada Lovelace", {}).decode(), as_version=4)
    assert rebuilt_names(filled) == ("**Team members**:\n- Ada Lovelace", "- Ada Lovelace")
    # Saved by Colab: no metadata anywhere, and the instruction line overwritten: found by its place.
    stripped = nbformat.reads(nbformat.writes(filled), as_version=4)
    for cell in stripped.cells:
        cell.metadata = {}
    stripped.cells[index].source = "Grace Hopper, 12-345-678"
    assert rebuilt_names(stripped) == ("Grace Hopper, 12-345-678", "Grace Hopper, 12-345-678")
    # Left as released, or deleted: the release's cell, and no names.
    assert rebuilt_names(release)[1] == ""
    deleted = nbformat.reads(nbformat.writes(release), as_version=4)
    del deleted.cells[index]
    assert rebuilt_names(deleted) == (release.cells[index].source, "")


def test_autograding_again_keeps_ta_grades_of_unchanged_answers(graded):
    """As the formgrader's autograde button does: `nbgrader autograde --force` for one student."""
    course, *_ = graded
    assert KEEPING_SAVE in (course / "nbgrader_config.py").read_text()  # the course's own configuration keeps TA grades
    paths = course_paths(root_dir=course)
    first = grading.autograde(course_root=course, extra_arguments=("--student", "carl_dora"))
    assert first.returncode == 0, first.stderr[-3000:]
    save_as_ta(paths, QuestionRef(ASSIGNMENT_ID, NOTEBOOK_NAME, SECOND), ["carl_dora"], score=2.5,
               comment="kept after autograding", as_group=False)
    second = grading.autograde(course_root=course, extra_arguments=("--student", "carl_dora"))
    assert second.returncode == 0, second.stderr[-3000:]
    assert grade_and_comment(course, SECOND, "carl_dora") == (2.5, "kept after autograding", False)
    # Answers no TA scored still wait for one.
    assert grade_and_comment(course, QUESTION, "carl_dora")[2] is False  # graded by keyboard above
    with gradebook_of(course) as gradebook:
        waiting = [g.name for g in gradebook.find_submission_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID, "carl_dora").grades
                   if g.needs_manual_grade]
    assert waiting == []


def test_ta_grade_mistakes_are_one_line_errors(tmp_path):
    def ta_grade(*arguments):
        return subprocess.run([sys.executable, "-m", "coursekit.cli", *arguments], capture_output=True, text=True,
                              timeout=120)

    outside = ta_grade("--course", str(tmp_path), "ta-grade")
    assert outside.returncode == 1
    assert outside.stderr == f"coursekit: {tmp_path} has no nbgrader_config.py; pass --course with the course folder.\n"
    assert ta_grade("ta-grade", "--help").returncode == 0
