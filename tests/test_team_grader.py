"""A worker's one pass in memory grades as `nbgrader autograde` and `nbgrader generate_feedback` do.

The same submissions go to two copies of the course on the same commit: one is
graded by plain nbgrader commands (the course's nbgrader_config.py, as an
instructor runs them), the other by the grading engine (workers, TeamGrader,
the one writer). Their gradebooks must hold the same rows, their autograded
notebooks the same cells and verdicts, and the engine's feedback pages must be
the pages `nbgrader generate_feedback` makes from the merged course.
"""
import shutil

import nbformat
import pytest
from nbgrader.api import Gradebook

from coursekit import demo
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME, autograded_notebook, feedback_page
from coursekit.engine import grading
from coursekit.engine.run import executor_for, grade_teams
from conftest import REPOSITORY

TEAMS = {"anna": "all_correct", "bob": "partly_right", "carl": "half_done", "dora": "blank", "emil": "kernel_crash"}
UNREADABLE = {"fritz": b"{ this is not a notebook"}
RENAMED = "gustav"  # handed in as my_solution.ipynb: nbgrader records the submission, grades nothing
TIMESTAMP = b"2024-11-08 10:00:00.000000 UTC"


def submit(course, samples):
    for team, content in {**{team: samples[sample] for team, sample in TEAMS.items()}, **UNREADABLE}.items():
        path = grading.submission_path(course, team)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        (path.parent / "timestamp.txt").write_bytes(TIMESTAMP)
    renamed = grading.submission_path(course, RENAMED).with_name("my_solution.ipynb")
    renamed.parent.mkdir(parents=True)
    renamed.write_bytes(samples["all_correct"])


def rows(course):
    """Every row `nbgrader autograde` writes for a submission, by team."""
    found = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for team in [*TEAMS, *UNREADABLE, RENAMED]:
            notebook = gradebook.find_submission_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID, team)
            found[team] = (
                notebook.assignment.timestamp, notebook.late_submission_penalty,
                sorted((g.name, g.auto_score, g.manual_score, g.extra_credit, bool(g.needs_manual_grade), g.max_score)
                       for g in notebook.grades),
                sorted((c.name, c.auto_comment, c.manual_comment) for c in notebook.comments),
            )
    return found


def verdicts(course, team):
    """The autograded notebook without what may differ between two executions of the same code: its
    status, every cell's source and nbgrader metadata, and the verdict the grader wrote into each test cell
    (score first, then its lines)."""
    notebook = nbformat.read(autograded_notebook(course, team), as_version=4)
    cells = []
    for cell in notebook.cells:
        metadata = cell.metadata.get("nbgrader", {})
        verdict = [output.get("data", {}).get("text/plain") or output.get("text")
                   for output in cell.get("outputs", [])[:2]] if metadata.get("grade_id", "").endswith("_test") else []
        cells.append((cell.cell_type, cell.source, metadata, verdict))
    return notebook.metadata.get("coursekit"), cells


@pytest.fixture(scope="module")
def graded_both_ways(prototype_course, tmp_path_factory):
    samples = demo.sample_notebooks(REPOSITORY)
    work = tmp_path_factory.mktemp("both-ways")
    plain, engine = work / "plain", work / "engine"
    for course in (plain, engine):
        shutil.copytree(prototype_course, course)
        submit(course, samples)
    autograde = grading.run_nbgrader(plain, "autograde", ASSIGNMENT_ID, "--force")
    # nbgrader grades everyone else and exits 1 for the student it could not grade.
    assert autograde.returncode == 1 and f"for student '{RENAMED}'" in autograde.stderr, autograde.stderr[-2000:]
    assert grading.run_nbgrader(plain, "generate_feedback", ASSIGNMENT_ID, "--force").returncode == 0
    outcomes = grade_teams(course_root=engine, database=f"sqlite:///{engine / 'gradebook.db'}",
                           teams=sorted([*TEAMS, *UNREADABLE, RENAMED]), executor=executor_for(workers=2))
    return plain, engine, {outcome.team_id: outcome for outcome in outcomes}


def test_the_engine_writes_the_rows_nbgrader_autograde_writes(graded_both_ways):
    plain, engine, outcomes = graded_both_ways
    expected = rows(plain)
    assert rows(engine) == expected
    totals = {team: sum(grade[1] or 0 for grade in found[2] if grade[0].endswith("_test"))
              for team, found in expected.items()}
    assert totals["anna"] == 56 and totals["dora"] == totals["fritz"] == 0 and 0 < totals["bob"] < 56  # a real mix


def test_the_engine_autogrades_as_nbgrader_autograde_does(graded_both_ways):
    plain, engine, outcomes = graded_both_ways
    for team in [*TEAMS, *UNREADABLE]:
        assert verdicts(engine, team) == verdicts(plain, team), team
    statuses = {team: outcome.status.value for team, outcome in outcomes.items()}
    assert statuses == {"anna": "graded", "bob": "graded", "carl": "graded", "dora": "graded",
                        "emil": "kernel crashed", "fritz": "unreadable", "gustav": "missing"}
    assert not autograded_notebook(engine, RENAMED).exists() and not autograded_notebook(plain, RENAMED).exists()


def test_engine_feedback_is_what_nbgrader_generate_feedback_makes(graded_both_ways, tmp_path):
    _, engine, outcomes = graded_both_ways
    course = tmp_path / "course"
    shutil.copytree(engine, course)
    made_by_workers = {team: feedback_page(course, team).read_bytes() for team in outcomes if team != RENAMED}
    assert grading.run_nbgrader(course, "generate_feedback", ASSIGNMENT_ID, "--force").returncode == 0
    for team, page in made_by_workers.items():
        assert page == feedback_page(course, team).read_bytes(), team
        assert page == outcomes[team].feedback_page
