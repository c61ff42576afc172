"""Grading speed in wall time and CPU-seconds: stock nbgrader, serial and two processes by hand, vs `coursekit grade`.

For 1, 30 and 40 submissions (one run, one mix of submissions), on the same machine:
- stock serial: `nbgrader autograde ex2` with nbgrader's default configuration (no sandbox,
  no feedback): the reference;
- stock in parallel: the same class split in two halves, two `nbgrader autograde` processes
  started by hand at once (`--CourseDirectory.student_id_exclude=<the other half>`), the fair
  peer on 2 cores;
- `coursekit grade` as instructors run it: sandbox on, feedback, grades.csv and report included.
  The 1-submission run is done twice: first on a course version never graded before (the
  workers' course is built, once per course version), then again on a fresh course of the same
  version (the run everybody makes after the first).

Every command runs in a cpuacct cgroup of its own, so the CPU-seconds count its whole process
tree: kernels, fork server, workers. The stock serial run grades the 40 once; its numbers for
30 are read off the same run (when its 30th autograded notebook was written, plus the run's
tail after its last one; CPU from a cgroup sample taken at that moment). The mix is
round-robin, so the first 30 are the same mix as a class of 30. Targets (2 cores, 30 and 40):
wall >= 5x stock serial, >= 2.5x stock in parallel; CPU >= 2.5x stock; 1 submission <= 5 s.

Then the kit's fixed cost and marginal CPU per submission, and the floor: executing the
notebook's code cells, hidden tests included, in a fork of a process that has torch imported.

    .venv/bin/python benchmarks/bench_grading.py [--sizes 1,30,40] [--workers N] [--scheduler-comparison]
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
TARGET_WALL_VS_SERIAL = 5.0
TARGET_WALL_VS_PARALLEL = 2.5
TARGET_CPU_VS_SERIAL = 2.5
TARGET_ONE_SUBMISSION_SECONDS = 5.0
TARGET_FIXED_CPU = 3.0
SAMPLE_SECONDS = 0.05


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
    load: str = ""     # /proc/loadavg's 1-minute load at the start and the end


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def timed(commands: list[list[str]], *, name: str, cwd: Path, check: bool = True,
          samples: list[tuple[float, float]] | None = None) -> Run:
    """Run `commands` at once, each with its whole process tree in one cgroup; wall until the last ends.

    `samples`, if given, receives (seconds since the start, CPU-s so far) every SAMPLE_SECONDS.
    """
    account = CpuAccount(name)
    load = load_average()
    try:
        started = time.perf_counter()
        environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        processes = [subprocess.Popen(command, cwd=cwd, preexec_fn=account.preexec, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=environment) for command in commands]
        outputs = [None] * len(processes)
        import threading

        def collect(index: int) -> None:
            outputs[index] = processes[index].communicate()

        readers = [threading.Thread(target=collect, args=(index,)) for index in range(len(processes))]
        for reader in readers:
            reader.start()
        while any(reader.is_alive() for reader in readers):
            if samples is not None:
                cpu = account.cpu_seconds()
                if cpu is not None:
                    samples.append((time.perf_counter() - started, cpu))
            time.sleep(SAMPLE_SECONDS)
        for reader in readers:
            reader.join()
        wall = time.perf_counter() - started
        for command, process, (stdout, stderr) in zip(commands, processes, outputs):
            if check and process.returncode != 0:
                raise SystemExit(f"{' '.join(map(str, command))} failed:\n{stdout[-2000:]}\n{stderr[-3000:]}")
        time.sleep(0.2)  # a fork server told to go may still be exiting: its CPU counts too
        return Run(wall, account.cpu_seconds(), f"{load}-{load_average()}")
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
    samples: tuple[tuple[float, float], ...]  # (seconds, CPU-s so far)

    @property
    def count(self) -> int:
        return len(self.finished_at)

    def tail(self) -> float:
        return self.total.wall - self.finished_at[-1]

    def wall_for(self, count: int) -> float:
        """Wall time for the first `count` submissions: when the count-th was done, plus the run's tail."""
        return self.finished_at[count - 1] + self.tail()

    def cpu_for(self, count: int) -> float | None:
        """CPU-s for the first `count` submissions: the cgroup's count when the count-th was done, plus
        what the run spent after its last one."""
        if self.total.cpu is None:
            return None
        if count == self.count:
            return self.total.cpu
        moment = self.finished_at[count - 1]
        at_moment = next((cpu for seconds, cpu in self.samples if seconds >= moment), self.total.cpu)
        at_last = next((cpu for seconds, cpu in self.samples if seconds >= self.finished_at[-1]), self.total.cpu)
        return at_moment + (self.total.cpu - at_last)


def stock_course(work: Path, name: str, count: int) -> Path:
    course = work / name
    demo.copy_course(course_root=REPOSITORY, destination=course)
    (course / "nbgrader_config.py").write_text(STOCK_CONFIG)
    run_nbgrader(course, "generate_assignment", "ex2", "--force")  # course setup, not grading
    samples = demo.sample_notebooks(REPOSITORY)
    for number in range(count):
        target = submission_path(course, f"student{number:02d}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(samples[MIX[number % len(MIX)]])
    return course


def stock_run(work: Path, count: int, *, processes: int = 1) -> StockRun:
    """Stock `nbgrader autograde` on `count` submissions; with several processes, each grades every
    processes-th student (the others excluded), as an instructor would split a class by hand."""
    course = stock_course(work, f"stock-{processes}x{count}", count)
    students = [f"student{number:02d}" for number in range(count)]
    commands = []
    for part in range(processes):
        others = [student for number, student in enumerate(students) if number % processes != part]
        exclude = [f"--CourseDirectory.student_id_exclude={','.join(others)}"] if others else []
        commands.append([str(BIN / "nbgrader"), "autograde", "ex2", "--force", *exclude])
    started_epoch = time.time()
    samples: list[tuple[float, float]] = []
    total = timed(commands, name=f"stock-{processes}x{count}", cwd=course, samples=samples)
    finished = sorted(path.stat().st_mtime - started_epoch for path in course.glob("autograded/*/ex2/ml_ex2.ipynb"))
    if len(finished) != count:
        raise SystemExit(f"stock nbgrader ({processes} processes) graded {len(finished)} of {count} submissions")
    return StockRun(total, tuple(finished), tuple(samples))


def kit_course(work: Path, name: str) -> Path:
    """A copy of the course as an instructor has it after `make release`: the same nbgrader_config.py
    (so the same course version as every other kit run here), its own gradebook in the copy."""
    course = work / name
    course.mkdir(parents=True)
    shutil.copy(REPOSITORY / "nbgrader_config.py", course / "nbgrader_config.py")
    for folder in ("source", "release"):
        shutil.copytree(REPOSITORY / folder, course / folder)
    run_nbgrader(course, "generate_assignment", "ex2", "--force")  # course setup, not grading
    return course


def kit_run(work: Path, count: int, *, workers: int, name: str, extra: tuple[str, ...] = ()) -> Run:
    """`coursekit grade` on a fresh copy of the course, as an instructor runs it after `make release`."""
    course = kit_course(work, name)
    download = synthetic_download(work / f"{name}.zip", count)
    output = work / f"{name}-results"
    run = timed([[str(BIN / "coursekit"), "--course", str(course), "grade", str(download), "--output", str(output),
                  "--workers", str(workers), *extra]], name=name, cwd=work)
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
    parser.add_argument("--sizes", default="1,30,40", help="class sizes, comma-separated (default: 1,30,40)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-stock", action="store_true", help="time only the kit")
    parser.add_argument("--scheduler-comparison", action="store_true",
                        help="also grade the largest class through a local Dask scheduler with 2 workers")
    arguments = parser.parse_args()
    sizes = sorted({int(size) for size in arguments.sizes.split(",")} | {1})
    with tempfile.TemporaryDirectory(prefix="coursekit-bench-") as folder:
        work = Path(folder)
        # A cache of its own: the first run below builds the workers' course, as for a new course version.
        os.environ["COURSEKIT_CACHE"] = str(work / "cache")
        print(f"load average at the start: {Path('/proc/loadavg').read_text().strip()}", flush=True)
        floor_cpu, floor_wall, floor_cells = floor()
        cold = kit_run(work, 1, workers=arguments.workers, name="kit-1-cold")
        kit = {size: kit_run(work, size, workers=arguments.workers, name=f"kit-{size}") for size in sizes}
        serial = parallel = None
        if not arguments.skip_stock:
            serial = stock_run(work, sizes[-1])
            parallel = {size: stock_run(work, size, processes=2) for size in sizes if size > 1}
        print(f"load average at the end: {Path('/proc/loadavg').read_text().strip()}")
        print()
        print(f"coursekit grade vs stock nbgrader autograde, {os.cpu_count()} cores, {arguments.workers} workers; "
              "kit: sandbox on, feedback and report included")
        print(f"mix of submissions, round-robin: {', '.join(MIX)}")
        print(table(sizes, kit, serial, parallel))
        if serial:
            print(f"  (stock serial ran once on {serial.count}; smaller classes: when its n-th notebook was written, "
                  f"plus its {serial.tail():.1f} s after the last. Stock in parallel with 1 submission is stock serial.)")
        print(f"  (load: the 1-minute load average at the start and end of each run; kit 1 submission on a new "
              f"course version: {cold.wall:.1f} s, {cpu_text(cold.cpu)}, load {cold.load})")
        print(f"targets: wall >= {TARGET_WALL_VS_SERIAL:g}x stock serial and >= {TARGET_WALL_VS_PARALLEL:g}x stock in "
              f"parallel, CPU >= {TARGET_CPU_VS_SERIAL:g}x stock, 1 submission <= {TARGET_ONE_SUBMISSION_SECONDS:g} s")
        classes = [size for size in sizes if size > 1]
        low, high = (classes[0], classes[-1]) if classes else (1, 1)
        if high > low and kit[high].cpu is not None:
            marginal = (kit[high].cpu - kit[low].cpu) / (high - low)
            print(f"kit marginal CPU per submission ({low} -> {high}): {marginal:.2f} CPU-s; fixed CPU per run "
                  f"(intercept): {kit[high].cpu - marginal * high:.1f} CPU-s (target <= {TARGET_FIXED_CPU:g}); "
                  f"a run with 1 submission {cpu_text(kit[1].cpu)}")
            slope = (kit[high].wall - kit[low].wall) / (high - low)
            print(f"kit marginal wall per submission ({arguments.workers} workers): {slope:.2f} s; intercept "
                  f"{kit[high].wall - slope * high:.1f} s")
        print(f"floor: the master notebook's {floor_cells} code cells, hidden tests included, in a fork of a process "
              f"with torch imported: {floor_cpu:.2f} CPU-s, {floor_wall:.2f} s wall (median)")
        if arguments.scheduler_comparison:
            scheduler_comparison(work, sizes[-1], local_wall=kit[sizes[-1]].wall)


def table(sizes: list[int], kit: dict[int, Run], serial: StockRun | None,
          parallel: dict[int, StockRun] | None) -> str:
    header = ("| submissions | stock serial: wall, CPU | stock 2 processes: wall, CPU | coursekit grade: wall, CPU "
              "| kit vs serial: wall, CPU | kit vs 2 processes: wall | load |")
    lines = [header, "|---|---|---|---|---|---|---|"]
    for size in sizes:
        serial_wall = serial.wall_for(size) if serial else None
        serial_cpu = serial.cpu_for(size) if serial else None
        two = (parallel or {}).get(size)
        two_wall, two_cpu = (two.total.wall, two.total.cpu) if two else (None, None)
        loads = [kit[size].load] + ([serial.total.load] if serial else []) + ([two.total.load] if two else [])
        lines.append(
            f"| {size} | {fmt(serial_wall, 's')}, {cpu_text(serial_cpu)} | "
            f"{fmt(two_wall, 's')}, {cpu_text(two_cpu)} | {fmt(kit[size].wall, 's')}, {cpu_text(kit[size].cpu)} | "
            f"{ratio(serial_wall, kit[size].wall)}, {ratio(serial_cpu, kit[size].cpu)} | {ratio(two_wall, kit[size].wall)} "
            f"| {' / '.join(loads)} |")
    return "\n".join(lines)


def cpu_text(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} CPU-s"


def ratio(stock: float | None, kit: float | None) -> str:
    return "-" if stock is None or not kit else f"{stock / kit:.2f}x"


def fmt(value: float | None, unit: str, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{' ' if unit == 's' else ''}{unit}"


if __name__ == "__main__":
    main()
