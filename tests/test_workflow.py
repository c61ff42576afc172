"""`coursekit grade` end to end on a small OLAT download, with real nbgrader."""
import csv
import subprocess
import sys

import pytest

from coursekit import demo
from coursekit.errors import CourseKitError
from coursekit.engine.workflow import grade_download
from conftest import REPOSITORY, class_download, copy_graded, fresh_course, write_download


@pytest.fixture(scope="module")
def samples():
    return demo.sample_notebooks(REPOSITORY)


def per_cell(summary):
    return {r.team_id: {c.grade_id: c.score for c in r.cells} for r in summary.results}


@pytest.fixture(scope="module")
def first_run(sample_class):
    graded = sample_class
    return graded.work, graded.course, graded.download, graded.roster, graded.download_bytes, graded.summary


def test_import_rules_teams_and_problems(first_run):
    *_, summary = first_run
    assert [r.team_id for r in summary.results] == ["anna_bob", "carl"]
    assert summary.results[0].members == ("anna", "bob")
    kinds = sorted(p.kind for p in summary.problems)
    assert kinds == ["superseded", "unmatched-name"]
    assert any("readme.ipynb" in p.origin for p in summary.problems)
    assert summary.missing == ("dora",)


def test_grades_csv_has_a_row_per_student(first_run):
    tmp_path, *_ = first_run
    rows = {row["username"]: row for row in csv.DictReader(open(tmp_path / "results" / "grades.csv"))}
    assert set(rows) == {"anna", "bob", "carl", "dora"}
    assert rows["anna"]["team"] == rows["bob"]["team"] == "anna_bob"
    assert float(rows["anna"]["autograded"]) == float(rows["bob"]["autograded"]) == 56
    assert float(rows["carl"]["autograded"]) == 48  # partly_right: the newest upload won
    assert rows["dora"]["status"] == "no submission"
    assert rows["anna"]["first_name"] == "Anna"


def test_outputs_feedback_and_report(first_run):
    tmp_path, course, download, _, before, summary = first_run
    results = tmp_path / "results"
    for team in ("anna_bob", "carl"):
        feedback = (results / "feedback" / f"{team}.html").read_text()
        assert "HIDDEN TESTS" not in feedback and "hidden_checks" not in feedback
    assert (results / "report.html").exists() and (results / "integrity.html").exists()
    assert download.read_bytes() == before  # the original download is never modified
    assert (course / "gradebook.db").exists() and (course / "autograded" / "carl").exists()
    text = "\n".join(summary.lines())
    assert "graded: 2" in text and "grades.csv" in text


def test_rerun_grades_only_what_changed(sample_class, samples, tmp_path):
    graded = copy_graded(sample_class, tmp_path)  # graded again below: a copy of the session's class
    course, download, roster, first = graded.course, graded.download, graded.roster, graded.summary
    again = grade_download(download=download, course_root=course, output_folder=tmp_path / "results",
                           workers=2, roster=roster)
    assert again.graded_now == ()
    assert per_cell(again) == per_cell(first)
    changed = class_download(tmp_path / "download2.zip", samples, carl_sample="all_correct")
    third = grade_download(download=changed, course_root=course, output_folder=tmp_path / "results",
                           workers=2, roster=roster)
    assert third.graded_now == ("carl",)
    assert sum(c.score for c in third.results[1].cells if not c.needs_manual_grade) == 56


def test_parallel_grades_equal_serial_grades(first_run, tmp_path):
    _, _, download, roster, _, parallel = first_run
    serial = grade_download(download=download, course_root=fresh_course(tmp_path, "serial"),
                            output_folder=tmp_path / "serial-results", workers=1, roster=roster)
    assert per_cell(serial) == per_cell(parallel)
    assert [r.status for r in serial.results] == [r.status for r in parallel.results]


def test_bad_input_gives_one_line_errors(tmp_path, samples):
    course = fresh_course(tmp_path, "course")
    with pytest.raises(CourseKitError, match="does not exist"):
        grade_download(download=tmp_path / "nope.zip", course_root=course, output_folder=tmp_path / "r", workers=1)
    empty = write_download(tmp_path / "empty.zip", [("notes.txt", b"hello", (2024, 1, 1, 0, 0, 0))])
    with pytest.raises(CourseKitError, match="no .*ipynb"):
        grade_download(download=empty, course_root=course, output_folder=tmp_path / "r", workers=1)
    wrong = write_download(tmp_path / "wrong.zip", [("a/ml_ex3.ipynb", samples["blank"], (2024, 1, 1, 0, 0, 0))])
    with pytest.raises(CourseKitError):
        grade_download(download=wrong, course_root=course, output_folder=tmp_path / "r", workers=1)
    with pytest.raises(CourseKitError, match="nbgrader_config.py"):
        grade_download(download=wrong, course_root=tmp_path, output_folder=tmp_path / "r", workers=1)


def test_cli_reports_bad_input_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "coursekit.cli", "grade", str(tmp_path / "missing.zip")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("coursekit: ") and result.stderr.count("\n") == 1
