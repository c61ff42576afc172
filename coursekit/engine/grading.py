"""Running real nbgrader commands on a course and reading the scores back.

nbgrader runs with the course's `nbgrader_config.py`, as an instructor would
run it (in a fork of this process, see coursekit.engine.forking); the scores
come from its gradebook. Grading many notebooks goes through the engine
(coursekit.engine.run).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import Any


from nbgrader.api import BaseCell, Comment, Grade, Gradebook, MissingEntry
from sqlalchemy.orm import undefer

from coursekit.engine import forking
from coursekit.course import (ASSIGNMENT_ID, NOTEBOOK_NAME, autograded_notebook, is_autograded, submitted_notebook,
                              waits_for_ta)
from coursekit.engine.fast_gradebook import create_gradebook
from coursekit.errors import CourseKitError
from coursekit.records import CellScore
from coursekit.nbgrader_plugins.rebuild import STATUS_KEY
from coursekit.statuses import GradingStatus


@dataclass(frozen=True)
class StudentScores:
    student_id: str
    cells: tuple[CellScore, ...]
    status: GradingStatus = GradingStatus.GRADED
    reason: str = ""

    def autograded(self) -> dict[str, CellScore]:
        return {cell.grade_id: cell for cell in self.cells if is_autograded(cell)}

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
    # Its own SQLite gradebook: the copied configuration may name the course's real one (PostgreSQL, say).
    database = f"sqlite:///{course_root / 'gradebook.db'}"
    create_gradebook(db_url=database)
    result = nbgrader_in_fork(course_root, "generate_assignment", ASSIGNMENT_ID, "--force",
                              f"--CourseDirectory.db_url={database}")
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
                    needs_manual_grade=waits_for_ta(grade),
                )
                for grade in notebook.grades
            )
            status, reason = grading_status(course_root, student_id)
            scores[student_id] = StudentScores(student_id=student_id, cells=cells, status=status, reason=reason)
    return scores


def submitted_notebooks(gradebook: Gradebook, student_ids: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """(student id, the gradebook's record of their notebook) for each student who has one, its rows
    loaded (see load_rows)."""
    for student_id in student_ids:
        try:
            notebook = gradebook.find_submission_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID, student_id)
        except MissingEntry:
            continue
        rows = load_rows(gradebook, notebook)
        yield student_id, notebook
        del rows


def load_rows(gradebook: Gradebook, notebook) -> tuple:
    """Load a submitted notebook's grades and comments, their cells and maximum scores into the session
    with three queries; nbgrader's lazy relationships would ask the database twice per cell. The
    session keeps them (and the lazy loads of grade.cell, grade.max_score find them) while the returned
    tuple is referenced."""
    return (gradebook.db.query(BaseCell).filter(BaseCell.notebook_id == notebook.notebook_id).all(),
            gradebook.db.query(Grade).filter(Grade.notebook_id == notebook.id).options(undefer(Grade.max_score)).all(),
            gradebook.db.query(Comment).filter(Comment.notebook_id == notebook.id).all())


def grading_status(course_root: Path, student_id: str) -> tuple[GradingStatus, str]:
    """What the hardened grader recorded in the autograded notebook, or why there is none."""
    autograded = autograded_notebook(course_root, student_id)
    if autograded.exists():
        metadata = autograded_metadata(autograded)
        if metadata is None:
            return GradingStatus.NOT_GRADED, "the autograded notebook cannot be read"
        metadata = metadata.get(STATUS_KEY, {})
        try:
            status = GradingStatus(metadata.get("status", GradingStatus.GRADED))
        except (ValueError, AttributeError):
            return GradingStatus.NOT_GRADED, "the autograded notebook has no valid grading status"
        return status, str(metadata.get("reason", ""))
    if not submission_path(course_root, student_id).exists():
        return GradingStatus.MISSING, f"no {NOTEBOOK_NAME}.ipynb in the submission"
    return GradingStatus.NOT_GRADED, "nbgrader could not grade this submission; see its log"


def autograded_metadata(path: Path) -> dict | None:
    """The notebook-level metadata of an autograded notebook (nbgrader wrote it: plain JSON is enough,
    validating the whole notebook for it costs ~10 ms); None when it cannot be read."""
    try:
        metadata = json.loads(path.read_bytes()).get("metadata", {})
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return metadata if isinstance(metadata, dict) else None


def submission_path(course_root: Path, student_id: str) -> Path:
    return submitted_notebook(course_root, student_id)
