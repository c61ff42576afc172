"""The course model: the assignment's fixed names, where nbgrader keeps each team's files,
and which graded cells the autograder scores.

Paths come from nbgrader's own CourseDirectory (its directory_structure and
step folders), so the kit finds files exactly where nbgrader writes them.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

ASSIGNMENT_ID = "ex2"
NOTEBOOK_NAME = "ml_ex2"
# A graded code cell whose grade_id ends in this is a hidden test: the autograder scores it.
# Every other graded cell (the free-text answers) waits for a TA.
TEST_SUFFIX = "_test"

SUBMITTED, AUTOGRADED, FEEDBACK = "submitted", "autograded", "feedback"
# A verdict line puts what depends on the run's given values after this (coursekit.exercise.checks),
# so the same wrong answer reads the same for every team up to it (coursekit.similarity compares them).
ON_GRADERS_VALUES = "On the grader's values:"


def is_autograded_cell(grade_id: str) -> bool:
    return grade_id.endswith(TEST_SUFFIX)


def waits_for_ta(grade) -> bool:
    """A gradebook grade a TA still has to give: no manual score, and nothing the autograder decided."""
    return grade.manual_score is None and (bool(grade.needs_manual_grade) or grade.auto_score is None)


def is_autograded(cell) -> bool:
    """A graded cell (CellScore or gradebook grade) whose points the autograder decided: a hidden
    test it scored. Every other graded cell is a TA's, even once a TA has cleared its flag."""
    return is_autograded_cell(cell.grade_id) and not cell.needs_manual_grade


def answer_of_test(grade_id: str) -> str:
    """The answer a hidden test cell checks (`net_model_test` checks `net_model`)."""
    return grade_id.removesuffix(TEST_SUFFIX)


@lru_cache(maxsize=32)
def course_directory(course_root: Path):
    """nbgrader's CourseDirectory for the course folder (its default layout; the kit's courses keep it)."""
    from nbgrader.coursedir import CourseDirectory

    return CourseDirectory(root=str(course_root))


def team_folder(course_root: Path, step: str, team: str) -> Path:
    """<course>/<step>/<team>/<assignment>, as nbgrader lays it out."""
    directory = course_directory(Path(course_root))
    step_folder = {SUBMITTED: directory.submitted_directory, AUTOGRADED: directory.autograded_directory,
                   FEEDBACK: directory.feedback_directory}[step]
    return Path(directory.format_path(step_folder, team, ASSIGNMENT_ID))


def submitted_notebook(course_root: Path, team: str) -> Path:
    return team_folder(course_root, SUBMITTED, team) / f"{NOTEBOOK_NAME}.ipynb"


def autograded_notebook(course_root: Path, team: str) -> Path:
    return team_folder(course_root, AUTOGRADED, team) / f"{NOTEBOOK_NAME}.ipynb"


def feedback_page(course_root: Path, team: str) -> Path:
    return team_folder(course_root, FEEDBACK, team) / f"{NOTEBOOK_NAME}.html"
