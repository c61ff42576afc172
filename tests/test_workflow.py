"""`coursekit grade` end to end on a small OLAT download, with real nbgrader."""
import csv
import subprocess
import sys
import zipfile

import pytest

from coursekit import demo
from coursekit.errors import CourseKitError
from coursekit.engine.workflow import grade_download
from conftest import REPOSITORY

ROSTER = "username,first_name,last_name,email\nanna,Anna,A,a@x.org\nbob,Bob,B,b@x.org\ncarl,Carl,C,c@x.org\ndora,Dora,D,d@x.org\n"


@pytest.fixture(scope="module")
def samples():
    return demo.sample_notebooks(REPOSITORY)


def write_download(path, entries):
    with zipfile.ZipFile(path, "w") as download:
        for name, content, moment in entries:
            download.writestr(zipfile.ZipInfo(name, moment), content)
    return path


def class_download(path, samples, carl_sample="partly_right"):
    return write_download(path, [
        ("Gruppe 1/Anna_Bob_ml_ex2.ipynb", samples["all_correct"], (2024, 11, 8, 10, 0, 0)),
        ("Gruppe 2/carl_ml_ex2.ipynb", samples["blank"], (2024, 11, 6, 10, 0, 0)),
        ("Gruppe 2/carl_ml_ex2 (1).ipynb", samples[carl_sample], (2024, 11, 8, 11, 0, 0)),
        ("Gruppe 3/readme.ipynb", samples["all_correct"], (2024, 11, 8, 9, 0, 0)),
    ])


def fresh_course(tmp_path, name):
    course = tmp_path / name
    demo.copy_course(course_root=REPOSITORY, destination=course)
    return course


def per_cell(summary):
    return {r.team_id: {c.grade_id: c.score for c in r.cells} for r in summary.results}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, samples):
    tmp_path = tmp_path_factory.mktemp("workflow")
    course = fresh_course(tmp_path, "course")
    download = class_download(tmp_path / "download.zip", samples)
    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER)
    before = download.read_bytes()
    summary = grade_download(download=download, course_root=course, output_folder=tmp_path / "results",
                             workers=2, roster=roster)
    return tmp_path, course, download, roster, before, summary


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


def test_rerun_grades_only_what_changed(first_run, samples):
    tmp_path, course, download, roster, _, first = first_run
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
