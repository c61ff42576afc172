"""Grading a set of teams of one course, whoever asks: the CLI, the tests, the benchmark.

The teams' submissions are read from the course's submitted/ folder, graded by
an executor (local workers by default, a Dask cluster with a scheduler
address), and each outcome is merged by the one writer as soon as it arrives,
so an interrupted run keeps every team graded so far.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nbformat import NotebookNode
from nbgrader.api import Gradebook

from coursekit.engine.bundle import CourseBundle, bundle_course
from coursekit.engine.grading import StudentScores, prepare_course, read_scores, submission_path
from coursekit.engine.unit import TeamOutcome, TeamWork
from coursekit.engine.worker import prototype_cache
from coursekit.engine.writer import merge_outcome
from coursekit.course import NOTEBOOK_NAME, SUBMITTED, team_folder
from coursekit.notebooks import write_notebook


class Executor(Protocol):
    def run(self, *, bundle: CourseBundle, works, on_outcome: Callable[[TeamOutcome], None]) -> None: ...


def executor_for(*, workers: int, scheduler: str | None = None, prototypes: Path | None = None) -> Executor:
    """Local workers, or the Dask cluster whose scheduler listens at `scheduler` (tcp://HOST:PORT).

    `prototypes`: where local workers find the course built once and kept between runs.
    """
    if scheduler:
        from coursekit.engine.dask_executor import DaskExecutor

        return DaskExecutor(address=scheduler)
    from coursekit.engine.local import LocalExecutor

    return LocalExecutor(workers=workers, prototypes=prototypes)


def team_work(*, course_root: Path, team: str) -> TeamWork:
    return TeamWork.from_folder(team_id=team, folder=team_folder(course_root, SUBMITTED, team))


def grade_teams(*, course_root: Path, database: str, teams: list[str], executor: Executor,
                on_outcome: Callable[[TeamOutcome], None] | None = None) -> list[TeamOutcome]:
    """Grade `teams` (their submitted/ folders in `course_root`) and merge each into the course."""
    if not teams:
        return []
    bundle = bundle_course(course_root=course_root)
    outcomes: dict[str, TeamOutcome] = {}
    works = (team_work(course_root=course_root, team=team) for team in teams)
    with Gradebook(database) as gradebook:
        def merge(outcome: TeamOutcome) -> None:
            # A team graded twice (a Dask task re-run after its worker vanished) is merged once.
            if outcome.team_id in outcomes:
                return
            merge_outcome(course_root=course_root, gradebook=gradebook, outcome=outcome)
            outcomes[outcome.team_id] = outcome
            if on_outcome is not None:
                on_outcome(outcome)

        executor.run(bundle=bundle, works=works, on_outcome=merge)
    return [outcomes[team] for team in teams if team in outcomes]


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
                executor=executor_for(workers=workers, scheduler=scheduler,
                                      prototypes=prototype_cache() or work_dir / "prototypes"))
    return read_scores(course_root=course_root, student_ids=student_ids)
