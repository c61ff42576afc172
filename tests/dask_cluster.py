"""A real Dask cluster on 127.0.0.1 for tests: `dask scheduler` and two `dask worker` processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_SECONDS = 60


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)

    def kill_worker(self, number: int) -> None:
        """SIGKILL a worker and everything it started, as if its machine went away."""
        worker = self.workers[number]
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def dask_command() -> str:
    return str(Path(sys.executable).parent / "dask")


def start_cluster(folder: Path, *, workers: int = 2) -> DaskCluster:
    environment = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    log = open(folder / "scheduler.log", "w")
    scheduler = subprocess.Popen(
        [dask_command(), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)],
        stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not scheduler_file.exists():
        if scheduler.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"dask scheduler did not start: {(folder / 'scheduler.log').read_text()[-2000:]}")
        time.sleep(0.1)
    time.sleep(0.2)  # the file is written in one go, but give the writer a moment
    address = json.loads(scheduler_file.read_text())["address"]
    cluster = DaskCluster(address=address, scheduler=scheduler)
    for number in range(workers):
        log = open(folder / f"worker-{number}.log", "w")
        # --no-nanny: killing the worker is losing it, not a restart by its nanny.
        cluster.workers.append(subprocess.Popen(
            [dask_command(), "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
             "--name", f"worker-{number}", "--local-directory", str(folder / f"worker-{number}")],
            stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True))
    wait_for_workers(address, workers)
    return cluster


def wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout=START_TIMEOUT_SECONDS) as client:
        client.wait_for_workers(count, timeout=START_TIMEOUT_SECONDS)
