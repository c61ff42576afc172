"""Grading speed: stock serial `nbgrader autograde` versus `coursekit grade`, on the same N submissions.

Prints both times and their ratio (target: at least 1.8x faster on 2 cores with the
sandbox on), the per-submission cost against starting one Python process that imports
torch (target: within 1.5x), and what the sandbox costs: serial grading of a few
submissions with kernels forked from the fork server, with bubblewrap starting each
kernel, and with no sandbox at all.

    .venv/bin/python benchmarks/bench_grading.py [--submissions 40] [--workers N] [--comparison-submissions 10]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from coursekit import demo  # noqa: E402
from coursekit.engine.grading import run_nbgrader, submission_path  # noqa: E402
from coursekit.engine.workflow import grade_download  # noqa: E402

MIX = ["all_correct", "partly_right", "half_done", "attention_mixups", "blank"]
STOCK_CONFIG = '''c = get_config()
import os
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "ml-ex2"
c.Execute.timeout = 30
'''


def torch_import_seconds(repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def synthetic_download(path: Path, count: int) -> Path:
    samples = demo.sample_notebooks(REPOSITORY)
    with zipfile.ZipFile(path, "w") as download:
        for number in range(count):
            sample = MIX[number % len(MIX)]
            download.writestr(f"Gruppe {number:02d}/student{number:02d}_ml_ex2.ipynb", samples[sample])
    return path


def stock_seconds(work: Path, count: int) -> float:
    course = work / "stock"
    demo.copy_course(course_root=REPOSITORY, destination=course)
    (course / "nbgrader_config.py").write_text(STOCK_CONFIG)
    run_nbgrader(course, "generate_assignment", "ex2", "--force")
    samples = demo.sample_notebooks(REPOSITORY)
    for number in range(count):
        target = submission_path(course, f"student{number:02d}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(samples[MIX[number % len(MIX)]])
    started = time.perf_counter()
    run_nbgrader(course, "autograde", "ex2", "--force")
    return time.perf_counter() - started


SANDBOX_SETTINGS = {
    "fork-server": "",
    "bubblewrap": "\nc.SandboxedKernelManager.fork_server = False\n",
    "none": '\nc.SandboxedKernelManager.fork_server = False\nc.SandboxedKernelManager.bwrap_path = "/nonexistent/bwrap"\n'
            "c.SandboxedKernelManager.allow_grading_without_sandbox = True\n",
}


def kit_seconds(work: Path, name: str, download: Path, workers: int, *, sandbox: str = "fork-server") -> float:
    course = work / name
    demo.copy_course(course_root=REPOSITORY, destination=course)
    with open(course / "nbgrader_config.py", "a") as config:
        config.write(SANDBOX_SETTINGS[sandbox])
    run_nbgrader(course, "generate_assignment", "ex2", "--force")  # not part of grading
    started = time.perf_counter()
    grade_download(download=download, course_root=course, output_folder=work / f"{name}-results", workers=workers)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=40)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--comparison-submissions", type=int, default=10,
                        help="submissions graded serially per sandbox mode (0: skip the comparison)")
    arguments = parser.parse_args()
    count = arguments.submissions
    with tempfile.TemporaryDirectory(prefix="coursekit-bench-") as folder:
        work = Path(folder)
        download = synthetic_download(work / "download.zip", count)
        torch_import = torch_import_seconds()
        stock = stock_seconds(work, count)
        kit = kit_seconds(work, "kit", download, arguments.workers)
        print(f"submissions:                          {count} on {os.cpu_count()} cores, {arguments.workers} workers")
        print(f"python -c 'import torch' (median):     {torch_import:.2f} s")
        print(f"stock nbgrader autograde, serial:     {stock:.1f} s  ({stock / count:.2f} s per submission)")
        print(f"coursekit grade, sandboxed, parallel: {kit:.1f} s  ({kit / count:.2f} s per submission)")
        print(f"speed-up over stock:                  {stock / kit:.2f}x  (target >= 1.8x)")
        print(f"per-submission cost / torch import:   {kit / count / torch_import:.2f}x  (target <= 1.5x)")
        few = arguments.comparison_submissions
        if few:
            small = synthetic_download(work / "small.zip", few)
            for mode in SANDBOX_SETTINGS:
                seconds = kit_seconds(work, f"serial-{mode}", small, 1, sandbox=mode)
                print(f"serial, sandbox {mode + ':':<13}        {seconds / few:.2f} s per submission ({few} submissions)")


if __name__ == "__main__":
    main()
