"""The sandbox: its settings, its refusal to grade without bubblewrap, and what a kernel inside it sees."""
import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from traitlets.config import Config

from coursekit.errors import CourseKitError
from coursekit.sandbox.kernel_manager import SandboxedKernelManager, SandboxUnavailable
from coursekit.engine.workflow import require_sandbox


@pytest.fixture
def manager_factory():
    managers = []

    def make(**settings):
        manager = SandboxedKernelManager(**settings)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        if manager.has_kernel:  # nbclient leaves a kernel it was handed running
            run_sync(manager.shutdown_kernel)(now=True)
        manager.release_sandbox()  # its tmpfs, its cgroup, its folder


def test_missing_bwrap_stops_grading_with_a_one_line_install_hint(manager_factory):
    manager = manager_factory(bwrap_path="/nonexistent/bwrap", fork_server=False)
    with pytest.raises(SandboxUnavailable) as stop:
        manager.bwrap()
    message = str(stop.value)
    assert "apt-get install bubblewrap" in message and "allow_grading_without_sandbox" in message
    assert "\n" not in message


def test_opting_out_is_explicit(manager_factory):
    assert manager_factory(bwrap_path="/nonexistent/bwrap", allow_grading_without_sandbox=True).bwrap() is None


def test_the_kernel_command_is_sandboxed_and_limited(manager_factory, tmp_path):
    (tmp_path / "data.csv").write_text("1,2")
    (tmp_path / "ml_ex2.ipynb").write_text("{}")
    manager = manager_factory(memory_limit_mib=512, process_limit=32, fork_server=False)
    manager._launch_args = {"cwd": str(tmp_path)}
    manager.write_connection_file()
    command = manager.format_kernel_cmd()
    assert command[3].endswith("kernel_relay.py") and command[4] == "--run"
    assert "prlimit" in command and f"--data={512 * 1024 * 1024}" in command
    nproc = int(next(a for a in command if a.startswith("--nproc=")).split("=")[1])
    assert nproc == 32 if os.geteuid() == 0 else nproc > 32  # non-root: on top of the user's own processes
    if os.geteuid() == 0:
        assert "setpriv" in command and "--no-new-privs" in command
    assert "--unshare-net" in command and "--unshare-pid" in command and "--die-with-parent" in command
    assert command[-5:] == ["-I", "-m", "coursekit.recorder.kernel", "-f", manager.kernel_connection_file]
    work_copy = manager._private_folder / "home"
    assert (work_copy / "data.csv").exists() and not (work_copy / "ml_ex2.ipynb").exists()
    assert_channels_go_through_the_guard(manager, json.loads(command[5])["beside"])


def assert_channels_go_through_the_guard(manager, guard_command):
    """The kernel binds in the folder it sees; this process connects only to the guard's sockets, elsewhere."""
    kernel_side = json.loads(Path(manager.kernel_connection_file).read_text())
    assert kernel_side["ip"] == str(manager._private_folder / "kernel") and kernel_side["key"] == manager.session.key.decode()
    assert not manager.ip.startswith(str(manager._private_folder))
    assert guard_command[-2].endswith("channel_guard.py")
    config = json.loads(guard_command[-1])
    for channel, endpoint in config["grader"].items():
        assert endpoint == f"ipc://{manager.ip}-{kernel_side[channel + '_port']}"
        assert config["kernel"][channel] == f"ipc://{kernel_side['ip']}-{kernel_side[channel + '_port']}"
    assert config["limits"]["iopub"][0] >= config["limits"]["shell"][0] > config["limits"]["hb"][0]


def test_grade_command_refuses_without_bwrap():
    config = Config()
    config.SandboxedKernelManager.bwrap_path = "/nonexistent/bwrap"
    config.SandboxedKernelManager.fork_server = False
    with pytest.raises(CourseKitError, match="apt-get install bubblewrap"):
        require_sandbox(config)
    config.SandboxedKernelManager.allow_grading_without_sandbox = True
    require_sandbox(config)  # the explicit opt-out lets it through


@pytest.mark.skipif(os.geteuid() != 0, reason="the fork server needs root")
def test_the_fork_server_gets_the_same_sandbox_and_limits(manager_factory, tmp_path):
    (tmp_path / "data.csv").write_text("1,2")
    manager = manager_factory(memory_limit_mib=512, process_limit=32)
    manager._launch_args = {"cwd": str(tmp_path)}
    manager.write_connection_file()
    command = manager.format_kernel_cmd()
    assert command[1:3] == ["-I", "-S"] and command[3].endswith("kernel_relay.py") and command[4] == "--fork-server"
    request = json.loads(command[-2])
    assert request["memory_bytes"] == 512 * 1024 * 1024 and request["processes"] == 32
    assert request["uid"] >= 200000 and request["home"]["inside"] == "/home/student"
    assert request["connection_file"] == manager.kernel_connection_file
    assert (manager._private_folder / "home" / "data.csv").exists()
    assert_channels_go_through_the_guard(manager, json.loads(command[-1])["beside"])


PROBE = r"""
import os, socket
print("uid", os.getuid(), "host", socket.gethostname())
print("processes", len([p for p in os.listdir("/proc") if p.isdigit()]))
print("home", sorted(os.listdir(".")))
for path in ("/etc/shadow", "{course}", "{course}/source"):
    print(path, "visible" if os.path.exists(path) else "hidden")
for path in ("/usr/hacked", "{course}/hacked"):
    try:
        open(path, "w").close()
        print("WRITE LEAK", path)
    except OSError:
        print("write blocked")
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    print("NETWORK LEAK")
except OSError:
    print("network blocked")
listener = socket.create_server(("127.0.0.1", 0))
socket.create_connection(listener.getsockname(), timeout=2).close()
print("loopback works")
print("output", os.readlink("/proc/self/fd/1").split(":")[0], os.readlink("/proc/self/fd/2").split(":")[0])
print("seccomp", next(line.split()[1] for line in open("/proc/self/status") if line.startswith("Seccomp:")))
import glob
print("grader's sockets", glob.glob("/tmp/coursekit-channels-*") or "hidden")
for line in open("/proc/self/mountinfo"):
    fields = line.split()
    if fields[4] in ("/home/student", "/tmp", "/dev/shm"):
        print("mounted", fields[4], fields[fields.index("-") + 1])
"""


@pytest.mark.parametrize("fork_server", [True, False], ids=["fork-server", "bubblewrap"])
def test_a_kernel_sees_only_its_sandbox(manager_factory, tmp_path, fork_server):
    if shutil.which("bwrap") is None and not (fork_server and os.geteuid() == 0):
        pytest.skip("needs bubblewrap")
    course = str(Path(__file__).resolve().parent.parent)
    (tmp_path / "data.csv").write_text("1,2")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE.replace("{course}", course))])
    manager = manager_factory(kernel_name="python3", fork_server=fork_server)
    NotebookClient(notebook, km=manager, timeout=60).execute(cwd=str(tmp_path))
    printed = "".join(output.get("text", "") for output in notebook.cells[0].outputs)
    assert "uid 0 " not in printed and "host jupyter" in printed
    assert "processes 2" in printed  # the sandbox's init and the kernel, nothing of the host
    assert "home ['.ipython', 'data.csv']" in printed
    assert "/etc/shadow hidden" in printed and f"{course}/source hidden" in printed
    assert printed.count("write blocked") == 2 and "LEAK" not in printed
    assert "network blocked" in printed and "loopback works" in printed
    assert not (tmp_path / "hacked").exists()
    assert "seccomp 2" in printed  # the filter (coursekit.sandbox.seccomp) is on
    assert "mounted /tmp tmpfs" in printed and "mounted /dev/shm tmpfs" in printed
    assert "grader's sockets hidden" in printed  # only the channel guard reaches them
    if os.geteuid() == 0:  # the relay's pipes: no log file or terminal to read or rewind; home a tmpfs copy
        assert "output pipe pipe" in printed and "mounted /home/student tmpfs" in printed


# Every route a student's code could take to the grader's code or secrets, run in the sandboxed kernel.
KIT_SEARCH = r"""
import builtins, gc, importlib, json, os, pkgutil, sys
found = []
kit_modules = {modules}
for name in kit_modules:
    try:
        importlib.import_module(name)
        found.append("import " + name)
    except BaseException:
        pass
    try:
        builtins.__import__(".".join(name.split(".")))
        if name in sys.modules:
            found.append("__import__ " + name)
    except BaseException:
        pass
allowed = lambda name: name in ("coursekit", "coursekit.recorder") or name.startswith("coursekit.recorder.")
found += ["sys.modules " + n for n in sys.modules if n.startswith("coursekit") and not allowed(n)]
for item in gc.get_objects():
    module = getattr(item, "__module__", None) if isinstance(item, (type(len), type(lambda: 0), type)) else None
    if isinstance(item, type(sys)) and item.__name__.startswith("coursekit") and not allowed(item.__name__):
        found.append("gc module " + item.__name__)
    elif isinstance(module, str) and module.startswith("coursekit") and not allowed(module):
        found.append("gc object of " + module)
frame = sys._getframe()
while frame is not None:
    name = frame.f_globals.get("__name__", "")
    for value in list(frame.f_globals.values()) + list(frame.f_locals.values()):
        if isinstance(value, type(sys)) and value.__name__.startswith("coursekit") and not allowed(value.__name__):
            found.append("frame global " + value.__name__)
    frame = frame.f_back
import coursekit
found += ["package entry " + entry for entry in os.listdir(coursekit.__path__[0]) if entry not in ("__init__.py", "recorder")]
found += ["pkgutil " + module.name for module in pkgutil.iter_modules(coursekit.__path__) if module.name != "recorder"]
for path in {files}:
    if os.path.exists(path):
        found.append("file " + path)
for root in ("/work", "/root", "/home", "/tmp", "/opt", "/srv", "/var", "/usr/local"):
    for folder, subfolders, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if name == "grader_secret" or (name == "nbgrader_config.py" and "site-packages" not in path) or (
                    "/coursekit/" in path and "/coursekit/recorder/" not in path and not path.endswith("/coursekit/__init__.py")):
                found.append("walk " + path)
print("KIT-SEARCH" + json.dumps(sorted(set(found))))
"""


def kit_module_names() -> list[str]:
    package = Path(__file__).resolve().parent.parent / "coursekit"
    names = []
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name not in ("coursekit", "coursekit.recorder") and not name.startswith("coursekit.recorder."):
            names.append(name)
    return sorted(names)


@pytest.mark.parametrize("fork_server", [True, False], ids=["fork-server", "bubblewrap"])
def test_a_kernel_holds_nothing_of_the_grader(manager_factory, tmp_path, fork_server):
    """Only coursekit.recorder is there: no judge, no references, no grader code, no course secret,
    whether looked for by import, in sys.modules, the garbage collector, frames or files."""
    if shutil.which("bwrap") is None and not (fork_server and os.geteuid() == 0):
        pytest.skip("needs bubblewrap")
    package = Path(__file__).resolve().parent.parent / "coursekit"
    modules = kit_module_names()
    assert "coursekit.exercise.checks" in modules and "coursekit.sandbox.fork_server" in modules
    files = [str(package / "exercise" / "checks.py"), str(package / "exercise" / "references.py"),
             str(package.parent / "nbgrader_config.py"), str(package.parent / ".coursekit" / "grader_secret")]
    probe = KIT_SEARCH.replace("{modules}", repr(modules)).replace("{files}", repr(files))
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import coursekit.recorder.collect as grader_record\nprint('recorder imported')"),
        nbformat.v4.new_code_cell(probe)])
    manager = manager_factory(kernel_name="python3", fork_server=fork_server)
    NotebookClient(notebook, km=manager, timeout=120).execute(cwd=str(tmp_path))
    assert "recorder imported" in notebook.cells[0].outputs[0]["text"]
    printed = "".join(output.get("text", "") for output in notebook.cells[1].outputs)
    assert "KIT-SEARCH" in printed, notebook.cells[1].outputs
    found = json.loads(printed.split("KIT-SEARCH", 1)[1])
    assert found == [], found


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


@pytest.mark.parametrize("fork_server", [True, False], ids=["fork-server", "bubblewrap"])
def test_a_kernel_without_its_channel_guard_is_stopped(manager_factory, tmp_path, fork_server):
    if shutil.which("bwrap") is None and not (fork_server and os.geteuid() == 0):
        pytest.skip("needs bubblewrap")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('first')"),
                                               nbformat.v4.new_code_cell("print('second')")])
    manager = manager_factory(kernel_name="python3", fork_server=fork_server)
    client = NotebookClient(notebook, km=manager, timeout=60)
    with client.setup_kernel():
        client.execute_cell(notebook.cells[0], 0)
        relay = manager.provisioner.process.pid
        guards = [pid for pid in children(relay) if b"channel_guard.py" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(guards) == 1
        os.kill(guards[0], 9)
        with pytest.raises(DeadKernelError):
            client.execute_cell(notebook.cells[1], 1)
    assert notebook.cells[0].outputs[0]["text"] == "first\n"
    assert not run_sync(manager.is_alive)()
