"""A grading worker: builds its own course from a bundle once, then grades team after team.

The worker process has nbgrader imported and keeps one fork server (warm
kernels with torch imported) for its whole life; each nbgrader command runs
in a fork of it (coursekit.engine.forking), against the worker's private
course folder and SQLite gradebook. Nothing is shared with other workers or
with the course being graded: results leave as TeamOutcome records.

The same loop serves a local worker (forked by coursekit.engine.local) and a
Dask worker's grading service (`python -m coursekit.engine.worker`, started by
coursekit.engine.dask_executor), so both grade exactly alike.
"""
from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from coursekit.engine.bundle import CourseBundle
from coursekit.engine.fast_gradebook import create_gradebook
from coursekit.course import (ASSIGNMENT_ID, AUTOGRADED, FEEDBACK, NOTEBOOK_NAME, SUBMITTED, autograded_notebook,
                              feedback_page, team_folder)
from coursekit.engine.unit import CommentRow, GradeRow, TeamOutcome, TeamWork
from coursekit.errors import CourseKitError

PROTOTYPE_KEY_FILE = ".coursekit-bundle"


class WorkerCourse:
    """The worker's private copy of a course, built from a bundle."""

    def __init__(self, *, bundle: CourseBundle, workspace: Path, prototypes: Path | None = None) -> None:
        """The course of `bundle` in `workspace`: copied from a built one in `prototypes` if there is
        one (local workers share the grading process's), else built with generate_assignment."""
        import coursekit

        if bundle.kit_version != coursekit.__version__:
            raise CourseKitError(f"this worker runs coursekit {coursekit.__version__} but the course was bundled by "
                                 f"{bundle.kit_version}; install the same kit on every worker.")
        self.bundle = bundle
        self.root = workspace / bundle.key[:16]
        self.database = f"sqlite:///{self.root / 'gradebook.db'}"
        if is_built(self.root, bundle):
            return
        shutil.rmtree(self.root, ignore_errors=True)
        prototype = prototypes / bundle.key[:16] if prototypes else None
        if prototype is not None and is_built(prototype, bundle):
            shutil.copytree(prototype, self.root)
            return
        self.root.mkdir(parents=True)
        bundle.write(self.root)
        create_gradebook(db_url=self.database)
        self.nbgrader("generate_assignment", "--force")
        (self.root / PROTOTYPE_KEY_FILE).write_text(bundle.key)

    def nbgrader(self, command: str, *arguments: str) -> None:
        from coursekit.engine import forking
        from coursekit.engine.grading import nbgrader_in_fork

        # The course's own db_url (PostgreSQL, say) and root are the course's, never a worker's.
        run = nbgrader_in_fork(self.root, command, ASSIGNMENT_ID, *arguments,
                               f"--CourseDirectory.db_url={self.database}", f"--CourseDirectory.root={self.root}")
        with open(self.root / "nbgrader.log", "a") as log:
            log.write(run.stdout + run.stderr)
        if run.returncode == forking.SANDBOX_UNAVAILABLE_EXIT:
            raise CourseKitError(run.stderr.strip().splitlines()[-1].removeprefix("coursekit: "))
        if run.returncode != 0 and command == "generate_assignment":
            raise CourseKitError(f"nbgrader generate_assignment failed on {socket.gethostname()}:\n"
                                 f"{run.stderr[-2000:]}")

    def grade(self, work: TeamWork) -> TeamOutcome:
        started = time.monotonic()
        team = work.team_id
        folders = [team_folder(self.root, step, team).parent for step in (SUBMITTED, AUTOGRADED, FEEDBACK)]
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        try:
            work.write(team_folder(self.root, SUBMITTED, team))
            self.nbgrader("autograde", f"--student={team}", "--force")
            self.nbgrader("generate_feedback", f"--student={team}", "--force")
            return self.outcome(team, seconds=time.monotonic() - started)
        finally:
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)

    def outcome(self, team: str, *, seconds: float) -> TeamOutcome:
        from nbgrader.api import Gradebook, MissingEntry

        from coursekit.engine.grading import grading_status

        status, reason = grading_status(self.root, team)
        grades: tuple[GradeRow, ...] = ()
        comments: tuple[CommentRow, ...] = ()
        timestamp = None
        with Gradebook(self.database) as gradebook:
            try:
                notebook = gradebook.find_submission_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID, team)
                timestamp = notebook.assignment.timestamp
                grades = tuple(GradeRow(grade.name, grade.auto_score, float(grade.max_score),
                                        bool(grade.needs_manual_grade)) for grade in notebook.grades)
                comments = tuple(CommentRow(comment.name, comment.auto_comment) for comment in notebook.comments)
                # Only the auto columns ever leave the worker; a stale row must not grade a later run.
                gradebook.remove_submission(ASSIGNMENT_ID, team)
            except MissingEntry:
                pass
        return TeamOutcome(
            team_id=team, status=status, reason=reason,
            autograded_notebook=read_or_none(autograded_notebook(self.root, team)),
            feedback_page=read_or_none(feedback_page(self.root, team)),
            timestamp=timestamp.isoformat() if timestamp else None,
            grades=grades, comments=comments, seconds=seconds,
            worker=f"{socket.gethostname()}:{os.getpid()}")


def is_built(course_root: Path, bundle: CourseBundle) -> bool:
    key_file = course_root / PROTOTYPE_KEY_FILE
    return key_file.exists() and key_file.read_text() == bundle.key


def read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


class Worker:
    """One worker process's state: its workspace, its courses by bundle, its fork server."""

    def __init__(self, *, prototypes: Path | None = None) -> None:
        from coursekit.engine.grading import ensure_tools_on_path

        ensure_tools_on_path()
        self.workspace = Path(tempfile.mkdtemp(prefix="coursekit-worker-"))
        self.prototypes = prototypes
        self.courses: dict[str, WorkerCourse] = {}
        share_fork_server()

    def grade(self, bundle: CourseBundle, work: TeamWork) -> TeamOutcome:
        course = self.courses.get(bundle.key)
        if course is None:
            course = WorkerCourse(bundle=bundle, workspace=self.workspace, prototypes=self.prototypes)
            self.courses[bundle.key] = course
        return course.grade(work)

    def close(self) -> None:
        from coursekit.sandbox.fork_server import ForkServer

        ForkServer.stop_if_started_here()
        shutil.rmtree(self.workspace, ignore_errors=True)


def share_fork_server() -> None:
    """Start the fork server now (unless this worker's parent did), so every nbgrader fork of this
    worker uses the same warm one; it imports torch while the worker builds its course."""
    from coursekit.sandbox.fork_server import ForkServer
    from coursekit.sandbox.kernel_manager import sandbox_environment

    ForkServer.prestart(environment=sandbox_environment())


# Messages on a worker's connection: ("grade", bundle, work) -> ("outcome", TeamOutcome) or
# ("error", one-line message); ("stop",) ends the loop. Both ends are the kit's own processes.

def serve(connection: Connection, *, prototypes: Path | None = None) -> None:
    """Grade what arrives on `connection` until it says stop or closes."""
    # Imported once here, before any fork, rather than once per nbgrader command.
    import nbgrader.apps.nbgraderapp  # noqa: F401

    from coursekit.nbgrader_plugins import execution, preprocessors, rebuild  # noqa: F401 (named in nbgrader_config.py)

    worker = Worker(prototypes=prototypes)
    try:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                return
            if message[0] == "stop":
                return
            _, bundle, work = message
            try:
                reply = ("outcome", worker.grade(bundle, work))
            except CourseKitError as error:
                reply = ("error", str(error))
            connection.send(reply)
    finally:
        worker.close()


def main() -> None:
    """The grading service of a Dask worker: requests on stdin, replies on stdout."""
    from coursekit.engine.forking import die_with_parent

    die_with_parent()
    requests = Connection(os.dup(0))
    replies = Connection(os.dup(1))
    # What nbgrader or a library prints must not corrupt the reply stream.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(_Duplex(requests, replies))


class _Duplex:
    """One object with recv() from one pipe and send() to another."""

    def __init__(self, requests: Connection, replies: Connection) -> None:
        self.recv, self.send = requests.recv, replies.send


if __name__ == "__main__":
    main()
