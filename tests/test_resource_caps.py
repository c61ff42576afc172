"""Resources a sandboxed kernel cannot exceed: memory, disk, output, system calls, and what the mount table shows.

Each attack runs in the real sandboxed kernel (fork server and bubblewrap),
and each test asserts that the attack fails AND that the grading process
stays bounded. The honest master notebook runs clean in the same sandbox.
"""
import ast
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from coursekit.sandbox import cgroups
from coursekit.sandbox import seccomp
from coursekit.sandbox.kernel_client import CELL_OUTPUT_LIMIT_BYTES
from coursekit.sandbox.kernel_manager import SandboxedKernelManager
from conftest import MASTER_PATH, REPOSITORY

MIB = 1024 * 1024
PATHS = pytest.mark.parametrize("fork_server", [True, False], ids=["fork-server", "bubblewrap"])


@pytest.fixture(autouse=True)
def needs_a_sandbox(request):
    fork_server = request.node.callspec.params.get("fork_server") if hasattr(request.node, "callspec") else True
    if os.geteuid() != 0:
        pytest.skip("the caps under test need root (cgroups, tmpfs home, fork server)")
    if not fork_server and shutil.which("bwrap") is None:
        pytest.skip("needs bubblewrap")


def execute(notebook, *, fork_server: bool, cwd: Path, timeout: int = 60, allow_errors: bool = True,
            **settings) -> bool:
    """Run the notebook in a sandboxed kernel and clean the sandbox up; True when the kernel died."""
    manager = SandboxedKernelManager(kernel_name="python3", fork_server=fork_server, **settings)
    try:
        NotebookClient(notebook, km=manager, timeout=timeout, allow_errors=allow_errors).execute(cwd=str(cwd))
    except DeadKernelError:
        return True
    finally:
        if manager.has_kernel:  # nbclient leaves a kernel it was handed running
            run_sync(manager.shutdown_kernel)(now=True)
        manager.release_sandbox()
    return False


@pytest.fixture
def run_cells(tmp_path):
    """Run code cells in a sandboxed kernel; returns (printed text, kernel died, the notebook)."""

    def run(sources: list[str], *, fork_server: bool, timeout: int = 60, **settings):
        (tmp_path / "data.csv").write_text("1,2")
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
        died = execute(notebook, fork_server=fork_server, cwd=tmp_path, timeout=timeout, **settings)
        printed = "".join(output.get("text", "") + output.get("evalue", "") + "".join(output.get("traceback", []))
                          for cell in notebook.cells for output in cell.get("outputs", []))
        return printed, died, notebook

    return run


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def leftover_cgroups() -> list[str]:
    homes = [home for home in (cgroups.find_home(), cgroups.find_cpu_home()) if isinstance(home, cgroups.CgroupHome)]
    return [name for home in homes for name in os.listdir(home.folder)
            if name.startswith(f"{cgroups.PREFIX}{os.getpid()}-")]


# ------------------------------------------------------------------ memory

SHARED_MEMORY = r"""
import mmap
maps = []
chunk = b"\1" * (1 << 20)
for gib in range(3):
    shared = mmap.mmap(-1, 1 << 30)  # MAP_SHARED|MAP_ANONYMOUS: shmem, not counted by RLIMIT_DATA
    for offset in range(0, 1 << 30, 1 << 20):
        shared[offset:offset + (1 << 20)] = chunk
    maps.append(shared)
    print("touched", gib + 1, "GiB", flush=True)
print("SURVIVED WITH 3 GiB")
"""

MEMFD = r"""
import os
try:
    os.memfd_create("hoard")
    print("memfd allowed")
except OSError as error:
    print("memfd refused", error.errno)
"""

CHILDREN = r"""
import os
pids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        try:
            block = bytearray(1 << 30)  # each well under RLIMIT_DATA (2 GiB); together over the cgroup's cap
            for offset in range(0, len(block), 4096):
                block[offset] = 1
            os._exit(0)
        except MemoryError:
            os._exit(3)
    pids.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
print("children", codes)
print("ALL CHILDREN GOT THEIR MEMORY" if codes == [0, 0, 0] else "capped")
"""

TMPFS = r"""
import os
written = {}
chunk = b"\1" * (1 << 20)
for folder in ("/tmp", "/dev/shm", os.path.expanduser("~")):
    total = 0
    try:
        for index in range(1024):
            with open(os.path.join(folder, f"fill{index}"), "wb") as file:
                for _ in range(64):
                    file.write(chunk)
                    total += len(chunk)
    except OSError as error:
        written[folder] = (total >> 20, error.errno)
    else:
        written[folder] = (total >> 20, None)
print("WRITTEN", written)
"""


@PATHS
def test_three_touched_gib_of_shared_memory_kill_the_kernel(run_cells, fork_server):
    printed, died, _ = run_cells([SHARED_MEMORY], fork_server=fork_server)
    assert "SURVIVED WITH 3 GiB" not in printed
    assert died or "Error" in printed  # killed by the cgroup, or refused by RLIMIT_AS without one
    assert leftover_cgroups() == []


@PATHS
def test_without_a_cgroup_rlimit_as_refuses_the_third_gib(run_cells, fork_server):
    printed, died, _ = run_cells([MEMFD, SHARED_MEMORY], fork_server=fork_server, memory_cgroup=False)
    assert "memfd refused 1" in printed  # EPERM: memory no RLIMIT_AS would count
    assert "SURVIVED WITH 3 GiB" not in printed and "touched 3 GiB" not in printed
    assert died or "Cannot allocate memory" in printed or "MemoryError" in printed


@PATHS
def test_children_together_cannot_exceed_the_memory_cap(run_cells, fork_server):
    printed, died, _ = run_cells([CHILDREN], fork_server=fork_server)
    assert "ALL CHILDREN GOT THEIR MEMORY" not in printed
    assert died or "-9" in printed  # the cgroup's out-of-memory killer, not a per-process limit


@PATHS
def test_writable_places_are_capped_tmpfs_and_nothing_reaches_the_disk(run_cells, fork_server, tmp_path):
    printed, died, _ = run_cells([TMPFS], fork_server=fork_server, timeout=120)
    assert not died, printed
    written = ast.literal_eval(printed[printed.index("WRITTEN") + 8:].splitlines()[0])
    assert written["/tmp"][0] <= 256 and written["/dev/shm"][0] <= 64 and written["/home/student"][0] <= 256
    assert all(error == 28 for _, error in written.values())  # ENOSPC: the tmpfs was full
    assert sum(size for size, _ in written.values()) <= 576
    assert not any(tmp_path.glob("fill*"))  # the submission's folder on the host got nothing


PRIVATE_FOLDER = r"""
import glob, os
folders = [f for f in glob.glob("/tmp/coursekit-kernel-*") if os.access(f, os.W_OK)]
total = 0
try:
    for index in range(64):
        with open(os.path.join(folders[0], f"fill{index}"), "wb") as file:
            for _ in range(64):
                file.write(b"\1" * (1 << 20))
                total += 1 << 20
except OSError as error:
    print("errno", error.errno)
print("PRIVATE", total >> 20, "MiB in", folders[0])
"""


def test_the_sockets_folder_is_no_way_onto_the_host_disk(run_cells):
    printed, died, _ = run_cells([PRIVATE_FOLDER], fork_server=True)
    mib = int(printed.split("PRIVATE ")[1].split()[0])
    assert mib <= 256 and "errno 28" in printed  # the same capped tmpfs as the home copy


# ------------------------------------------------------------------ output

RAW_OUTPUT = r"""
import os
os.write(1, b"\x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m\rcarriage\x9b2J")
chunk = b"A" * (1 << 20)
for _ in range(400):
    os.write(1, chunk)
os.write(2, b"\x1b[2Jerrors too")
print("done writing")
"""


@PATHS
def test_raw_output_is_capped_and_plain_for_the_instructor(run_cells, fork_server, capfd):
    rss_before = peak_rss_mib()
    started = time.monotonic()
    printed, died, notebook = run_cells([RAW_OUTPUT, 'print("the next cell keeps its output")'],
                                        fork_server=fork_server, timeout=120)
    seconds = time.monotonic() - started
    terminal = capfd.readouterr()
    shown = terminal.out + terminal.err
    # The instructor's terminal: at most the relay's 1 MiB, no escape or other control characters.
    assert len(shown.encode()) <= 1 * MIB + 4096
    assert "\x1b" not in shown and "\r" not in shown and "\x9b" not in shown and "\x07" not in shown
    assert "red" in shown and "the rest is dropped" in shown
    # The grading process: outputs kept in the notebook are within the budget, its memory stays bounded.
    kept = len(json.dumps(notebook.cells[0].get("outputs", [])))
    assert kept <= CELL_OUTPUT_LIMIT_BYTES + MIB and "output truncated" in printed
    assert notebook.cells[1].outputs[0]["text"] == "the next cell keeps its output\n"  # a test cell after a flood
    # What the notebook keeps is shown to people too (feedback, formgrader): colours only, no other escapes.
    assert "\x1b]" not in printed and "\x1b[2J" not in printed and "\x9b" not in printed and "\x07" not in printed
    assert "\x1b[31mred" in printed
    assert peak_rss_mib() - rss_before < 200
    assert seconds < 60


# ------------------------------------------------------------------ CPU

SESSIONS = r"""
import os, time
children = []
for _ in range(8):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        time.sleep(120)
        os._exit(0)
    children.append(pid)
for pid in children:  # a child is in its own session only once it ran setsid(): wait for it, not for luck
    deadline = time.time() + 20
    while os.getsid(pid) != pid and time.time() < deadline:
        time.sleep(0.01)
print("sessions", len({os.getsid(pid) for pid in children}))
"""


@PATHS
def test_a_notebooks_processes_share_one_cpu_cgroup_whatever_their_sessions(fork_server, tmp_path):
    if not isinstance(cgroups.find_cpu_home(), cgroups.CgroupHome):
        pytest.skip("no cpu cgroup here")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SESSIONS)])
    manager = SandboxedKernelManager(kernel_name="python3", fork_server=fork_server, cpu_limit=0.5, cpu_weight=50)
    client = NotebookClient(notebook, km=manager, timeout=60)
    try:
        with client.setup_kernel(cwd=str(tmp_path)):
            client.execute_cell(notebook.cells[0], 0)
            cpu_folders = [folder for folder in manager.cgroups()
                           if os.path.exists(f"{folder}/cpu.shares") or os.path.exists(f"{folder}/cpu.weight")]
            assert len(cpu_folders) == 1
            folder = cpu_folders[0]
            members = cgroups.members(folder)
            if os.path.exists(f"{folder}/cpu.shares"):
                assert Path(folder, "cpu.shares").read_text().strip() == "512"
                assert Path(folder, "cpu.cfs_quota_us").read_text().strip() == "50000"
            else:
                assert Path(folder, "cpu.weight").read_text().strip() == "50"
                assert Path(folder, "cpu.max").read_text().split() == ["50000", "100000"]
            assert manager.cpu_seconds() > 0
    finally:
        if manager.has_kernel:
            run_sync(manager.shutdown_kernel)(now=True)
        manager.release_sandbox()
    assert "sessions 8" in notebook.cells[0].outputs[0]["text"]
    assert len(members) >= 1 + 8  # the kernel and its eight children, each in a session of its own
    assert leftover_cgroups() == []


def execute_with_limits(sources: list[str], folder: Path, **limits):
    from coursekit.nbgrader_plugins.execution import SandboxedExecute

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    graded, _ = SandboxedExecute(**limits).preprocess(notebook, {"metadata": {"path": str(folder)}})
    return graded


def test_time_limits_count_the_notebooks_own_cpu(tmp_path):
    if not isinstance(cgroups.find_cpu_home(), cgroups.CgroupHome):
        pytest.skip("no cpu cgroup here")
    # Sleeping past the cell's 3 s uses no CPU: the cell runs on (the wall clock stops it only at 4 x 3 s).
    # Spinning is interrupted once the cell used 3 CPU-seconds; the kernel answers, so the notebook goes on.
    graded = execute_with_limits(["import time\ntime.sleep(5)\nprint('slept')", "while True:\n    pass",
                                  "print('next cell')"], tmp_path, timeout=3, wall_clock_slack=4.0)
    sleeping, spinning, after = (cell.outputs for cell in graded.cells)
    assert [output.get("text") for output in sleeping] == ["slept\n"]
    assert [output.get("ename") for output in spinning][-1] == "CellTimeoutError"
    assert "more than 3 CPU-seconds" in spinning[-1]["evalue"]
    assert after[0]["text"] == "next cell\n" and graded.metadata["coursekit"]["status"] == "graded"
    # The notebook's own CPU time is capped too, processes of its own sessions included.
    graded = execute_with_limits([SESSIONS.replace("time.sleep(120)", "while True: pass"), "import time\ntime.sleep(60)",
                                  "print('never')"], tmp_path, timeout=30, notebook_timeout=4, wall_clock_slack=10.0)
    assert graded.metadata["coursekit"]["status"] == "timed out"
    assert "used more than its 4 CPU-seconds" in graded.metadata["coursekit"]["reason"]
    assert "never" not in str(graded.cells[2].outputs)


# ------------------------------------------------------------------ messages

GRADE_ONE = r"""
import json, sys, tomllib
from coursekit.nbgrader_plugins.execution import SandboxedExecute
from coursekit.notebooks import fill_answers, master_answers, read_notebook

def status(field):
    return int(next(line for line in open("/proc/self/status") if line.startswith(field + ":")).split()[1]) << 10

name, master_path, fixtures, folder, edit = sys.argv[1:]
master = read_notebook(master_path)
spec = next(spec for spec in tomllib.loads(open(fixtures).read())["submission"] if spec["name"] == name)
answers = {grade_id: source.replace(*json.loads(edit)) for grade_id, source in spec.get("answers", {}).items()}
notebook = fill_answers(master, {**master_answers(master), **answers})
baseline = status("VmRSS")  # everything imported: the grading process as it waits for its first kernel
# Memory is measured, not time: a loaded machine must not stop the flood at the wall clock.
graded, _ = SandboxedExecute(timeout=300).preprocess(notebook, {"metadata": {"path": folder}})
texts = [output.get("text", "") + str(output.get("data", "")) for cell in graded.cells for output in cell.get("outputs", [])]
print(json.dumps({"baseline": baseline, "peak": status("VmHWM"), "metadata": graded.metadata.get("coursekit", {}),
                  "outputs": "\n".join(texts)}))
"""


def grade_in_a_fresh_process(name: str, folder: Path, *, edit: tuple[str, str] = ("", "")) -> dict:
    """Grade the master notebook with a hostile fixture's answers (text `edit`ed) in a process of its own,
    and read its peak memory."""
    result = subprocess.run([sys.executable, "-c", GRADE_ONE, name, str(MASTER_PATH),
                             str(REPOSITORY / "tests" / "hostile" / "submissions.toml"), str(folder), json.dumps(edit)],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["honest", "flood-of-unused-messages", "multipart-flood-dropped-by-the-guard"])
def test_the_grading_process_stays_bounded_whatever_the_kernel_sends(name, tmp_path, capsys):
    # The flood at the size of issue 18: 99 messages of 30 MiB on IOPub (and 10 of 4 MiB on the shell channel).
    graded = grade_in_a_fresh_process(name, tmp_path, edit=("MESSAGES_PER_TYPE = 6", "MESSAGES_PER_TYPE = 33"))
    grown = graded["peak"] - graded["baseline"]
    with capsys.disabled():
        print(f"\n{name}: grading process {graded['baseline'] / MIB:.0f} MiB before the kernel, peak "
              f"{graded['peak'] / MIB:.0f} MiB (+{grown / MIB:.0f} MiB)")
    assert graded["metadata"]["status"] == "graded"
    assert grown < 1024 * MIB
    if name == "flood-of-unused-messages":  # the flood was sent, and reached the grading process to be dropped there
        assert "sent 109 unused messages" in graded["outputs"]
        assert graded["metadata"]["messages_dropped"]["iopub: a type the grader does not use"] >= 10
    if name == "multipart-flood-dropped-by-the-guard":  # sent; the guard dropped it before the grading process
        assert "sent a multipart message of 768 MiB" in graded["outputs"]


# ------------------------------------------------------------------ system calls

SYSCALLS = r"""
import ctypes, errno, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
machine = os.uname().machine
calls = {
    "unshare(NEWUSER)": ("unshare", 0x10000000), "unshare(NEWNS)": ("unshare", 0x00020000),
    "unshare(NEWNET|NEWUSER)": ("unshare", 0x50000000), "setns": ("setns", -1, 0),
    "ptrace(TRACEME)": ("ptrace", 0, 0, 0, 0), "mount": ("mount", b"none", b"/tmp", b"tmpfs", 0, None),
    "umount2": ("umount2", b"/tmp", 0), "chroot": ("chroot", b"/tmp"),
}
raw = {  # name: (x86_64, aarch64, arguments)
    "bpf": (321, 280, (0, 0, 0)), "userfaultfd": (323, 282, (0,)), "perf_event_open": (298, 241, (0, 0, -1, -1, 0)),
    "io_uring_setup": (425, 425, (1, 0)), "process_vm_readv": (310, 270, (1, 0, 0, 0, 0, 0)),
    "open_by_handle_at": (304, 265, (-100, 0, 0)), "kexec_load": (246, 104, (0, 0, 0, 0)),
    "init_module": (175, 105, (0, 0, 0)), "fsopen": (430, 430, (b"tmpfs", 0)), "pivot_root": (155, 41, (b".", b".")),
    "clone(NEWUSER)": (56, 220, (0x10000000 | 17, 0, 0, 0, 0)),
    "keyctl": (250, 219, (0, -3, 0)), "add_key": (248, 217, (b"user", b"x", b"y", 1, -3)),
}
results = {}
for name, (function, *arguments) in calls.items():
    code = getattr(libc, function)(*arguments)
    results[name] = (code, ctypes.get_errno())
for name, (x86, arm, arguments) in raw.items():
    code = libc.syscall(x86 if machine == "x86_64" else arm, *arguments)
    if code == 0 and name.startswith("clone"):
        os._exit(0)  # the child of a clone that should not have happened
    results[name] = (code, ctypes.get_errno())
results["clone3"] = (libc.syscall(435, 0, 0), ctypes.get_errno())
print("RESULTS", {name: (code, errno.errorcode.get(number)) for name, (code, number) in results.items()})
tool = subprocess.run(["unshare", "--user", "--map-root-user", "id"], capture_output=True, text=True)
print("unshare tool", tool.returncode)
# What a kernel needs still works: processes, threads, subprocesses.
import threading
thread = threading.Thread(target=lambda: None); thread.start(); thread.join()
pid = os.fork()
if pid == 0:
    os._exit(5)
print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), "subprocess",
      subprocess.run(["echo", "ok"], capture_output=True, text=True).stdout.strip())
"""


@PATHS
def test_the_seccomp_filter_refuses_what_no_exercise_needs(run_cells, fork_server):
    printed, died, _ = run_cells([SYSCALLS], fork_server=fork_server)
    assert not died, printed
    assert "RESULTS" in printed, printed
    results = ast.literal_eval(printed[printed.index("RESULTS") + 8:].splitlines()[0])
    for name, (code, error) in results.items():
        assert code == -1, f"{name} succeeded"
        assert error == ("ENOSYS" if name == "clone3" else "EPERM"), f"{name}: {error}"
    assert "unshare tool 1" in printed and "fork 5 subprocess ok" in printed


def test_bubblewrap_gets_the_filter_the_fork_server_installs(tmp_path):
    manager = SandboxedKernelManager(fork_server=False)
    try:
        manager._launch_args = {"cwd": str(tmp_path)}
        manager.write_connection_file()
        command = manager.format_kernel_cmd()
        options = json.loads(command[command.index("--run") + 1])
        assert bytes.fromhex(options["seccomp"]) == seccomp.program() and options["cgroups"]
        assert command[command.index("--seccomp") + 1] == "3"
    finally:
        manager.release_sandbox()
    compiled = seccomp.program()
    assert len(compiled) % 8 == 0 and 20 < len(compiled) // 8 < 4096
    assert len(seccomp.program(refuse_memfd=True)) == len(compiled) + 16  # one more refused call
    with pytest.raises(seccomp.SeccompUnavailable):
        seccomp.program("mips")


# ------------------------------------------------------------------ the mount table

MOUNTS = r"""
print("MOUNTINFO")
print(open("/proc/self/mountinfo").read())
"""


@PATHS
def test_the_mount_table_shows_no_course_or_submission_path(run_cells, fork_server, tmp_path):
    printed, died, _ = run_cells([MOUNTS], fork_server=fork_server)
    table = printed.split("MOUNTINFO", 1)[1]
    assert str(tmp_path) not in table  # where the submission came from
    for folder in ("source", "submitted", "autograded", "feedback", "release", "tests"):
        assert f"{REPOSITORY}/{folder}" not in table
    home = [line.split() for line in table.splitlines() if len(line.split()) > 4 and line.split()[4] == "/home/student"]
    assert home and home[-1][home[-1].index("-") + 1] == "tmpfs"  # a copy in memory, no host folder behind it


# ------------------------------------------------------------------ honest work

@PATHS
def test_the_master_notebook_runs_clean_in_the_capped_sandbox(fork_server, tmp_path):
    notebook = nbformat.read(MASTER_PATH, as_version=4)
    assert not execute(notebook, fork_server=fork_server, cwd=tmp_path, allow_errors=False)
    errors = [output for cell in notebook.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert errors == []
    assert leftover_cgroups() == []
