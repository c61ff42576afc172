"""Running real nbgrader commands on a course and reading the scores back.

nbgrader runs with the course's `nbgrader_config.py`, as an instructor would
run it (in a fork of this process, see coursekit.engine.forking); the scores
come from its gradebook. Grading many notebooks goes through the engine
(coursekit.engine.run).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import Any

import nbformat
from nbformat import NotebookNode

from nbgrader.api import Gradebook, MissingEntry

from coursekit.engine import forking
from coursekit.errors import CourseKitError
from coursekit.notebooks import ASSIGNMENT_ID, NOTEBOOK_NAME, write_notebook
from coursekit.nbgrader_plugins.rebuild import STATUS_KEY
from coursekit.statuses import GradingStatus


@dataclass(frozen=True)
class CellScore:
    grade_id: str
    score: float
    max_score: float
    needs_manual_grade: bool


@dataclass(frozen=True)
class StudentScores:
    student_id: str
    cells: tuple[CellScore, ...]
    status: GradingStatus = GradingStatus.GRADED
    reason: str = ""

    def autograded(self) -> dict[str, CellScore]:
        return {cell.grade_id: cell for cell in self.cells if not cell.needs_manual_grade}

    @property
    def total(self) -> float:
        return sum(cell.score for cell in self.cells)


def tool_environment() -> dict[str, str]:
    """nbgrader runs `alembic` and `jupyter` from PATH: put this interpreter's bin/ first."""
    environment = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    path = environment.get("PATH", "")
    if path.split(os.pathsep)[0] != bin_dir:
        environment["PATH"] = bin_dir + os.pathsep + path
    return environment


def ensure_tools_on_path() -> None:
    """Gradebooks created in this process run `alembic` from PATH too."""
    os.environ["PATH"] = tool_environment()["PATH"]


def nbgrader_command() -> list[str]:
    executable = Path(sys.executable).parent / "nbgrader"
    if not executable.exists():
        raise CourseKitError("nbgrader is not installed next to this Python; run `make setup`.")
    return [str(executable)]


def run_nbgrader(course_root: Path, *arguments: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*nbgrader_command(), *arguments],
        cwd=course_root,
        env=tool_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def nbgrader_in_fork(course_root: Path, *arguments: str) -> subprocess.CompletedProcess:
    """Like run_nbgrader, in a fork of this process (~3 s faster, see coursekit.engine.forking).

    Forking a process with threads can deadlock the fork, so a threaded
    process starts a fresh nbgrader instead.
    """
    if threading.active_count() > 1:
        return run_nbgrader(course_root, *arguments)
    return forking.run_nbgrader_in_fork(course_root, list(arguments), tool_environment()["PATH"])


def prepare_course(*, template_root: Path, course_root: Path) -> None:
    """A throwaway copy of the course: config, source, release and a fresh gradebook."""
    course_root.mkdir(parents=True, exist_ok=True)
    shutil.copy(template_root / "nbgrader_config.py", course_root / "nbgrader_config.py")
    for folder in ("source", "release"):
        shutil.copytree(template_root / folder, course_root / folder, dirs_exist_ok=True)
    result = nbgrader_in_fork(course_root, "generate_assignment", ASSIGNMENT_ID, "--force")
    if result.returncode != 0:
        raise CourseKitError(f"nbgrader generate_assignment failed in {course_root}:\n{result.stderr[-2000:]}")


def autograde(*, course_root: Path, extra_arguments: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return run_nbgrader(course_root, "autograde", ASSIGNMENT_ID, "--force", *extra_arguments)


def read_scores(
    *, course_root: Path, student_ids: list[str] | None = None, database: str | None = None
) -> dict[str, StudentScores]:
    if database is None:
        if not (course_root / "gradebook.db").exists():
            raise CourseKitError(f"no gradebook in {course_root}; run `nbgrader generate_assignment {ASSIGNMENT_ID}` first.")
        database = f"sqlite:///{course_root / 'gradebook.db'}"
    scores = {}
    with Gradebook(database) as gradebook:
        ids = student_ids if student_ids is not None else [s.id for s in gradebook.students]
        for student_id, notebook in submitted_notebooks(gradebook, ids):
            cells = tuple(
                CellScore(
                    grade_id=grade.name,
                    score=float(grade.score or 0.0),
                    max_score=float(grade.max_score),
                    # Free text waits for a TA until a TA has scored it (manual_score), even a blank answer.
                    needs_manual_grade=grade.manual_score is None and (
                        bool(grade.needs_manual_grade) or grade.cell_type == "markdown"),
                )
                for grade in notebook.grades
            )
            status, reason = grading_status(course_root, student_id)
            scores[student_id] = StudentScores(student_id=student_id, cells=cells, status=status, reason=reason)
    return scores


def submitted_notebooks(gradebook: Gradebook, student_ids: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """(student id, the gradebook's record of their notebook) for each student who has one."""
    for student_id in student_ids:
        try:
            yield student_id, gradebook.find_submission_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID, student_id)
        except MissingEntry:
            continue


def grading_status(course_root: Path, student_id: str) -> tuple[GradingStatus, str]:
    """What the hardened grader recorded in the autograded notebook, or why there is none."""
    autograded = course_root / "autograded" / student_id / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb"
    if autograded.exists():
        try:
            metadata = nbformat.read(str(autograded), as_version=4).metadata.get(STATUS_KEY, {})
        except Exception:
            return GradingStatus.NOT_GRADED, "the autograded notebook cannot be read"
        try:
            status = GradingStatus(metadata.get("status", GradingStatus.GRADED))
        except ValueError:
            return GradingStatus.NOT_GRADED, "the autograded notebook has no valid grading status"
        return status, str(metadata.get("reason", ""))
    if not submission_path(course_root, student_id).exists():
        return GradingStatus.MISSING, f"no {NOTEBOOK_NAME}.ipynb in the submission"
    return GradingStatus.NOT_GRADED, "nbgrader could not grade this submission; see its log"


def submission_path(course_root: Path, student_id: str) -> Path:
    return course_root / "submitted" / student_id / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb"


@dataclass(frozen=True)
class SubmissionFiles:
    """A submission as files, for submissions that are not (only) a valid notebook."""

    notebook: bytes
    notebook_filename: str = f"{NOTEBOOK_NAME}.ipynb"
    extra_files: tuple[tuple[str, bytes], ...] = ()

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.notebook_filename).write_bytes(self.notebook)
        for name, content in self.extra_files:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)


def grade_notebooks(
    *, template_root: Path, work_dir: Path, submissions: dict[str, NotebookNode | SubmissionFiles], workers: int,
    scheduler: str | None = None,
) -> dict[str, StudentScores]:
    """Autograde notebooks with real nbgrader through the grading engine, in a throwaway course.

    The same engine and writer as `coursekit grade`: local workers, or the Dask
    cluster at `scheduler`.
    """
    from coursekit.engine.run import executor_for, grade_teams

    course_root = work_dir / "course"
    if not (course_root / "gradebook.db").exists():
        prepare_course(template_root=template_root, course_root=course_root)
    for student_id, submission in submissions.items():
        if isinstance(submission, SubmissionFiles):
            submission.write(submission_path(course_root, student_id).parent)
        else:
            write_notebook(submission, submission_path(course_root, student_id))
    student_ids = sorted(submissions)
    grade_teams(course_root=course_root, database=f"sqlite:///{course_root / 'gradebook.db'}", teams=student_ids,
                executor=executor_for(workers=workers, scheduler=scheduler, prototypes=work_dir / "prototypes"))
    return read_scores(course_root=course_root, student_ids=student_ids)
