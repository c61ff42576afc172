"""The default executor: worker processes on this machine, one per core, fed team by team.

Workers are forks of the grading process (nbgrader already imported), started
before any thread exists. A team goes to whichever worker is free, so one slow
notebook does not hold up a fixed share of the class. A worker that dies
(killed, out of memory) is replaced and its team graded again by another one;
a team whose grading ends two workers is reported as not graded, not retried forever.
"""
from __future__ import annotations

import multiprocessing.connection
import os
import shutil
import signal
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from multiprocessing.connection import Connection

from coursekit.engine import forking
from coursekit.engine.bundle import CourseBundle
from coursekit.engine.unit import TeamOutcome, TeamWork
from coursekit.engine.worker import WARM_GRADERS, preimport, share_fork_server, warm_grader
from coursekit.errors import CourseKitError
from coursekit.statuses import GradingStatus

ATTEMPTS_PER_TEAM = 2


@dataclass
class LocalWorker:
    pid: int
    connection: Connection
    work: TeamWork | None = None


def start_worker(prototypes: Path | None) -> LocalWorker:
    from coursekit.engine.worker import serve

    parent_end, child_end = multiprocessing.Pipe()

    def run() -> int:
        parent_end.close()
        serve(child_end, prototypes=prototypes)
        return 0

    pid = forking.fork(run)
    child_end.close()
    return LocalWorker(pid=pid, connection=parent_end)


def stop_worker(worker: LocalWorker, *, kill: bool = False) -> None:
    if not kill:
        try:
            worker.connection.send(("stop",))
        except OSError:
            kill = True
    if kill:
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.connection.close()
    os.waitpid(worker.pid, 0)


class LocalExecutor:
    def __init__(self, *, workers: int, prototypes: Path | None = None) -> None:
        """`prototypes`: a folder where the course is built once per bundle and kept between runs."""
        self.workers = max(1, workers)
        self.prototypes = prototypes

    def run(self, *, bundle: CourseBundle, works: Iterable[TeamWork],
            on_outcome: Callable[[TeamOutcome], None]) -> None:
        queue = deque(works)
        attempts: dict[str, int] = {}
        if not queue:
            return
        # One fork server for all workers: they are forked after it started (it imports torch while
        # the course is built and the grading code imported here), and after what they import is imported.
        share_fork_server()
        if self.prototypes is not None:
            from coursekit.engine.worker import ensure_prototype

            # Built here once per course version (or found from an earlier run), copied by every worker.
            ensure_prototype(bundle=bundle, prototypes=self.prototypes)
        preimport()
        warm = warm_grader(bundle=bundle, prototypes=self.prototypes)
        try:
            self.grade(bundle, queue, attempts, on_outcome)
        finally:
            WARM_GRADERS.pop(bundle.key, None)
            if warm is not None:
                shutil.rmtree(warm, ignore_errors=True)

    def grade(self, bundle: CourseBundle, queue: deque, attempts: dict[str, int],
              on_outcome: Callable[[TeamOutcome], None]) -> None:
        pool = [start_worker(self.prototypes) for _ in range(min(self.workers, len(queue)))]
        try:
            while queue or any(worker.work for worker in pool):
                for worker in pool:
                    if worker.work is None and queue:
                        worker.work = queue.popleft()
                        attempts[worker.work.team_id] = attempts.get(worker.work.team_id, 0) + 1
                        worker.connection.send(("grade", bundle, worker.work))
                busy = {worker.connection: worker for worker in pool if worker.work}
                for connection in multiprocessing.connection.wait(list(busy)):
                    worker = busy[connection]
                    try:
                        reply = connection.recv()
                    except (EOFError, OSError):
                        given_up = self.replace(worker, queue, attempts, pool)
                        if given_up is not None:
                            on_outcome(given_up)
                        continue
                    if reply[0] == "error":
                        raise CourseKitError(reply[1])
                    worker.work = None
                    on_outcome(reply[1])
        finally:
            for worker in pool:
                stop_worker(worker, kill=worker.work is not None)

    def replace(self, dead: LocalWorker, queue: deque, attempts: dict[str, int],
                pool: list[LocalWorker]) -> TeamOutcome | None:
        """A fresh worker in place of one that died. Its team goes back into the queue once; a team
        whose grading ends two workers is given up (not graded, with the reason) so the run goes on."""
        _, status = os.waitpid(dead.pid, 0)
        dead.connection.close()
        pool[pool.index(dead)] = start_worker(self.prototypes)
        work, dead.work = dead.work, None
        if attempts[work.team_id] < ATTEMPTS_PER_TEAM:
            queue.appendleft(work)
            return None
        return TeamOutcome(
            team_id=work.team_id, status=GradingStatus.NOT_GRADED,
            reason=f"grading stopped its worker {attempts[work.team_id]} times ({forking.describe_exit(status)}); "
                   "grade this team alone to see why",
            autograded_notebook=None, feedback_page=None, timestamp=None, grades=(), comments=(), seconds=0.0,
            worker="")
