"""Feedback that follows the gradebook, and the OLAT bulk assessment files.

Unit tests for the CSV, the zip, the pass mark and the traceback cut; one test
of the whole loop with real nbgrader: grade, TAs grade in the gradebook, grade again.
"""
import csv
import html
import re
import zipfile
from pathlib import Path

import pytest
from nbformat import v4
from nbgrader.api import Gradebook
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from coursekit.reports import feedback
from coursekit.course import waits_for_ta
from coursekit.olat import export as olat_export
from coursekit.errors import CourseKitError
from coursekit.engine.grading import run_nbgrader
from coursekit.records import CellScore
from coursekit.olat.importing import RosterEntry
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.notebooks import read_notebook
from coursekit.records import TeamResult
from coursekit.engine.workflow import grade_download
from conftest import MASTER_PATH, REPOSITORY, copy_graded

# ---- unit tests ----


def team(team_id, members, *, auto=40.0, manual=30.0, status="graded", reason="", waiting=False):
    """44 points of free text: scored `manual` by a TA, or (`waiting`) not graded yet."""
    cells = (CellScore("squeeze_target_test", auto, 56.0, False),
             CellScore("squeeze_explain", 0.0 if waiting else manual, 44.0, waiting))
    return TeamResult(team_id=team_id, members=members, status=status, reason=reason, origin=f"{team_id}.ipynb",
                      cells=cells, findings=())


def roster(*names):
    return tuple(RosterEntry(name, name.title(), "X", f"{name}@example.org") for name in names)


@pytest.fixture
def feedback_folder(tmp_path):
    folder = tmp_path / "feedback"
    folder.mkdir()
    for team_id in ("anna_bob", "carl", "carl_dora", "emil", "fred", "gina", "hugo"):
        (folder / f"{team_id}.html").write_text(f"<p>feedback of {team_id}</p>")
    return folder


def test_formula_cells_are_neutralized_and_numbers_kept(tmp_path):
    path = tmp_path / "left_out.csv"
    names = ["=HYPERLINK(1)", "@SUM(A1)", "+x", "\tcmd", "-3.5", "anna"]
    olat_export.write_left_out(left_out=tuple(olat_export.LeftOut(name, "team", "why") for name in names), path=path)
    written = [row["username"] for row in csv.DictReader(open(path, encoding="utf-8"))]
    assert written[:3] == ["'=HYPERLINK(1)", "'@SUM(A1)", "'+x"] and written[3].startswith("'")
    assert written[4:] == ["-3.5", "anna"]


def test_rows_and_left_out_students(feedback_folder):
    results = [
        team("anna_bob", ("anna", "bob"), auto=40, manual=10),      # exactly the pass mark
        team("carl", ("carl",)), team("carl_dora", ("carl", "dora")),  # carl in two teams
        team("emil", ("emil",), status="kernel crashed", reason="the kernel died in Task 2"),
        team("fred", ("fred",), waiting=True),                      # answers still wait for a TA
        team("gina", ("gina",)),                                    # not in the roster
        team("hugo", ("hugo",), auto=10, manual=0),
    ]
    rows, left_out = olat_export.bulk_assessment(
        results=results, roster=roster("anna", "bob", "carl", "dora", "emil", "fred", "hugo"),
        waiting={"fred": 2}, feedback_folder=feedback_folder, pass_mark=50)
    assert [(r.username, r.team, r.score, r.passed) for r in rows] == [
        ("anna", "anna_bob", 50.0, True), ("bob", "anna_bob", 50.0, True), ("dora", "carl_dora", 70.0, True),
        ("emil", "emil", 70.0, True), ("fred", "fred", 40.0, None), ("hugo", "hugo", 10.0, False)]
    fred = next(row for row in rows if row.username == "fred")
    assert "Not final: 2 answers still wait for a TA" in fred.comment
    # A crash keeps the points judged before it: the student gets a line that says so.
    emil = next(row for row in rows if row.username == "emil")
    assert "Grading stopped early (kernel crashed)" in emil.comment and "stopped" not in fred.comment
    assert rows[0].feedback == feedback_folder / "anna_bob.html"
    reasons = {(entry.username, entry.team): entry.reason for entry in left_out}
    assert set(reasons) == {("carl", "carl"), ("carl", "carl_dora"), ("gina", "gina")}
    assert "2 teams" in reasons["carl", "carl"]
    assert "not in the roster" in reasons["gina", "gina"]


@pytest.mark.parametrize("auto,passed", [(50.0, True), (56.0, True), (49.5, None), (6.0, None), (5.5, False), (0.0, False)])
def test_passed_is_decided_only_when_no_grade_still_to_come_can_change_it(auto, passed):
    """44 points wait for a TA, the pass mark is 50: yes once the points given reach it, no once even
    44 more cannot, and empty (OpenOLAT leaves passed unset) in between."""
    assert olat_export.passed_for(team("t", ("t",), auto=auto, waiting=True), pass_mark=50) is passed
    graded = team("t", ("t",), auto=auto, manual=44.0 if passed is None else 0.0)
    assert olat_export.passed_for(graded, pass_mark=50) is (graded.total >= 50)


def test_an_undecided_passed_is_an_empty_column(tmp_path, feedback_folder):
    exported = olat_export.export_for_olat(
        results=[team("fred", ("fred",), waiting=True), team("hugo", ("hugo",), auto=52, waiting=True)],
        roster=(), waiting={"fred": 1, "hugo": 1}, feedback_folder=feedback_folder, output_folder=tmp_path / "olat",
        pass_mark=50)
    lines = exported.bulk_assessment.read_text(encoding="utf-8").splitlines()
    assert [line.split(",")[:3] for line in lines[1:]] == [["fred", "40.0", ""], ["hugo", "52.0", "yes"]]


def test_a_team_whose_grading_failed_is_left_out_with_the_reason(feedback_folder):
    results = [team("ida", ("ida",), status="not graded", reason="nbgrader could not grade this submission")]
    rows, left_out = olat_export.bulk_assessment(results=results, roster=(), waiting={},
                                                 feedback_folder=feedback_folder, pass_mark=50)
    assert rows == ()
    assert [(entry.username, entry.reason) for entry in left_out] == [
        ("ida", "grading not graded: nbgrader could not grade this submission")]


def test_without_roster_every_member_counts(feedback_folder):
    rows, left_out = olat_export.bulk_assessment(results=[team("anna_bob", ("anna", "bob"))], roster=(),
                                                 waiting={}, feedback_folder=feedback_folder, pass_mark=50)
    assert [row.username for row in rows] == ["anna", "bob"] and left_out == ()


def test_csv_is_what_openolat_splits_into_four_columns(tmp_path, feedback_folder):
    results = [team("anna_bob", ("anna", "bob"), auto=40.25, manual=10), team("hugo", ("hugo",), auto=7, manual=0)]
    exported = olat_export.export_for_olat(
        results=results, roster=roster("anna", "bob", "hugo"), waiting={}, feedback_folder=feedback_folder,
        output_folder=tmp_path / "olat", pass_mark=50)
    text = exported.bulk_assessment.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "username,score,passed,comment"
    # OpenOLAT splits each line at the delimiter, without quoting.
    assert all(len(line.split(",")) == 4 and '"' not in line for line in lines)
    fields = [line.split(",") for line in lines[1:]]
    assert [(f[0], f[1], f[2]) for f in fields] == [("anna", "50.25", "yes"), ("bob", "50.25", "yes"),
                                                     ("hugo", "7.0", "no")]
    assert "autograded 40.25 + TA-graded 10" in fields[0][3] and olat_export.FEEDBACK_FILE_NAME in fields[0][3]
    assert exported.left_out_file.read_text().splitlines() == ["username,team,reason"]


def test_return_files_hold_one_folder_per_student(tmp_path, feedback_folder):
    results = [team("anna_bob", ("anna", "bob")), team("hugo", ("hugo",))]
    exported = olat_export.export_for_olat(
        results=results, roster=(), waiting={}, feedback_folder=feedback_folder, output_folder=tmp_path / "olat",
        pass_mark=50)
    with zipfile.ZipFile(exported.return_files) as archive:
        assert sorted(archive.namelist()) == [f"{name}/{NOTEBOOK_NAME}_feedback.html" for name in ("anna", "bob", "hugo")]
        assert archive.read(f"bob/{NOTEBOOK_NAME}_feedback.html") == (feedback_folder / "anna_bob.html").read_bytes()


def test_pass_mark_comes_from_nbgrader_config(tmp_path):
    assert olat_export.pass_mark(config=PyFileConfigLoader("nbgrader_config.py", path=str(REPOSITORY)).load_config()) == 50
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.OlatExport.pass_mark = 62.5\n")
    assert olat_export.pass_mark(config=PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path)).load_config()) == 62.5
    assert olat_export.pass_mark(config=Config()) == 50
    negative = Config()
    negative.OlatExport.pass_mark = -1.0
    with pytest.raises(CourseKitError, match="pass_mark"):
        olat_export.pass_mark(config=negative)


TEST_CELL = """### BEGIN HIDDEN TESTS
import secret_checks as hidden
hidden.grade("net_model", globals(), points=12)
### END HIDDEN TESTS
_tokens = torch.tensor([1, 2, 3, 7])
_logits = Net()(_tokens)
assert tuple(_logits.shape) == (4, 4)"""
RED, GREEN, RESET = "\x1b[0;31m", "\x1b[0;32m", "\x1b[0m"


def traceback_notebook(test_count=18, frame_count=18):
    answer = v4.new_code_cell("class Net(nn.Module):\n    def __init__(self):\n        raise NotImplementedError()",
                              execution_count=17)
    test = v4.new_code_cell(TEST_CELL, execution_count=test_count)
    cell_frame = (f"Cell {GREEN}In[{frame_count}], line 6{RESET}\n"
                  + "".join(f"{GREEN}{'---->' if n == 6 else '     '} {n}{RESET} {line}\n"
                            for n, line in enumerate(TEST_CELL.split("\n"), start=1) if n >= 2))
    hidden_frame = (f"Cell {GREEN}In[{frame_count}], line 3{RESET}\n      2 import secret_checks as hidden\n"
                    f"----> 3 hidden.grade(\"net_model\", globals(), points=12)\n      4 ### END HIDDEN TESTS\n")
    kit_frame = f"File {GREEN}/srv/course/coursekit/checks.py:42{RESET}, in grade(name)\n     41 def grade(name):\n---> 42     secret()\n"
    student_frame = (f"Cell {GREEN}In[17], line 3, in Net.__init__(self){RESET}\n      2     def __init__(self):\n"
                     f"----> 3         raise NotImplementedError()\n")
    test.outputs = [v4.new_output("error", ename="NotImplementedError", evalue="", traceback=[
        f"{RED}-----{RESET}", f"{RED}NotImplementedError{RESET}   Traceback (most recent call last)",
        cell_frame, hidden_frame, kit_frame, student_frame, f"{RED}NotImplementedError{RESET}: "])]
    return v4.new_notebook(cells=[answer, test])


@pytest.mark.parametrize("frame_count", [18, 99], ids=["located by execution count", "located by text"])
def test_traceback_keeps_the_students_lines_only(frame_count):
    nb, _ = feedback.CutHiddenTraceback().preprocess(traceback_notebook(frame_count=frame_count), {})
    entries = nb.cells[1].outputs[0].traceback
    text = feedback.plain("\n".join(entries))
    for hidden in ("BEGIN HIDDEN", "secret_checks", "hidden.grade", "END HIDDEN", "checks.py", "secret()"):
        assert hidden not in text
    for shown in ("_logits = Net()(_tokens)", "assert tuple(_logits.shape)", "raise NotImplementedError()",
                  "NotImplementedError: ", "Traceback (most recent call last)"):
        assert shown in text
    assert entries.count(feedback.HIDDEN_FRAMES_NOTE) == 1  # the hidden frame and the kit frame, one note
    assert nb.cells[1].source == TEST_CELL  # ClearHiddenTests removes the region itself, later


def test_printed_tracebacks_and_warnings_lose_kit_and_hidden_lines():
    nb = traceback_notebook()
    nb.cells[1].outputs.insert(0, v4.new_output("stream", name="stdout", text=(
        'Traceback (most recent call last):\n  File "/tmp/ipykernel_7/1.py", line 3, in <module>\n'
        '    hidden.grade("net_model", globals(), points=12)\n  File "/srv/coursekit/collect.py", line 88, in record\n'
        '    secret()\nValueError: bad\n/srv/coursekit/collect.py:12: UserWarning: careful\n  warn_secretly()\n'
        '/home/me/mine.py:3: UserWarning: mine\n  my_own_line()\n')))
    nb, _ = feedback.CutHiddenTraceback().preprocess(nb, {})
    text = nb.cells[1].outputs[0].text
    for hidden in ("hidden.grade", "collect.py\", line", "secret()", "warn_secretly"):
        assert hidden not in text
    for shown in ("ValueError: bad", "UserWarning: careful", "my_own_line()", feedback.HIDDEN_FRAMES_NOTE):
        assert shown in text


# ---- the whole loop with real nbgrader ----

TA_COMMENT = "TA: clear argument about the batch dimension"


def ta_grades(course: Path, team_id: str, *, comment: str | None) -> None:
    """What a TA does in the formgrader, through nbgrader's Gradebook API: score every open answer."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        notebook = gradebook.find_submission_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID, team_id)
        for grade in notebook.grades:
            if waits_for_ta(grade):
                grade.manual_score = grade.max_score - 1
                grade.needs_manual_grade = False
                if comment:
                    gradebook.find_comment(grade.name, NOTEBOOK_NAME, ASSIGNMENT_ID, team_id).manual_comment = comment
        gradebook.db.commit()


def hidden_test_lines() -> set[str]:
    lines = set()
    for cell in read_notebook(MASTER_PATH).cells:
        numbers = feedback.hidden_line_numbers(cell.source, begin="BEGIN HIDDEN TESTS", end="END HIDDEN TESTS")
        source = cell.source.split("\n")
        lines.update(source[n - 1].strip() for n in numbers if len(source[n - 1].strip()) >= 12)
    return lines


def visible_text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def mtimes(*folders: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for folder in folders for path in folder.rglob("*.html")}


@pytest.fixture(scope="module")
def graded_twice(own_words_class, tmp_path_factory):
    # TAs grade and the class is graded again below: a copy of the session's class, graded once already.
    graded = copy_graded(own_words_class, tmp_path_factory.mktemp("olat"))
    course, results, first = graded.course, graded.results, graded.summary

    def grade():
        return grade_download(download=graded.download, course_root=course, output_folder=results, workers=2,
                              roster=graded.roster)

    before = {path: path.read_text() for path in (results / "feedback").glob("*.html")}
    ta_grades(course, "anna_bob", comment=TA_COMMENT)
    ta_grades(course, "carl", comment=None)
    times = mtimes(results / "feedback", course / "feedback")
    second = grade()
    return course, results, first, before, times, second


def test_feedback_before_ta_grading_says_waiting(graded_twice):
    course, results, first, before, *_ = graded_twice
    dora = before[results / "feedback" / "dora.html"]
    assert "Waiting for a TA:</strong> 15 answers (44 points)" in dora
    assert "Written response" not in dora  # nbgrader would list each as "(Score: 0.0 / 4.0)"
    assert first.olat.left_out == ()
    comments = {row.username: row.comment for row in first.olat.rows}
    assert all("Not final: 15 answers still wait for a TA" in comments[name] for name in ("anna", "bob", "dora"))
    # A kernel that died after its first answers were judged: those points count, and the line says so.
    emil = next(result for result in first.results if result.team_id == "emil")
    assert emil.status == "kernel crashed" and 0 < emil.total < 56
    assert "Grading stopped early (kernel crashed)" in comments["emil"]


def test_only_changed_teams_get_new_feedback(graded_twice):
    course, results, first, before, times, second = graded_twice
    assert second.graded_now == ()
    assert sorted(second.feedback_refreshed) == ["anna_bob", "carl"]
    now = mtimes(results / "feedback", course / "feedback")
    unchanged = {path for path in times for team in ("dora", "emil") if team in path.name or f"/{team}/" in str(path)}
    assert len(unchanged) == 4 and all(now[path] == times[path] for path in unchanged)
    assert all(now[path] != times[path] for path in set(times) - unchanged)
    anna_bob = (results / "feedback" / "anna_bob.html").read_text()
    assert TA_COMMENT in anna_bob and "Waiting for a TA" not in anna_bob
    assert "Waiting for a TA" not in (results / "feedback" / "carl.html").read_text()


def test_bulk_assessment_equals_nbgrader_export(graded_twice):
    course, results, *_, second = graded_twice
    exported = run_nbgrader(course, "export", "--to", str(course / "export.csv"))
    assert exported.returncode == 0, exported.stderr
    # The course's exporter plugin: a row per student with the team's points and the roster's names;
    # frank (in the roster, no upload) gets 0; no row for a team id.
    rows = {row["student_id"]: row for row in csv.DictReader(open(course / "export.csv", encoding="utf-8"))}
    assert sorted(rows) == ["anna", "bob", "carl", "dora", "emil", "frank"]
    assert (rows["bob"]["team"], rows["bob"]["first_name"], rows["bob"]["email"]) == ("anna_bob", "Bob", "b@x.org")
    assert rows["anna"]["score"] == rows["bob"]["score"] and float(rows["anna"]["score"]) == 85
    assert (rows["frank"]["team"], float(rows["frank"]["score"])) == ("", 0.0)
    assert (rows["dora"]["needs_manual_grading"], float(rows["dora"]["points_waiting_for_ta"])) == ("yes", 44.0)
    assert (rows["carl"]["needs_manual_grading"], float(rows["carl"]["points_waiting_for_ta"])) == ("no", 0.0)
    totals = {username: float(row["score"]) for username, row in rows.items()}
    lines = list(csv.DictReader(open(results / "olat" / "bulk_assessment.csv", encoding="utf-8")))
    assert [line["username"] for line in lines] == ["anna", "bob", "carl", "dora", "emil"]
    for line in lines:
        assert "." in line["score"] and float(line["score"]) == pytest.approx(totals[line["username"]])
        if line["username"] == "emil":  # his kernel crashed after 19 points; 44 wait for a TA: not decided yet
            assert float(line["score"]) < 50 and line["passed"] == ""
            continue
        # dora's 44 points still wait for a TA, but her 56 autograded points already pass.
        assert line["passed"] == ("yes" if float(line["score"]) >= 50 else "no")
    assert totals["anna"] == 85 and totals["carl"] < 50  # both outcomes of the pass mark are exercised
    assert second.olat.left_out == ()
    dora = next(line for line in lines if line["username"] == "dora")
    assert "Not final: 15 answers still wait for a TA" in dora["comment"]


def test_return_files_hold_each_students_team_feedback(graded_twice):
    course, results, *_ = graded_twice
    with zipfile.ZipFile(results / "olat" / "return_files.zip") as archive:
        names = sorted(archive.namelist())
        assert names == [f"{user}/{NOTEBOOK_NAME}_feedback.html" for user in ("anna", "bob", "carl", "dora", "emil")]
        for name, team_id in zip(names, ("anna_bob", "anna_bob", "carl", "dora", "emil")):
            assert archive.read(name) == (results / "feedback" / f"{team_id}.html").read_bytes()


def test_no_feedback_shows_hidden_tests_checkers_or_rubrics(graded_twice):
    course, results, first, before, *_ = graded_twice
    hidden = hidden_test_lines()
    assert hidden  # the master notebook has hidden tests to leak
    pages = {**{f"before {path.name}": page for path, page in before.items()},
             **{path.name: path.read_text() for path in (results / "feedback").glob("*.html")}}
    assert len(pages) == 8
    carl = visible_text(pages["carl.html"])
    assert "Traceback (most recent call last)" in carl  # test cells failed in the student's code: tracebacks to cut
    for name, page in pages.items():
        text = visible_text(page)
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"{name} shows hidden test lines {leaked}"
        for secret in ("HIDDEN TESTS", "coursekit", "Rubric", "Reference answer"):
            assert secret not in text, f"{name} shows {secret!r}"
