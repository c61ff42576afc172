"""A sandbox around the kernel that runs a student's notebook.

Inside the sandbox: no network, a read-only view of only the system folders
Python and torch need, a private copy of the student's folder as the only
writable place besides /tmp, a memory cap, a process cap, its own process
namespace (every process it started dies with it) and an unprivileged user.
Enabled for plain `nbgrader autograde` through `nbgrader_config.py`.

As root, kernels are forks of a server that has torch imported already
(coursekit.fork_server), which saves ~2 s per notebook; otherwise bubblewrap
builds the same sandbox around a freshly started kernel.
"""
from __future__ import annotations

import functools
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Integer, Unicode

from .fork_server import ForkServer

INSTALL_HINT = (
    "bubblewrap (bwrap) is needed to sandbox student code: install it with "
    "`apt-get install bubblewrap` (or `make setup` as root), or set "
    "c.SandboxedKernelManager.allow_grading_without_sandbox = True in nbgrader_config.py "
    "to grade without a sandbox at your own risk."
)
SANDBOX_HOME = "/home/student"
WORK_COPY_LIMIT_BYTES = 100 * 1024 * 1024
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
                "/etc/localtime", "/etc/hosts")


class SandboxUnavailable(SystemExit):
    """Stops the whole grading run: grading without the sandbox must be a conscious choice.

    A SystemExit, because nbgrader catches every Exception per student and
    would otherwise go on and fail each of them with the same message.
    """


@functools.lru_cache(maxsize=None)
def bwrap_works(bwrap: str) -> str | None:
    """None when bwrap can build a sandbox here, else the reason."""
    try:
        probe = subprocess.run(
            [bwrap, "--unshare-all", "--die-with-parent", *read_only_binds(), "--proc", "/proc", "--dev", "/dev",
             "--", "/bin/true"],
            capture_output=True, text=True, timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if probe.returncode == 0 else (probe.stderr.strip() or f"exit code {probe.returncode}")


def read_only_binds() -> list[str]:
    arguments = []
    for folder in SYSTEM_FOLDERS:
        if os.path.isdir(folder):
            # A symlinked /lib (merged /usr) must stay a symlink inside too.
            if os.path.islink(folder):
                arguments += ["--symlink", os.readlink(folder), folder]
            else:
                arguments += ["--ro-bind", folder, folder]
    return arguments


def parents_of(path: str) -> list[str]:
    parts = Path(path).parts
    return [str(Path(*parts[: index + 1])) for index in range(1, len(parts) - 1)]


def python_folders() -> list[str]:
    """The interpreter, the virtual environment and the kit's own code, as real paths."""
    folders = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix),
               os.path.realpath(Path(__file__).resolve().parent.parent / "coursekit")}
    purelib = sysconfig.get_paths()["purelib"]
    folders.add(os.path.realpath(purelib))
    # Drop folders already inside another one.
    return sorted(f for f in folders if not any(f != o and f.startswith(o + os.sep) for o in folders))


def sandbox_environment() -> dict[str, str]:
    return {"HOME": SANDBOX_HOME, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "LANG": "C.UTF-8", "MPLCONFIGDIR": "/tmp", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1"}  # else ipykernel's debugger warns on every start


class SandboxedKernelManager(AsyncKernelManager):
    """Starts every kernel in a sandbox, with the hardened kernel and resource limits."""

    memory_limit_mib = Integer(2048, help="Memory cap per notebook (MiB), as RLIMIT_DATA.").tag(config=True)
    process_limit = Integer(256, help="Cap on processes and threads per notebook.").tag(config=True)
    file_size_limit_mib = Integer(256, help="Largest file student code may write (MiB).").tag(config=True)
    bwrap_path = Unicode("bwrap", help="The bubblewrap executable, a name on PATH or a path.").tag(config=True)
    fork_server = Bool(
        True, help="As root, start kernels as forks of a server that has torch imported (coursekit.fork_server); "
        "otherwise, or when False, bubblewrap starts each kernel afresh."
    ).tag(config=True)
    allow_grading_without_sandbox = Bool(
        False, help="Grade without bubblewrap when it is missing. Student code then runs with your rights."
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Unix sockets in a private folder: a TCP port on the host's loopback
        # is unreachable from the sandbox's own network namespace.
        self.transport = "ipc"
        self._private_folder = Path(tempfile.mkdtemp(prefix="coursekit-kernel-"))
        os.chmod(self._private_folder, 0o711)
        self.ip = str(self._private_folder / "kernel")
        self.connection_file = str(self._private_folder / "connection.json")
        self._sandbox_uid = random.randint(200000, 299999) if os.geteuid() == 0 else os.geteuid()

    def bwrap(self) -> str | None:
        bwrap = shutil.which(self.bwrap_path)
        reason = f"{self.bwrap_path} is not installed" if bwrap is None else bwrap_works(bwrap)
        if reason is None:
            return bwrap
        if self.allow_grading_without_sandbox:
            self.log.warning("Grading WITHOUT a sandbox (%s): allow_grading_without_sandbox is set.", reason)
            return None
        shutil.rmtree(self._private_folder, ignore_errors=True)  # the run stops here: no clean-up follows
        raise SandboxUnavailable(f"coursekit: cannot sandbox student code ({reason}). {INSTALL_HINT}")

    def format_kernel_cmd(self, extra_arguments=None):
        # The kernel is the hardened one whatever the notebook's kernelspec says.
        # -I: files in the working folder must not shadow the modules the kernel itself imports.
        kernel = [sys.executable, "-I", "-m", "coursekit.hardened_kernel", "-f", self.connection_file]
        if self.kernel_spec is not None:
            self.kernel_spec.interrupt_mode = "message"  # signals do not cross the sandbox's session
        use_server = self.fork_server and os.geteuid() == 0
        server = ForkServer.shared(environment=sandbox_environment()) if use_server else None
        if server is not None:
            return server.relay_command(self.fork_server_request())
        if use_server:
            self.log.warning("No fork server (%s): bubblewrap starts each kernel.", ForkServer.failure)
        bwrap = self.bwrap()
        if bwrap is None:
            return kernel
        return self.limits() + [bwrap] + self.sandbox_arguments() + ["--"] + self.drop_privileges() + kernel

    def limits(self) -> list[str]:
        processes = self.process_limit
        if os.geteuid() != 0:  # the cap counts all processes of this user, not only the sandbox's
            processes += len([p for p in os.listdir("/proc") if p.isdigit()])
        return ["prlimit", f"--data={self.memory_limit_mib * 1024 * 1024}", f"--nproc={processes}",
                f"--fsize={self.file_size_limit_mib * 1024 * 1024}", "--core=0", "--"]

    def drop_privileges(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        uid = str(self._sandbox_uid)
        return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                "--no-new-privs", "--"]

    def fork_server_request(self) -> dict:
        """What coursekit.fork_server needs to build the same sandbox as sandbox_arguments()."""
        return {
            "connection_file": self.connection_file, "private_folder": str(self._private_folder),
            "home": {"outside": str(self.student_work_copy()), "inside": SANDBOX_HOME},
            "uid": self._sandbox_uid, "memory_bytes": self.memory_limit_mib * 1024 * 1024,
            "processes": self.process_limit, "file_size_bytes": self.file_size_limit_mib * 1024 * 1024,
            "system_folders": list(SYSTEM_FOLDERS), "system_files": list(SYSTEM_FILES),
            "read_only": python_folders(), "environment": sandbox_environment(),
        }

    def sandbox_arguments(self) -> list[str]:
        work_copy = self.student_work_copy()
        arguments = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                     "--die-with-parent", "--new-session", "--hostname", "jupyter"]
        if os.geteuid() != 0:
            arguments.append("--unshare-user")
        arguments += read_only_binds()
        # /tmp first: the private folder below lives under it and must stay visible.
        arguments += ["--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]
        for file in SYSTEM_FILES:
            arguments += ["--ro-bind-try", file, file]
        created = set()
        for folder in python_folders() + [str(self._private_folder), SANDBOX_HOME]:
            for parent in parents_of(folder):
                if parent not in created and parent not in SYSTEM_FOLDERS + ("/tmp",):
                    arguments += ["--perms", "0755", "--dir", parent]
                    created.add(parent)
        for folder in python_folders():
            arguments += ["--ro-bind", folder, folder]
        arguments += ["--bind", str(self._private_folder), str(self._private_folder)]
        arguments += ["--bind", str(work_copy), SANDBOX_HOME, "--chdir", SANDBOX_HOME]
        arguments += ["--clearenv"]
        for name, value in sandbox_environment().items():
            arguments += ["--setenv", name, value]
        return arguments

    def student_work_copy(self) -> Path:
        """A private copy of the folder nbgrader runs the notebook in, owned by the sandbox user."""
        source = Path(self._launch_args.get("cwd") or os.getcwd())
        copy = self._private_folder / "home"
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir()
        budget = WORK_COPY_LIMIT_BYTES
        # Files only, no links, nothing of other kernels' private folders, and a size cap:
        # the folder is nbgrader's per-student one, anything else is a misconfiguration.
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if path.is_symlink() or relative.parts[0].startswith("coursekit-kernel-") or path.suffix == ".ipynb":
                continue
            if path.is_dir():
                (copy / relative).mkdir(parents=True, exist_ok=True)
            elif path.is_file() and path.stat().st_size <= budget:
                budget -= path.stat().st_size
                (copy / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, copy / relative)
        # Only the owner may read the connection file's key: the sandbox user.
        for path in [copy, *copy.rglob("*"), self._private_folder, Path(self.connection_file)]:
            if path.exists():
                os.chown(path, self._sandbox_uid, self._sandbox_uid, follow_symlinks=False)
        return copy

    async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False):
        # Killed at once: a graded kernel has nothing to save, and a polite
        # shutdown request costs ~0.8 s per notebook.
        await super()._async_shutdown_kernel(now=True, restart=restart)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        # Also reached without a shutdown, after a kernel was killed or died.
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self._private_folder, ignore_errors=True)

    # AsyncKernelManager binds the public names to its own coroutines, not to overrides.
    shutdown_kernel = _async_shutdown_kernel
    cleanup_resources = _async_cleanup_resources
