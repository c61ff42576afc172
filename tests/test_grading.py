"""Real `nbgrader autograde` on the master answers and on the untouched release, and its failure modes."""
from pathlib import Path

import pytest

from coursekit.engine import grading, run
from coursekit.demo import copy_course
from coursekit.errors import CourseKitError
from coursekit.notebooks import fill_answers, master_answers, read_notebook, write_notebook
from conftest import MASTER_PATH

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def graded(prototype_course, tmp_path_factory):
    course = tmp_path_factory.mktemp("graded") / "course"
    import shutil
    shutil.copytree(prototype_course, course)
    release = read_notebook(course / "release" / "ex2" / "ml_ex2.ipynb")
    master = read_notebook(MASTER_PATH)
    write_notebook(master, grading.submission_path(course, "master-notebook"))
    write_notebook(fill_answers(release, master_answers(master)), grading.submission_path(course, "solved-release"))
    write_notebook(release, grading.submission_path(course, "untouched-release"))
    run = grading.autograde(course_root=course)
    return run, grading.read_scores(course_root=course), course


@pytest.mark.parametrize("student", ["master-notebook", "solved-release"])
def test_master_answers_get_full_marks_on_every_autograded_cell(graded, student):
    cells = graded[1][student].autograded()
    assert len(cells) == 12
    assert {name: c.score for name, c in cells.items()} == {name: c.max_score for name, c in cells.items()}
    assert sum(c.max_score for c in cells.values()) == 56


def test_untouched_release_gets_zero_everywhere_and_the_run_completes(graded):
    run, scores, _ = graded
    assert run.returncode == 0, run.stderr[-2000:]
    cells = scores["untouched-release"].autograded()
    assert len(cells) == 12
    assert {name: c.score for name, c in cells.items() if c.score} == {}


def test_manual_answers_wait_for_a_grader(graded):
    manual = [c for c in graded[1]["solved-release"].cells if c.needs_manual_grade]
    assert len(manual) == 15


def test_a_missing_sandbox_stops_the_run_in_one_line_instead_of_failing_every_student(tmp_path):
    course = tmp_path / "course"
    copy_course(course_root=REPOSITORY, destination=course)
    with open(course / "nbgrader_config.py", "a") as config:
        config.write('\nc.SandboxedKernelManager.fork_server = False\n'
                     'c.SandboxedKernelManager.bwrap_path = "/nonexistent/bwrap"\n')
    release = read_notebook(course / "release" / "ex2" / "ml_ex2.ipynb")
    with pytest.raises(CourseKitError) as stop:
        run.grade_notebooks(template_root=course, work_dir=tmp_path / "work", submissions={"s1": release}, workers=1)
    message = str(stop.value)
    assert "cannot sandbox student code" in message and "apt-get install bubblewrap" in message
    assert "\n" not in message


def given_values(course, team):
    return read_notebook(course / "autograded" / team / "ex2" / "ml_ex2.ipynb").metadata["coursekit"]["given_values"]


def test_an_unchanged_submission_gets_the_same_values_and_grade_whoever_grades_it(graded, tmp_path):
    """Plain `nbgrader autograde` again, then the engine's workers (as `coursekit grade`): same values, same
    grade; another team's notebook got other values."""
    course = graded[2]
    first = given_values(course, "solved-release")
    assert first != given_values(course, "master-notebook")
    again = grading.autograde(course_root=course, extra_arguments=("--student=solved-release",))
    assert again.returncode == 0, again.stderr[-2000:]
    assert given_values(course, "solved-release") == first
    assert grading.read_scores(course_root=course)["solved-release"].cells == graded[1]["solved-release"].cells
    run.grade_teams(course_root=course, database=f"sqlite:///{course / 'gradebook.db'}", teams=["solved-release"],
                    executor=run.executor_for(workers=1, prototypes=tmp_path / "prototypes"))
    assert given_values(course, "solved-release") == first
    assert grading.read_scores(course_root=course)["solved-release"].cells == graded[1]["solved-release"].cells
