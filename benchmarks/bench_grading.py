"""Grading speed: stock serial `nbgrader autograde` versus `coursekit grade`, for 30 and 40 submissions.

For each class size it prints the wall time of stock serial nbgrader, of the kit's
`coursekit grade` command as instructors run it (sandbox on, feedback and report
included), their ratio (target: at least 5x), and the CPU time both used, taken from
a cgroup made for each run (so sandboxed kernels count). Then the kit's fixed cost
per run (a run with one submission, and the intercept of the 30 and 40 walls), its
marginal CPU per submission (target: at most 0.8 CPU-s), and the floor: executing the
notebook's code cells, hidden tests included, in a fork of a process that has torch
imported.

Stock nbgrader runs once, on the larger class; the time it had graded the first 30
submissions at is read from its autograded notebooks' modification times (each is
written when its submission is done), plus the time it spent after its last
submission. The mix is round-robin, so the first 30 are the same mix as a class of 30.

    .venv/bin/python benchmarks/bench_grading.py [--sizes 30,40] [--workers N] [--scheduler-comparison]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPOSITORY))

from coursekit import demo  # noqa: E402
from coursekit.engine.grading import run_nbgrader, submission_path  # noqa: E402

# Full marks, partly right, half done, wrong (mixed-up answers), blank.
MIX = ["all_correct", "partly_right", "half_done", "attention_mixups", "blank"]
STOCK_CONFIG = '''c = get_config()
import os
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "ml-ex2"
c.Execute.timeout = 30
'''
TARGET_RATIO = 5.0
TARGET_FIXED_SECONDS = 3.0
TARGET_MARGINAL_CPU = 0.8


# ---------------------------------------------------------------- CPU accounting

class CpuAccount:
    """A cgroup (v1 cpuacct or v2) that a command's whole process tree runs in, for its CPU time.

    The sandbox moves each kernel into a memory cgroup; on cgroup v1 that is another
    hierarchy, on v2 it is a child of the grading process's cgroup: either way the
    kernels' CPU counts here.
    """

    def __init__(self, name: str) -> None:
        self.folder, self.version = make_cpu_cgroup(name)

    def preexec(self) -> None:
        if self.folder:
            with open(os.path.join(self.folder, "cgroup.procs"), "w") as procs:
                procs.write("0")

    def cpu_seconds(self) -> float | None:
        if not self.folder:
            return None
        if self.version == 1:
            with open(os.path.join(self.folder, "cpuacct.usage")) as usage:
                return int(usage.read()) / 1e9
        with open(os.path.join(self.folder, "cpu.stat")) as stat:
            fields = dict(line.split() for line in stat)
        return int(fields["usage_usec"]) / 1e6

    def remove(self) -> None:
        if not self.folder:
            return
        for _ in range(200):
            # Whatever is left (a fork server on its way out) goes first.
            for child in sorted(Path(self.folder).glob("*/"), reverse=True):
                with contextlib.suppress(OSError):
                    child.rmdir()
            try:
                os.rmdir(self.folder)
                return
            except OSError:
                for pid in Path(self.folder, "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                time.sleep(0.05)


def make_cpu_cgroup(name: str) -> tuple[str | None, int]:
    if os.geteuid() != 0:
        return None, 0
    mounts = [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    own = dict(line.split(":", 2)[1:] for line in Path("/proc/self/cgroup").read_text().splitlines())
    for fields in mounts:
        after = fields[fields.index("-") + 1:]
        if after[0] == "cgroup" and "cpuacct" in after[2].split(","):
            controllers = next(key for key in own if "cpuacct" in key.split(","))
            folder = os.path.normpath(f"{fields[4]}/{own[controllers]}/coursekit-bench-{os.getpid()}-{name}")
            os.makedirs(folder, exist_ok=True)
            return folder, 1
    for fields in mounts:
        after = fields[fields.index("-") + 1:]
        if after[0] == "cgroup2" and "" in own:
            folder = os.path.normpath(f"{fields[4]}/{own['']}/coursekit-bench-{os.getpid()}-{name}")
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError:
                return None, 0
            return folder, 2
    return None, 0


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float | None  # CPU-s of the whole process tree, None without a cgroup


def timed(command: list[str], *, name: str, cwd: Path, check: bool = True) -> Run:
    account = CpuAccount(name)
    try:
        started = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, preexec_fn=account.preexec, capture_output=True, text=True,
                                env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
        wall = time.perf_counter() - started
        if check and result.returncode != 0:
            raise SystemExit(f"{' '.join(map(str, command))} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        time.sleep(0.2)  # a fork server told to go may still be exiting: its CPU counts too
        return Run(wall, account.cpu_seconds())
    finally:
        account.remove()


# ---------------------------------------------------------------- the classes

def synthetic_download(path: Path, count: int) -> Path:
    samples = demo.sample_notebooks(REPOSITORY)
    with zipfile.ZipFile(path, "w") as download:
        for number in range(count):
            sample = MIX[number % len(MIX)]
            download.writestr(f"Gruppe {number:02d}/student{number:02d}_ml_ex2.ipynb", samples[sample])
    return path


@dataclass(frozen=True)
class StockRun:
    total: Run
    finished_at: tuple[float, ...]  # seconds after the start at which each submission's notebook was written
    count: int

    def wall_for(self, count: int) -> float:
        """Wall time for the first `count` submissions: when the count-th was done, plus the run's tail."""
        tail = self.total.wall - self.finished_at[-1]
        return self.finished_at[count - 1] + tail


def stock_run(work: Path, count: int) -> StockRun:
    course = work / "stock"
    demo.copy_course(course_root=REPOSITORY, destination=course)
    (course / "nbgrader_config.py").write_text(STOCK_CONFIG)
    run_nbgrader(course, "generate_assignment", "ex2", "--force")  # course setup, not grading
    samples = demo.sample_notebooks(REPOSITORY)
    for number in range(count):
        target = submission_path(course, f"student{number:02d}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(samples[MIX[number % len(MIX)]])
    started_epoch = time.time()
    total = timed([str(BIN / "nbgrader"), "autograde", "ex2", "--force"], name="stock", cwd=course)
    finished = sorted(path.stat().st_mtime - started_epoch
                      for path in course.glob("autograded/*/ex2/ml_ex2.ipynb"))
    if len(finished) != count:
        raise SystemExit(f"stock nbgrader graded {len(finished)} of {count} submissions")
    return StockRun(total, tuple(finished), count)


def kit_run(work: Path, count: int, *, workers: int, name: str, extra: tuple[str, ...] = ()) -> Run:
    """`coursekit grade` on a fresh copy of the course, as an instructor runs it after `make release`."""
    course = work / name
    demo.copy_course(course_root=REPOSITORY, destination=course)
    run_nbgrader(course, "generate_assignment", "ex2", "--force")  # course setup, not grading
    download = synthetic_download(work / f"{name}.zip", count)
    output = work / f"{name}-results"
    run = timed([str(BIN / "coursekit"), "--course", str(course), "grade", str(download), "--output", str(output),
                 "--workers", str(workers), *extra], name=name, cwd=work)
    rows = (output / "grades.csv").read_text().strip().splitlines()
    feedback = list((output / "feedback").glob("*.html"))
    if len(rows) != count + 1 or len(feedback) != count or not (output / "report.html").exists():
        raise SystemExit(f"{name}: {len(rows) - 1} grade rows and {len(feedback)} feedback files for {count} submissions")
    return run


# ---------------------------------------------------------------- the floor

FLOOR_SCRIPT = textwrap.dedent('''
    import json, os, resource, sys, time
    sys.path.insert(0, sys.argv[1])
    from coursekit.recorder.kernel import preimport_protected_modules
    preimport_protected_modules()
    import IPython.display  # the hidden tests publish their records through it
    notebook = json.load(open(sys.argv[2]))
    cells = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
    results = []
    for _ in range(int(sys.argv[3])):
        started = time.perf_counter()
        child = os.fork()
        if child == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            namespace = {"__name__": "__main__"}
            for source in cells:
                try:
                    exec(compile(source, "<cell>", "exec"), namespace)
                except BaseException:
                    pass
            os._exit(0)
        _, status, usage = os.wait4(child, 0)
        results.append((time.perf_counter() - started, usage.ru_utime + usage.ru_stime))
    print(json.dumps(results))
''')


def floor(repeats: int = 7) -> tuple[float, float, int]:
    """Median (CPU-s, wall s) of running the master notebook's code cells (hidden tests included) in a fork."""
    import json

    master = REPOSITORY / "source" / "ex2" / "ml_ex2.ipynb"
    cells = sum(1 for cell in json.loads(master.read_text())["cells"] if cell["cell_type"] == "code")
    result = subprocess.run([sys.executable, "-c", FLOOR_SCRIPT, str(REPOSITORY), str(master), str(repeats)],
                            capture_output=True, text=True, check=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    return statistics.median(cpu for _, cpu in runs), statistics.median(wall for wall, _ in runs), cells


# ---------------------------------------------------------------- Dask (wired by the lead)

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scheduler_comparison(work: Path, count: int, *, local_wall: float) -> None:
    """SCHEDULER COMPARISON: the same grading through `coursekit grade --scheduler tcp://HOST:PORT`.

    Starts `dask scheduler` and two `dask worker --nthreads 1` on 127.0.0.1, times
    `coursekit grade --scheduler ...` on the same class, and prints local vs Dask wall.
    Needs the `--scheduler` option of `coursekit grade` and dask/distributed in the venv.
    """
    dask = BIN / "dask"
    if not dask.exists():
        print("scheduler comparison: skipped, `dask` is not installed in this venv")
        return
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = work / "dask-logs"
    logs.mkdir(exist_ok=True)
    processes = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                   "--no-dashboard"], stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT)]
    try:
        wait_for_port(port, seconds=60)
        for number in range(2):
            processes.append(subprocess.Popen(
                [str(dask), "worker", address, "--nthreads", "1", "--no-dashboard", "--name", f"bench-{number}"],
                stdout=open(logs / f"worker-{number}.log", "w"), stderr=subprocess.STDOUT))
        wait_for_workers(address, count=2, seconds=120)
        dask_run = kit_run(work, count, workers=2, name=f"dask-{count}", extra=("--scheduler", address))
        print(f"scheduler comparison, {count} submissions: local {local_wall:.1f} s, Dask (2 workers) "
              f"{dask_run.wall:.1f} s, Dask/local {dask_run.wall / local_wall:.2f}")
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_for_port(port: int, *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"dask scheduler did not listen on port {port}")


def wait_for_workers(address: str, *, count: int, seconds: float) -> None:
    code = f"from distributed import Client\nwith Client({address!r}, timeout={seconds}) as c: c.wait_for_workers({count}, timeout={seconds})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=seconds + 30)


# ---------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="30,40", help="class sizes, comma-separated (default: 30,40)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-stock", action="store_true", help="time only the kit")
    parser.add_argument("--scheduler-comparison", action="store_true",
                        help="also grade the largest class through a local Dask scheduler with 2 workers")
    arguments = parser.parse_args()
    sizes = sorted(int(size) for size in arguments.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="coursekit-bench-") as folder:
        work = Path(folder)
        floor_cpu, floor_wall, floor_cells = floor()
        one = kit_run(work, 1, workers=arguments.workers, name="kit-1")
        kit = {size: kit_run(work, size, workers=arguments.workers, name=f"kit-{size}") for size in sizes}
        stock = None if arguments.skip_stock else stock_run(work, sizes[-1])

        print(f"coursekit grade vs stock serial nbgrader autograde, {os.cpu_count()} cores, "
              f"{arguments.workers} workers, sandbox on, feedback and report included")
        print(f"mix of submissions, round-robin: {', '.join(MIX)}")
        header = f"{'submissions':>11}  {'stock wall':>10}  {'kit wall':>8}  {'ratio':>6}  {'stock CPU':>9}  {'kit CPU':>8}"
        print(header)
        for size in sizes:
            stock_wall = stock.wall_for(size) if stock else None
            stock_cpu = stock.total.cpu if stock and size == stock.count else None
            print(f"{size:>11}  {fmt(stock_wall, 's'):>10}  {fmt(kit[size].wall, 's'):>8}  "
                  f"{fmt(stock_wall / kit[size].wall if stock_wall else None, 'x', 2):>6}  "
                  f"{fmt(stock_cpu, 's'):>9}  {fmt(kit[size].cpu, 's'):>8}")
        if stock:
            print(f"  (stock ran once on {stock.count}; smaller classes: the time its n-th notebook was written "
                  f"plus its {stock.total.wall - stock.finished_at[-1]:.1f} s after the last)")
        low, high = sizes[0], sizes[-1]
        if high > low:
            slope = (kit[high].wall - kit[low].wall) / (high - low)
            print(f"kit fixed cost per run: {one.wall:.1f} s wall for 1 submission; intercept of the "
                  f"{low}/{high} walls {kit[low].wall - slope * low:.1f} s (target <= {TARGET_FIXED_SECONDS:g} s)")
            print(f"kit marginal wall per submission ({arguments.workers} workers): {slope:.2f} s")
            if kit[high].cpu is not None:
                marginal = (kit[high].cpu - kit[low].cpu) / (high - low)
                print(f"kit marginal CPU per submission (cgroup, {low} -> {high}): {marginal:.2f} CPU-s "
                      f"(target <= {TARGET_MARGINAL_CPU:g}); all-in {kit[high].cpu / high:.2f} CPU-s per submission "
                      f"at {high}; a run with 1 submission {one.cpu:.1f} CPU-s")
        print(f"floor: the master notebook's {floor_cells} code cells, hidden tests included, in a fork of a process "
              f"with torch imported: {floor_cpu:.2f} CPU-s, {floor_wall:.2f} s wall (median)")
        if arguments.scheduler_comparison:
            scheduler_comparison(work, high, local_wall=kit[high].wall)


def fmt(value: float | None, unit: str, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{' ' if unit == 's' else ''}{unit}"


if __name__ == "__main__":
    main()
