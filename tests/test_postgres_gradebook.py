"""The course's gradebook on a real PostgreSQL server: same grades as SQLite, and TAs grading during a run lose nothing.

One class of three teams is graded twice from scratch, once with the default
SQLite gradebook and once with `c.CourseDirectory.db_url` on PostgreSQL
(tests/postgres.py starts the server). The PostgreSQL course is then graded
again by `coursekit grade`, in its own process as an instructor runs it,
while a TA thread keeps saving scores and comments through the question
page's code path.
"""
from __future__ import annotations

import csv
import itertools
import re
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from conftest import REPOSITORY, own_words_download, own_words_sample
from coursekit import demo
from coursekit.engine.workflow import grade_download
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.ta_grading.grades import TeamChange, version_of
from coursekit.ta_grading.questions import QuestionRef, course_paths, manual_questions, save_changes
from test_ta_grading import GradingServer, save_as_ta

COURSE_ID = "ml-ex2"
BEFORE_RUN_QUESTION = "squeeze_explain"   # the TA's grade saved between the two runs
HTTP_QUESTION = "bmm_why_d"               # the grade saved through the question page's HTTP API
OVERLAP_QUESTION = "learning_rate_issues"   # two TAs saving the same teams at once
BEFORE_RUN_COMMENT = "Clear: squeeze drops every size-1 dimension, saved before the run."


def course_on(folder: Path, db_url: str | None) -> Path:
    demo.copy_course(course_root=REPOSITORY, destination=folder)
    if db_url is not None:
        # As the README tells instructors: one line in nbgrader_config.py.
        with open(folder / "nbgrader_config.py", "a", encoding="utf-8") as config:
            config.write(f'\nc.CourseDirectory.db_url = "{db_url}"\n')
    return folder


@dataclass(frozen=True)
class GradedClass:
    work: Path
    roster: Path
    sqlite_course: Path
    sqlite_results: Path
    course: Path            # on PostgreSQL
    results: Path
    db_url: str
    first_grades_csv: bytes
    first_bulk_assessment: bytes


@pytest.fixture(scope="module")
def graded(tmp_path_factory, postgres_database, own_words_class) -> GradedClass:
    # The SQLite side is the session's class: the same download and roster, graded on SQLite.
    work = tmp_path_factory.mktemp("postgres")
    db_url = postgres_database("gradebook")
    course = course_on(work / "course-postgres", db_url)
    results = work / "results-postgres"
    grade_download(download=own_words_class.download, course_root=course, output_folder=results, workers=2,
                   roster=own_words_class.roster)
    return GradedClass(work=work, roster=own_words_class.roster, sqlite_course=own_words_class.course,
                       sqlite_results=own_words_class.results, course=course, results=results, db_url=db_url,
                       first_grades_csv=(results / "grades.csv").read_bytes(),
                       first_bulk_assessment=(results / "olat" / "bulk_assessment.csv").read_bytes())


def gradebook(graded: GradedClass) -> Gradebook:
    return Gradebook(graded.db_url, COURSE_ID)


def manual_grades(graded: GradedClass,
                  cells: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[float | None, str | None]]:
    """The TA's score and comment of each (team, question)."""
    found = {}
    with gradebook(graded) as book:
        for team, question in cells:
            grade = book.find_grade(question, NOTEBOOK_NAME, ASSIGNMENT_ID, team)
            comment = book.find_comment(question, NOTEBOOK_NAME, ASSIGNMENT_ID, team)
            found[team, question] = grade.manual_score, comment.manual_comment
    return found


def manual_grade(graded: GradedClass, team: str, question: str) -> tuple[float | None, str | None]:
    return manual_grades(graded, [(team, question)])[team, question]


def test_postgres_gradebook_gives_the_same_grades_as_sqlite(graded):
    sqlite_csv = (graded.sqlite_results / "grades.csv").read_bytes()
    rows = list(csv.DictReader(sqlite_csv.decode().splitlines()))
    postgres_rows = list(csv.DictReader(graded.first_grades_csv.decode().splitlines()))
    for graded_rows in (rows, postgres_rows):
        assert [(row["username"], row["status"]) for row in graded_rows] == [
            ("anna", "graded"), ("bob", "graded"), ("carl", "graded"), ("dora", "graded"), ("emil", "kernel crashed"),
            ("frank", "no submission")]
    assert float(rows[0]["autograded"]) == 56 and float(rows[2]["autograded"]) < 56  # real, different scores
    assert postgres_rows == rows
    assert graded.first_grades_csv == sqlite_csv
    assert graded.first_bulk_assessment == (graded.sqlite_results / "olat" / "bulk_assessment.csv").read_bytes()
    # The grades really are in PostgreSQL: the course has no SQLite gradebook beside it.
    assert not (graded.course / "gradebook.db").exists() and (graded.sqlite_course / "gradebook.db").exists()
    with gradebook(graded) as book:
        assert graded.db_url.startswith("postgresql") and book.engine.dialect.name == "postgresql"
        assert sorted(student.id for student in book.students) == ["anna", "anna_bob", "bob", "carl", "dora", "emil", "frank"]
    assert auto_total(graded, "anna_bob") == pytest.approx(56)


def get_page(server: GradingServer, path: str) -> str:
    request = urllib.request.Request(server.root + path, headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def test_question_page_saves_to_postgres(graded):
    server = GradingServer(graded.course)
    try:
        answer = server.save(HTTP_QUESTION, ["dora"], score=2, comment="Right idea, say why 512.")
        assert [(item["team"], item["manual"], item["comment"]) for item in answer["saved"]] == [
            ("dora", 2.0, "Right idea, say why 512.")]
        page = get_page(server, f"/coursekit/questions/{ASSIGNMENT_ID}/{NOTEBOOK_NAME}/{HTTP_QUESTION}")
    finally:
        server.stop()
    assert manual_grade(graded, "dora", HTTP_QUESTION) == (2.0, "Right idea, say why 512.")
    assert "Right idea, say why 512." in page


# ---- grading again while a TA grades ----

@dataclass(frozen=True)
class Write:
    number: int
    team: str
    question: str
    score: float
    comment: str
    started: float
    committed: float
    after_merge: bool     # carl's new grades were in the gradebook before this write started
    before_merge: bool    # ... and were not yet there after it committed


def comment_of(number: int, team: str) -> str:
    # Unique, and no markdown in it: the feedback shows it as written.
    return f"TA note #{number:04d} for {team}."


class TaWriter(threading.Thread):
    """A TA saving scores and comments as the question page does, in a loop until told to stop.

    It grades every team's answers, carl's too while the run merges carl's new
    notebook. Once carl's new grades are in, half of carl's answers are left
    alone: their last grade is one saved before the merge, which a merge that
    rewrites a team's rows would lose.
    """

    def __init__(self, graded: GradedClass, targets: list[tuple[str, str, float]], carl_old_auto: float) -> None:
        super().__init__(daemon=True)
        self.paths = course_paths(root_dir=graded.course)
        self.graded, self.targets, self.carl_old_auto = graded, targets, carl_old_auto
        self.frozen_after_merge = {(team, question) for team, question, _ in targets[::2] if team == "carl"}
        self.writes: list[Write] = []
        self.error: BaseException | None = None
        self.stop_event = threading.Event()

    def carl_merged(self) -> bool:
        return auto_total(self.graded, "carl") != self.carl_old_auto

    def run(self) -> None:
        try:
            for number in itertools.count():
                if self.stop_event.is_set():
                    return
                team, question, max_score = self.targets[number % len(self.targets)]
                merged = self.carl_merged()
                if merged and (team, question) in self.frozen_after_merge:
                    continue
                score, comment = float(1 + number % int(max_score)), comment_of(number, team)
                started = time.time()
                save_as_ta(self.paths, QuestionRef(ASSIGNMENT_ID, NOTEBOOK_NAME, question), [team],
                           score=score, comment=comment)
                committed = time.time()
                self.writes.append(Write(number, team, question, score, comment, started, committed,
                                         after_merge=merged, before_merge=not self.carl_merged()))
                self.stop_event.wait(0.05)
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error


def auto_total(graded: GradedClass, team: str) -> float:
    with gradebook(graded) as book:
        notebook = book.find_submission_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID, team)
        return sum(grade.auto_score or 0.0 for grade in notebook.grades if grade.name.endswith("_test"))


def run_grade_command(graded: GradedClass, download: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "coursekit.cli", "--course", str(graded.course), "grade", str(download),
         "--roster", str(graded.roster), "--output", str(graded.results), "--workers", "2"],
        capture_output=True, text=True, timeout=900)


@dataclass(frozen=True)
class RunDuringTaWork:
    writes: tuple[Write, ...]
    started: float            # when `coursekit grade` started and returned
    finished: float
    grades_csv: str           # grades.csv of that run
    carl_old_auto: float      # carl's autograded points before it


@pytest.fixture(scope="module")
def graded_during_ta_work(graded) -> RunDuringTaWork:
    paths = course_paths(root_dir=graded.course)
    save_as_ta(paths, QuestionRef(ASSIGNMENT_ID, NOTEBOOK_NAME, BEFORE_RUN_QUESTION), ["anna_bob"], score=3.0,
               comment=BEFORE_RUN_COMMENT)
    with gradebook(graded) as book:
        questions = [(ref.grade_id, points) for ref, points in manual_questions(book)]
    # Every team, carl (graded again) included; the questions other tests check are left alone.
    checked_elsewhere = (BEFORE_RUN_QUESTION, HTTP_QUESTION, OVERLAP_QUESTION)
    targets = [(team, question, points) for question, points in questions if question not in checked_elsewhere
               for team in ("carl", "anna_bob", "dora")]
    carl_old_auto = auto_total(graded, "carl")
    second_download = own_words_download(graded.work / "download-2.zip", carl=own_words_sample("solution"))
    writer = TaWriter(graded, targets, carl_old_auto)
    started = time.time()
    writer.start()
    try:
        run = run_grade_command(graded, second_download)
    finally:
        finished = time.time()
        writer.stop_event.set()
        writer.join(timeout=60)
    assert writer.error is None, f"the TA's save failed: {writer.error!r}"
    assert run.returncode == 0, run.stderr[-3000:]
    concurrent_csv = (graded.results / "grades.csv").read_text()
    # TA input counts at the next run: it refreshes the feedback and grades.csv of the teams the TA graded.
    again = run_grade_command(graded, second_download)
    assert again.returncode == 0, again.stderr[-3000:]
    return RunDuringTaWork(tuple(writer.writes), started, finished, concurrent_csv, carl_old_auto)


def test_ta_writes_during_grading_all_survive(graded, graded_during_ta_work):
    run = graded_during_ta_work
    writes = run.writes
    assert auto_total(graded, "carl") > run.carl_old_auto  # the run merged carl's new notebook
    during = [write for write in writes if run.started < write.started and write.committed < run.finished]
    assert len(during) >= 20
    # Writes landed before and after the merge of carl's grades, so they interleaved with the merge's commits.
    assert any(write.before_merge for write in during) and any(write.after_merge for write in during)
    assert any(write.team == "carl" and write.after_merge for write in during)
    last = {(write.team, write.question): write for write in writes}
    assert any(write.team == "carl" and write.before_merge for write in last.values())
    saved = manual_grades(graded, list(last))
    assert {cell: (write.score, write.comment) for cell, write in last.items()} == saved
    assert manual_grade(graded, "anna_bob", BEFORE_RUN_QUESTION) == (3.0, BEFORE_RUN_COMMENT)


def test_ta_grades_reach_grades_csv_and_feedback(graded, graded_during_ta_work):
    writes = graded_during_ta_work.writes
    rows = {row["username"]: row for row in csv.DictReader((graded.results / "grades.csv").read_text().splitlines())}
    first = {row["username"]: row for row in csv.DictReader(graded.first_grades_csv.decode().splitlines())}
    with gradebook(graded) as book:
        totals = {team: book.find_submission(ASSIGNMENT_ID, team).score for team in ("anna_bob", "carl", "dora")}
    for username, team in (("anna", "anna_bob"), ("bob", "anna_bob"), ("carl", "carl"), ("dora", "dora")):
        assert float(rows[username]["total"]) == pytest.approx(totals[team])
        assert float(first[username]["manual"]) == 0 and float(rows[username]["manual"]) > 0
    bulk = {line["username"]: line for line in csv.DictReader((graded.results / "olat" / "bulk_assessment.csv").open())}
    assert float(bulk["carl"]["score"]) == pytest.approx(totals["carl"])
    last = {(write.team, write.question): write for write in writes}
    for team in ("anna_bob", "carl", "dora"):
        feedback = (graded.results / "feedback" / f"{team}.html").read_text()
        shown = set(re.findall(rf"TA note #\d{{4}} for {team}\.", feedback))
        assert shown == {write.comment for (written_team, _), write in last.items() if written_team == team}
    assert BEFORE_RUN_COMMENT in (graded.results / "feedback" / "anna_bob.html").read_text()
    # The run during the TA's work already counted the grade saved before it.
    during_run = csv.DictReader(graded_during_ta_work.grades_csv.splitlines())
    anna = next(row for row in during_run if row["username"] == "anna")
    assert float(anna["manual"]) >= 3


def test_two_tas_saving_overlapping_teams_at_once_lose_nothing_silently(graded):
    """The same answer group saved by two TAs at once, in opposite team orders, each from what it saw.

    On PostgreSQL each save locks its rows (in one order, or the server aborts one as a deadlock) and
    checks the versions the TA saw: of each pair of saves that saw the same grades, one is written
    and the other comes back as conflicts, whole; no team ends with a mix of the two."""
    question = QuestionRef(ASSIGNMENT_ID, NOTEBOOK_NAME, OVERLAP_QUESTION)
    paths = course_paths(root_dir=graded.course)
    teams = ["anna_bob", "carl", "dora"]
    errors, outcomes = [], {1: [], 2: []}
    barrier = threading.Barrier(2)

    def score_of(ta_number: int, round_number: int) -> float:
        # Every save changes both fields, whatever was saved before: a new score and a new comment.
        return 1.0 + 0.25 * round_number + (0.125 if ta_number == 2 else 0.0)

    def ta(ta_number: int, order: list[str]) -> None:
        try:
            for round_number in range(8):
                barrier.wait(timeout=60)
                # Both TAs saw the grades the round before left (at first: no score, no comment).
                seen = manual_grades(graded, [(team, OVERLAP_QUESTION) for team in teams])
                changes = [TeamChange(team, score=score_of(ta_number, round_number),
                                      score_seen=version_of(seen[team, OVERLAP_QUESTION][0]),
                                      comment=f"TA {ta_number} #{round_number}",
                                      comment_seen=version_of(seen[team, OVERLAP_QUESTION][1] or ""))
                           for team in order]
                barrier.wait(timeout=60)
                outcome, _ = save_changes(paths=paths, question=question, changes=changes, as_group=True)
                outcomes[ta_number].append(outcome)
        except Exception as error:  # reported below
            errors.append(error)
            barrier.abort()

    tas = [threading.Thread(target=ta, args=(1, teams)), threading.Thread(target=ta, args=(2, teams[::-1]))]
    for thread in tas:
        thread.start()
    for thread in tas:
        thread.join()
    assert errors == []
    winners = []
    for one, two in zip(outcomes[1], outcomes[2]):
        written = [number for number, outcome in ((1, one), (2, two)) if outcome.saved]
        refused = [outcome for outcome in (one, two) if outcome.conflicts]
        # Exactly one TA's save went in, whole; the other's came back whole, naming what the first one saved.
        assert len(written) == 1 and len(refused) == 1, (one, two)
        winner = one if written == [1] else two
        assert len(winner.saved) == 3 and winner.conflicts == ()
        assert refused[0].saved == () and len(refused[0].conflicts) == 6
        assert {conflict.theirs.manual_score for conflict in refused[0].conflicts} == {winner.saved[0].manual_score}
        winners.append(written[0])
    final = manual_grades(graded, [(team, OVERLAP_QUESTION) for team in teams])
    assert set(final.values()) == {(score_of(winners[-1], 7), f"TA {winners[-1]} #7")}
