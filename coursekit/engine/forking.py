"""Forked processes for grading: nbgrader commands and parallel workers.

A fresh nbgrader process spends ~3 s importing (jsonschema's format checkers
compile grammars at import); a fork of a process that has nbgrader imported
starts at once. A fork behaves like a separate `nbgrader` run: its own
working folder, its own output, its own exit code.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Callable

SANDBOX_UNAVAILABLE_EXIT = 3
POLL_SECONDS = 0.5


def start_fresh_in_fork() -> None:
    """What a fork must not share with its parent."""
    from jupyter_core.utils import ensure_event_loop

    # jupyter_core caches an event loop per process; the fork's copy would share
    # its epoll descriptor with the parent's and mix both processes' events.
    ensure_event_loop().close()


def die_with_parent() -> None:
    """Have the kernel kill this process when its parent dies (a worker killed mid-run leaves nothing behind)."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def exit_fork(code: int) -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)  # never return into the parent's code, never run the parent's exit handlers


def run_nbgrader_in_fork(course_root: Path, arguments: list[str], path_variable: str) -> subprocess.CompletedProcess:
    """`nbgrader <arguments>` in `course_root`, in a fork of this (single-threaded) process."""
    from nbgrader.apps.nbgraderapp import NbGraderApp

    from coursekit.sandbox.fork_server import ForkServer
    from coursekit.sandbox.kernel_manager import SandboxUnavailable

    output_read, output_write = os.pipe()
    errors_read, errors_write = os.pipe()

    def run() -> int:
        os.close(output_read)
        os.close(errors_read)
        os.dup2(output_write, 1)
        os.dup2(errors_write, 2)
        # Whatever sys.stdout was (a test runner's capture, say), the command's output goes to the pipes.
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        try:
            os.chdir(course_root)
            os.environ["PATH"] = path_variable
            NbGraderApp.launch_instance(argv=arguments)
            return 0
        except SandboxUnavailable as stop:
            print(stop.code, file=sys.stderr)
            return SANDBOX_UNAVAILABLE_EXIT
        except SystemExit as stop:
            return stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        except BaseException:
            traceback.print_exc()
            return 1
        finally:
            ForkServer.stop_if_started_here()

    child = fork(run)
    os.close(output_write)
    os.close(errors_write)
    status, output, errors = collect_output(child, output_read, errors_read)
    return subprocess.CompletedProcess(["nbgrader", *arguments], os.waitstatus_to_exitcode(status),
                                       output.decode(errors="replace"), errors.decode(errors="replace"))


def collect_output(child: int, *pipes: int) -> tuple[int, bytes, bytes]:
    """Read the child's pipes while it runs; its exit status and what it wrote."""
    received = {pipe: bytearray() for pipe in pipes}
    open_pipes = list(pipes)
    status = None
    while open_pipes:
        ready, _, _ = select.select(open_pipes, [], [], POLL_SECONDS)
        for pipe in ready:
            data = os.read(pipe, 65536)
            if data:
                received[pipe] += data
            else:
                open_pipes.remove(pipe)
        if status is None:
            finished, status_now = os.waitpid(child, os.WNOHANG)
            status = status_now if finished else None
        elif not ready:
            break  # the command is done; something it left behind still holds a pipe
    for pipe in pipes:
        os.close(pipe)
    if status is None:
        _, status = os.waitpid(child, 0)
    return status, bytes(received[pipes[0]]), bytes(received[pipes[1]])


def fork(body: Callable[[], int]) -> int:
    """Run body() in a fresh fork that leaves with body's exit code (1 if it raised); the fork's pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            die_with_parent()  # a worker killed mid-run takes its nbgrader command with it
            start_fresh_in_fork()
            code = body()
        finally:
            exit_fork(code)
    return child


def fork_worker(function: Callable[[Path, list[str]], None], folder: Path, students: list[str]) -> int:
    """Run function(folder, students) in a fork; a failure leaves its traceback in folder/worker-error.txt."""
    def run() -> int:
        try:
            function(folder, students)
            return 0
        except BaseException:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "worker-error.txt").write_text(traceback.format_exc())
            return 1

    return fork(run)


def worker_failure(folder: Path, status: int) -> str | None:
    """Why the worker for `folder` failed, or None when it did not."""
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return None
    error_file = folder / "worker-error.txt"
    if error_file.exists():
        lines = error_file.read_text().strip().splitlines()
        return lines[-1] if lines else "the worker failed"
    return describe_exit(status)


def describe_exit(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"the worker was killed by signal {-code}" if code < 0 else f"the worker exited with code {code}"
