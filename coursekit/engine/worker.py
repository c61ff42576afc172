"""A grading worker: builds its own course from a bundle once, then grades team after team.

The worker process keeps, per course version, a private copy of the course
(built once with `nbgrader generate_assignment`, or copied from a prototype
built once per bundle) and a TeamGrader (coursekit.engine.team_grader) that
runs nbgrader's own autograde and feedback steps on each team's notebook in
memory, against the worker's own gradebook in memory. Kernels come from one
fork server (warm, torch imported) for the worker's whole life. Nothing is
shared with other workers or with the course being graded: results leave as
TeamOutcome records.

The same loop serves a local worker (forked by coursekit.engine.local) and a
Dask worker's grading service (`python -m coursekit.engine.worker`, started by
coursekit.engine.dask_executor), so both grade exactly alike.
"""
from __future__ import annotations

import dataclasses
import logging
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
from coursekit.course import ASSIGNMENT_ID
from coursekit.engine.unit import TeamOutcome, TeamWork
from coursekit.errors import CourseKitError

PROTOTYPE_KEY_FILE = ".coursekit-bundle"
GRADEBOOK_FILE = "gradebook.db"


class WorkerCourse:
    """The worker's private copy of a course, built from a bundle, and the grader that works in it."""

    def __init__(self, *, bundle: CourseBundle, workspace: Path, prototypes: Path | None = None) -> None:
        """The course of `bundle` in `workspace`: copied from a built one in `prototypes` if there is
        one (local workers share the grading process's), else built with generate_assignment."""
        import coursekit

        if bundle.kit_version != coursekit.__version__:
            raise CourseKitError(f"this worker runs coursekit {coursekit.__version__} but the course was bundled by "
                                 f"{bundle.kit_version}; install the same kit on every worker.")
        self.bundle = bundle
        self.workspace = workspace
        self.root = workspace / bundle.key[:16]
        self.database = f"sqlite:///{self.root / GRADEBOOK_FILE}"
        self._grader = None
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
        self.generate_assignment()
        (self.root / PROTOTYPE_KEY_FILE).write_text(bundle.key)

    def generate_assignment(self) -> None:
        from coursekit.engine import forking
        from coursekit.engine.grading import nbgrader_in_fork

        # The course's own db_url (PostgreSQL, say) and root are the course's, never a worker's.
        run = nbgrader_in_fork(self.root, "generate_assignment", ASSIGNMENT_ID, "--force",
                               f"--CourseDirectory.db_url={self.database}", f"--CourseDirectory.root={self.root}")
        with open(self.root / "nbgrader.log", "a") as log:
            log.write(run.stdout + run.stderr)
        if run.returncode == forking.SANDBOX_UNAVAILABLE_EXIT:
            raise CourseKitError(run.stderr.strip().splitlines()[-1].removeprefix("coursekit: "))
        if run.returncode != 0:
            raise CourseKitError(f"nbgrader generate_assignment failed on {socket.gethostname()}:\n"
                                 f"{run.stderr[-2000:]}")

    def grader(self, log: logging.Logger):
        if self._grader is None:
            from coursekit.engine.team_grader import TeamGrader

            self._grader = TeamGrader(course_root=self.root, gradebook_file=self.root / GRADEBOOK_FILE,
                                      workspace=self.workspace / "work", log=log)
        return self._grader

    def close(self) -> None:
        if self._grader is not None:
            self._grader.close()


def is_built(course_root: Path, bundle: CourseBundle) -> bool:
    key_file = course_root / PROTOTYPE_KEY_FILE
    return key_file.exists() and key_file.read_text() == bundle.key


class Worker:
    """One worker process's state: its workspace, its courses by bundle, its log, its fork server."""

    def __init__(self, *, prototypes: Path | None = None) -> None:
        from coursekit.engine.grading import ensure_tools_on_path

        ensure_tools_on_path()
        self.workspace = Path(tempfile.mkdtemp(prefix="coursekit-worker-"))
        self.prototypes = prototypes
        self.courses: dict[str, WorkerCourse] = {}
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.log_file = self.workspace / "worker.log"
        self.log = logging.getLogger(f"coursekit.worker.{os.getpid()}")
        self.log.propagate = False
        self.log.setLevel(logging.INFO)
        handler = logging.FileHandler(self.log_file)
        handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s] %(message)s"))
        self.log.addHandler(handler)
        share_fork_server()

    def grade(self, bundle: CourseBundle, work: TeamWork) -> TeamOutcome:
        started = time.monotonic()
        course = self.courses.get(bundle.key)
        if course is None:
            course = WorkerCourse(bundle=bundle, workspace=self.workspace, prototypes=self.prototypes)
            self.courses[bundle.key] = course
        outcome = course.grader(self.log).grade(work, worker=self.name)
        return dataclasses.replace(outcome, seconds=time.monotonic() - started)

    def close(self) -> None:
        from coursekit.sandbox.fork_server import ForkServer

        for course in self.courses.values():
            course.close()
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
    preimport()
    worker = Worker(prototypes=prototypes)
    # What kernels print on their raw output and whatever a library says goes to the worker's log
    # (as it went to nbgrader's log), not over the command's progress line.
    with open(worker.log_file, "ab", buffering=0) as log:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
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


def preimport() -> None:
    """What grading a team imports, imported once: before local workers are forked, it is shared by all."""
    import nbgrader.converters  # noqa: F401
    import nbconvert.exporters.html  # noqa: F401

    from coursekit.engine import team_grader  # noqa: F401
    from coursekit.nbgrader_plugins import execution, keep_reviews, preprocessors, rebuild  # noqa: F401 (named in nbgrader_config.py)
    from coursekit.reports import feedback, feedback_exporter  # noqa: F401 (named in nbgrader_config.py)


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
