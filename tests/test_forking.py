"""Forked nbgrader commands and workers behave like separate processes."""
import os
import signal
from pathlib import Path

from coursekit.engine import forking
from coursekit.engine.grading import tool_environment

REPOSITORY = Path(__file__).resolve().parent.parent


def test_an_nbgrader_command_in_a_fork_returns_its_output_and_exit_code():
    run = forking.run_nbgrader_in_fork(REPOSITORY, ["--version"], tool_environment()["PATH"])
    assert run.returncode == 0
    assert "nbgrader version 0.9.6" in run.stdout


def test_a_failing_nbgrader_command_in_a_fork_reports_its_error(tmp_path):
    run = forking.run_nbgrader_in_fork(tmp_path, ["autograde", "no-such-assignment"], tool_environment()["PATH"])
    assert run.returncode == 1
    assert "No notebooks were matched" in run.stderr


def failing_work(folder: Path, students: list[str]) -> None:
    raise ValueError(f"cannot grade {students[0]}")


def killed_work(folder: Path, students: list[str]) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def finished_work(folder: Path, students: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "done").write_text(",".join(students))


def test_a_worker_reports_its_failure_and_a_killed_worker_is_named(tmp_path):
    failing = tmp_path / "failing"
    status = os.waitpid(forking.fork_worker(failing_work, failing, ["s1"]), 0)[1]
    assert forking.worker_failure(failing, status) == "ValueError: cannot grade s1"
    killed = tmp_path / "killed"
    status = os.waitpid(forking.fork_worker(killed_work, killed, ["s1"]), 0)[1]
    assert forking.worker_failure(killed, status) == "the worker was killed by signal 9"
    finished = tmp_path / "finished"
    status = os.waitpid(forking.fork_worker(finished_work, finished, ["s1", "s2"]), 0)[1]
    assert forking.worker_failure(finished, status) is None
    assert (finished / "done").read_text() == "s1,s2"
