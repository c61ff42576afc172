"""Kernel start time and the master notebook's run time in the sandbox, fork server and bubblewrap.

    python benchmarks/bench_kernel_start.py [--repeat 8]

Start time is from NotebookClient.setup_kernel until the kernel answered
kernel_info; the notebook time is the whole source notebook executed in the
started kernel; clean-up is the kernel's shutdown and the sandbox's removal.
Medians of --repeat runs (the first run of each path, which starts the fork
server, is left out).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_core.utils import run_sync
from nbclient import NotebookClient

from coursekit.sandbox.kernel_manager import SandboxedKernelManager

MASTER = Path(__file__).resolve().parent.parent / "source" / "ex2" / "ml_ex2.ipynb"


def one_run(*, fork_server: bool, notebook_path: Path | None) -> tuple[float, float, float]:
    notebook = (nbformat.read(notebook_path, as_version=4) if notebook_path
                else nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]))
    manager = SandboxedKernelManager(kernel_name="python3", fork_server=fork_server)
    client = NotebookClient(notebook, km=manager, timeout=120, allow_errors=True)
    started = time.monotonic()
    with client.setup_kernel(cwd=tempfile.mkdtemp(prefix="coursekit-bench-")):
        ready = time.monotonic()
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        ran = time.monotonic()
    if manager.has_kernel:
        run_sync(manager.shutdown_kernel)(now=True)
    getattr(manager, "release_sandbox", lambda: None)()
    return ready - started, ran - ready, time.monotonic() - ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=8)
    arguments = parser.parse_args()
    for fork_server in (True, False):
        label = "fork server" if fork_server else "bubblewrap "
        one_run(fork_server=fork_server, notebook_path=None)  # warm-up: starts the fork server
        for name, path in (("empty notebook", None), ("master notebook", MASTER)):
            runs = [one_run(fork_server=fork_server, notebook_path=path) for _ in range(arguments.repeat)]
            start, run, cleanup = (statistics.median(column) for column in zip(*runs))
            print(f"{label} {name:16} start {start:5.2f} s  run {run:5.2f} s  clean-up {cleanup:4.2f} s"
                  f"  (median of {len(runs)})", flush=True)


if __name__ == "__main__":
    main()
