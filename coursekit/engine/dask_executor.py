"""Grading on an existing Dask distributed cluster (`coursekit grade ... --scheduler tcp://HOST:PORT`).

Each team is one Dask task whose input and output are data (TeamWork in,
TeamOutcome out), so workers on other machines need only the kit installed,
no shared filesystem. On each Dask worker process the task hands the team to
that process's grading service: a `python -m coursekit.engine.worker`
subprocess that keeps its course and its warm fork server for the whole run,
exactly as a local worker does (a Dask worker is threaded; nbgrader's forks
need a single-threaded parent). When a worker dies mid-run the scheduler
gives its tasks to another worker; every team's result is merged once.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection

from coursekit.engine.bundle import CourseBundle
from coursekit.engine.unit import TeamOutcome, TeamWork
from coursekit.errors import CourseKitError

CONNECT_TIMEOUT_SECONDS = 30
# `python -m coursekit.engine.worker`, with jsonschema's IRI grammar deferred first as the CLI does.
SERVICE = ("from coursekit.lazy_imports import defer_iri_grammar; defer_iri_grammar(); "
           "from coursekit.engine.worker import main; main()")


class GradingService:
    """The grading subprocess of one Dask worker process (started at its first team)."""

    _lock = threading.Lock()
    _running: "GradingService | None" = None

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", SERVICE], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.requests = Connection(os.dup(self.process.stdin.fileno()))
        self.replies = Connection(os.dup(self.process.stdout.fileno()))

    @classmethod
    def grade(cls, bundle: CourseBundle, work: TeamWork) -> TeamOutcome:
        with cls._lock:  # one team at a time per service; more threads per worker would only queue here
            if cls._running is None or cls._running.process.poll() is not None:
                cls._running = cls()
            service = cls._running
            try:
                service.requests.send(("grade", bundle, work))
                reply = service.replies.recv()
            except (EOFError, OSError):
                cls._running = None
                raise RuntimeError(f"the grading service of this worker died while grading {work.team_id}")
        if reply[0] == "error":
            raise CourseKitError(reply[1])
        return reply[1]


def grade_on_dask_worker(bundle: CourseBundle, work: TeamWork) -> TeamOutcome:
    return GradingService.grade(bundle, work)


def refuse_fast(address: str) -> None:
    """Raise ConnectionRefusedError at once when nothing listens at a tcp:// address (Dask's client would
    retry for CONNECT_TIMEOUT_SECONDS); other addresses and other outcomes are left to Dask."""
    match = re.fullmatch(r"tcp://\[?([^\]/]+?)\]?:(\d+)/?", address)
    if match is None:
        return
    try:
        socket.create_connection((match[1], int(match[2])), timeout=CONNECT_TIMEOUT_SECONDS).close()
    except ConnectionRefusedError:
        raise
    except OSError:
        return  # unreachable, unresolvable, slow: Dask says so in its own time


class DaskExecutor:
    def __init__(self, *, address: str) -> None:
        self.address = address

    def run(self, *, bundle: CourseBundle, works: Iterable[TeamWork],
            on_outcome: Callable[[TeamOutcome], None]) -> None:
        try:
            from distributed import Client, as_completed
        except ImportError:
            raise CourseKitError("grading on a cluster needs Dask: pip install 'distributed'.") from None
        try:
            refuse_fast(self.address)
            client = Client(self.address, timeout=CONNECT_TIMEOUT_SECONDS)
        except (OSError, TimeoutError) as error:
            raise CourseKitError(f"cannot reach the Dask scheduler at {self.address} ({type(error).__name__}); "
                                 "check the address and that `dask scheduler` runs there.") from None
        with client:
            if not client.scheduler_info().get("workers"):
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_SECONDS)
            run_id = uuid.uuid4().hex[:8]
            bundle_future = client.scatter(bundle, broadcast=True)
            futures = [client.submit(grade_on_dask_worker, bundle_future, work, key=f"grade-{work.team_id}-{run_id}",
                                     pure=False) for work in works]
            try:
                for future in as_completed(futures):
                    error = future.exception()
                    if isinstance(error, CourseKitError):
                        raise CourseKitError(str(error))
                    if error is not None:
                        raise CourseKitError(f"grading failed on the cluster: {type(error).__name__}: {error}")
                    on_outcome(future.result())
            finally:
                client.cancel(futures)
