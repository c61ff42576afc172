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
from typing import TYPE_CHECKING

from coursekit.engine.bundle import CourseBundle
from coursekit.engine.fast_gradebook import create_gradebook
from coursekit.course import ASSIGNMENT_ID
from coursekit.engine.unit import TeamOutcome, TeamWork
from coursekit.errors import CourseKitError

if TYPE_CHECKING:
    from coursekit.engine.team_grader import TeamGrader

PROTOTYPE_KEY_FILE = ".coursekit-bundle"
GRADEBOOK_FILE = "gradebook.db"


class WorkerCourse:
    """The worker's private copy of a course, built from a bundle, and the grader that works in it."""

    def __init__(self, *, bundle: CourseBundle, workspace: Path, prototypes: Path | None = None) -> None:
        """The course of `bundle` in `workspace`: copied from the one built in `prototypes` (once per
        course version, see ensure_prototype), else built here with generate_assignment."""
        check_kit_version(bundle)
        self.bundle = bundle
        self.workspace = workspace
        self.root = workspace / bundle.key[:16]
        self._grader = None
        if is_built(self.root, bundle):
            return
        shutil.rmtree(self.root, ignore_errors=True)
        prototype = ensure_prototype(bundle=bundle, prototypes=prototypes) if prototypes else None
        if prototype is not None:
            shutil.copytree(prototype, self.root, ignore=shutil.ignore_patterns("nbgrader.log"))
        else:
            build_course(bundle, self.root)

    def grader(self, log: logging.Logger):
        if self._grader is None:
            from coursekit.engine.team_grader import TeamGrader

            self._grader = TeamGrader(course_root=self.root, gradebook_file=self.root / GRADEBOOK_FILE,
                                      workspace=self.workspace / "work", log=log)
        return self._grader

    def close(self) -> None:
        if self._grader is not None:
            self._grader.close()


def check_kit_version(bundle: CourseBundle) -> None:
    import coursekit

    if bundle.kit_version != coursekit.__version__:
        raise CourseKitError(f"this worker runs coursekit {coursekit.__version__} but the course was bundled by "
                             f"{bundle.kit_version}; install the same kit on every worker.")


def build_course(bundle: CourseBundle, root: Path) -> None:
    """The bundle's course in `root`, as `nbgrader generate_assignment` makes it, with a gradebook of its own."""
    from coursekit.engine import forking
    from coursekit.engine.grading import nbgrader_in_fork

    root.mkdir(parents=True)
    bundle.write(root)
    database = f"sqlite:///{root / GRADEBOOK_FILE}"
    create_gradebook(db_url=database)
    # The course's own db_url (PostgreSQL, say) and root are the course's, never a worker's.
    run = nbgrader_in_fork(root, "generate_assignment", ASSIGNMENT_ID, "--force",
                           f"--CourseDirectory.db_url={database}", f"--CourseDirectory.root={root}")
    with open(root / "nbgrader.log", "a") as log:
        log.write(run.stdout + run.stderr)
    if run.returncode == forking.SANDBOX_UNAVAILABLE_EXIT:
        raise CourseKitError(run.stderr.strip().splitlines()[-1].removeprefix("coursekit: "))
    if run.returncode != 0:
        raise CourseKitError(f"nbgrader generate_assignment failed on {socket.gethostname()}:\n{run.stderr[-2000:]}")
    (root / PROTOTYPE_KEY_FILE).write_text(bundle.key)


def ensure_prototype(*, bundle: CourseBundle, prototypes: Path) -> Path | None:
    """The course of `bundle` built once in `prototypes` (and kept there for later runs); None when that
    folder cannot be used. Built aside and moved into place, so runs building at once never mix."""
    check_kit_version(bundle)
    prototype = prototypes / bundle.key[:16]
    if is_built(prototype, bundle):
        return prototype
    try:
        prototypes.mkdir(parents=True, exist_ok=True, mode=0o700)
        building = Path(tempfile.mkdtemp(prefix=f".{bundle.key[:16]}-", dir=prototypes))
    except OSError:
        return None
    try:
        build_course(bundle, building / "course")
        shutil.rmtree(prototype, ignore_errors=True)  # an unfinished or stale one
        os.rename(building / "course", prototype)
    except OSError:
        pass  # another run moved its own into place first
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return prototype if is_built(prototype, bundle) else None


def prototype_cache() -> Path | None:
    """Where courses built from bundles are kept between runs, keyed by the bundle: $COURSEKIT_CACHE, else
    coursekit/ in the user's cache folder. None unless it is this user's alone (what is built there
    decides grades)."""
    base = os.environ.get("COURSEKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "coursekit")
    folder = Path(base) / "courses"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        status = folder.stat()
    except OSError:
        return None
    if status.st_uid != os.geteuid() or status.st_mode & 0o077:
        return None
    return folder


def is_built(course_root: Path, bundle: CourseBundle) -> bool:
    key_file = course_root / PROTOTYPE_KEY_FILE
    return key_file.exists() and key_file.read_text() == bundle.key


WORKER_LOG = "coursekit.worker"
# Graders made and warmed up by the grading process just before it forks its local workers, by bundle key.
WARM_GRADERS: dict[str, "TeamGrader"] = {}


def worker_log(path: Path | None) -> logging.Logger:
    """This process's grading log, into `path` (nowhere without one). One logger name for every process:
    a grader made before a fork logs into the log of the worker that uses it."""
    log = logging.getLogger(WORKER_LOG)
    log.propagate = False
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):  # a fork's copy of its parent's
        log.removeHandler(handler)
    handler = logging.FileHandler(path) if path is not None else logging.NullHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s] %(message)s"))
    log.addHandler(handler)
    return log


class Worker:
    """One worker process's state: its workspace, its graders by bundle, its log, its fork server."""

    def __init__(self, *, prototypes: Path | None = None) -> None:
        from coursekit.engine.grading import ensure_tools_on_path

        ensure_tools_on_path()
        self.workspace = Path(tempfile.mkdtemp(prefix="coursekit-worker-"))
        self.prototypes = prototypes
        self.courses: dict[str, WorkerCourse] = {}
        self.graders: dict[str, "TeamGrader"] = {}
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.log_file = self.workspace / "worker.log"
        self.log = worker_log(self.log_file)
        share_fork_server()

    def grade(self, bundle: CourseBundle, work: TeamWork) -> TeamOutcome:
        started = time.monotonic()
        grader = self.graders.get(bundle.key) or WARM_GRADERS.get(bundle.key)
        if grader is None:
            course = WorkerCourse(bundle=bundle, workspace=self.workspace, prototypes=self.prototypes)
            self.courses[bundle.key] = course
            grader = course.grader(self.log)
        self.graders[bundle.key] = grader
        outcome = grader.grade(work, worker=self.name)
        return dataclasses.replace(outcome, seconds=time.monotonic() - started)

    def close(self) -> None:
        from coursekit.sandbox.fork_server import ForkServer

        for grader in self.graders.values():
            grader.close()
        ForkServer.stop_if_started_here()
        shutil.rmtree(self.workspace, ignore_errors=True)


def warm_grader(*, bundle: CourseBundle, prototypes: Path | None) -> Path | None:
    """In the grading process, just before it forks its workers: a grader for `bundle`, warmed up (see
    TeamGrader.warm_up), which every worker inherits instead of making and warming its own. Returns the
    folder it works in, for the caller to remove after the run; None when it could not be made (each
    worker then makes its own)."""
    workspace = Path(tempfile.mkdtemp(prefix="coursekit-warm-"))
    try:
        course = WorkerCourse(bundle=bundle, workspace=workspace, prototypes=prototypes)
        grader = course.grader(worker_log(None))
        grader.warm_up()
        grader.close()  # no gradebook connection may cross the fork
    except Exception:  # noqa: BLE001 - only a head start; the workers show any real problem
        shutil.rmtree(workspace, ignore_errors=True)
        return None
    WARM_GRADERS[bundle.key] = grader
    return workspace


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
