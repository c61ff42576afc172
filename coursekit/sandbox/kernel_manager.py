"""A sandbox around the kernel that runs a student's notebook.

Inside the sandbox: no network, a read-only view of only the system folders
Python and torch need, a private copy of the student's folder as the only
writable place besides /tmp, a memory cap, a process cap, its own process
namespace (every process it started dies with it), an unprivileged user and
a seccomp filter (coursekit.sandbox.seccomp). Enabled for plain `nbgrader autograde`
through `nbgrader_config.py`.

Resources are capped where they are spent: memory, shared memory and tmpfs
by a memory cgroup per kernel (coursekit.sandbox.cgroups; RLIMIT_AS where there is
none); disk by writable places that are all size-capped tmpfs (as root, the
home copy too, so nothing a kernel writes lands on the host's disk); output
by the relay that reads the kernel's stdout and stderr
(coursekit.sandbox.kernel_relay); messages by the channel guard every message
passes (coursekit.sandbox.channel_guard: the grading process never connects to
the kernel's own sockets) and by the client that reads them
(coursekit.sandbox.kernel_client).

As root, kernels are forks of a server that has torch imported already
(coursekit.sandbox.fork_server), which saves ~2 s per notebook; otherwise bubblewrap
builds the same sandbox around a freshly started kernel.
"""
from __future__ import annotations

import functools
import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, DottedObjectName, Float, Integer, Type, Unicode

from coursekit.sandbox import cgroups
from coursekit.sandbox import channel_guard
from coursekit.sandbox import kernel_client
from coursekit.sandbox import kernel_relay
from coursekit.sandbox import namespaces
from coursekit.sandbox import seccomp
from coursekit.sandbox.fork_server import ForkServer
from coursekit.sandbox.layout import KERNEL_MODULE, SANDBOX_HOME, SYSTEM_FILES, SYSTEM_FOLDERS, kit_view

INSTALL_HINT = (
    "bubblewrap (bwrap) is needed to sandbox student code: install it with "
    "`apt-get install bubblewrap` (or `make setup` as root), or set "
    "c.SandboxedKernelManager.allow_grading_without_sandbox = True in nbgrader_config.py "
    "to grade without a sandbox at your own risk."
)
MIB = 1024 * 1024
WORK_COPY_LIMIT_BYTES = 100 * MIB
# Without a memory cgroup, RLIMIT_AS is the only cap that counts shared memory;
# a kernel with torch imported maps ~1.3 GiB it mostly never touches, hence the headroom.
ADDRESS_SPACE_HEADROOM_BYTES = 1536 * MIB
# Without a memory cgroup, the channel guard's cap (it holds whatever the kernel sends it).
GUARD_ADDRESS_SPACE_BYTES = 1024 * MIB


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
             "--size", "1048576", "--tmpfs", "/tmp", "--", "/bin/true"],  # sized tmpfs: bubblewrap 0.7 or newer
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
    """The interpreter and the virtual environment, as real paths; the kit's folder comes as kit_view()."""
    folders = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    purelib = sysconfig.get_paths()["purelib"]
    folders.add(os.path.realpath(purelib))
    # Drop folders already inside another one.
    return sorted(f for f in folders if not any(f != o and f.startswith(o + os.sep) for o in folders))


def memory_cap_summary(home: cgroups.CgroupHome | str, limit_mib: int) -> str:
    """The one line that says how kernels' memory is capped here."""
    if isinstance(home, cgroups.CgroupHome):
        return (f"coursekit: each kernel's memory, shared memory and tmpfs capped at {limit_mib} MiB by "
                f"{home.description} (a cgroup per kernel under {home.folder})")
    return (f"coursekit: no memory cgroup ({home}): each kernel's memory is capped at {limit_mib} MiB by "
            f"RLIMIT_DATA, its address space (shared memory included) at "
            f"{limit_mib + ADDRESS_SPACE_HEADROOM_BYTES // MIB} MiB by RLIMIT_AS, tmpfs by its sizes")


def cpu_share_summary(home: cgroups.CgroupHome | str, share: cgroups.CpuShare) -> str:
    """The one line that says how kernels share the CPU here."""
    if isinstance(home, cgroups.CgroupHome):
        cap = f", capped at {share.cores:g} CPUs" if share.cores > 0 else ""
        return (f"coursekit: each kernel's processes share one CPU weight ({share.weight}){cap}, and its time "
                f"limits count its own CPU time, by a cgroup v{home.version} cpu cgroup per kernel under {home.folder}")
    return (f"coursekit: no cpu cgroup ({home}): kernels share the CPU as the scheduler shares sessions, "
            "and time limits count wall-clock time")


def sandbox_environment() -> dict[str, str]:
    return {"HOME": SANDBOX_HOME, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "LANG": "C.UTF-8", "MPLCONFIGDIR": "/tmp", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1"}  # else ipykernel's debugger warns on every start


class SandboxedKernelManager(AsyncKernelManager):
    """Starts every kernel in a sandbox, with the hardened kernel and resource limits."""

    memory_limit_mib = Integer(
        2048, help="Memory cap per notebook (MiB): for the whole sandbox, shared memory and tmpfs included, where a "
        "memory cgroup can be made (see memory_cgroup), and per process as RLIMIT_DATA."
    ).tag(config=True)
    process_limit = Integer(256, help="Cap on processes and threads per notebook.").tag(config=True)
    file_size_limit_mib = Integer(256, help="Largest file student code may write (MiB).").tag(config=True)
    memory_cgroup = Bool(
        True, help="Cap each kernel's memory, shared memory and tmpfs included, with a memory cgroup where one "
        "can be made (as root); otherwise, or when False, RLIMIT_AS and the tmpfs sizes bound them."
    ).tag(config=True)
    cpu_cgroup = Bool(
        True, help="Give each kernel's processes one CPU weight and cap with a cpu cgroup where one can be made (as "
        "root), whatever sessions they start; it also counts their CPU time, which the notebook's time limits then "
        "count (SandboxedExecute.wall_clock_slack). Otherwise, or when False, the scheduler shares the CPU per "
        "session and limits count wall-clock time."
    ).tag(config=True)
    cpu_weight = Integer(
        100, min=1, max=10000, help="Each kernel's CPU weight against the other kernels' (cgroup v2 cpu.weight; v1 "
        "cpu.shares is 1024/100 of it). Equal weights: parallel notebooks get equal shares of a busy machine."
    ).tag(config=True)
    cpu_limit = Float(
        1.0, min=0.0, help="At most this many CPUs' time for one notebook's processes together (0: no cap)."
    ).tag(config=True)
    home_size_limit_mib = Integer(
        256, help="Size of the student's home folder, a tmpfs holding a copy of the submission's folder (MiB; "
        "as root). /tmp (256 MiB) and /dev/shm (64 MiB) are the only other writable places."
    ).tag(config=True)
    bwrap_path = Unicode("bwrap", help="The bubblewrap executable, a name on PATH or a path.").tag(config=True)
    fork_server = Bool(
        True, help="As root, start kernels as forks of a server that has torch imported (coursekit.sandbox.fork_server); "
        "otherwise, or when False, bubblewrap starts each kernel afresh."
    ).tag(config=True)
    allow_grading_without_sandbox = Bool(
        False, help="Grade without bubblewrap when it is missing. Student code then runs with your rights."
    ).tag(config=True)

    client_class = DottedObjectName("coursekit.sandbox.kernel_client.BoundedKernelClient")
    client_factory = Type(kernel_client.BoundedKernelClient)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Unix sockets in private folders: a TCP port on the host's loopback
        # is unreachable from the sandbox's own network namespace. The kernel binds
        # its sockets in the folder it sees; the grading process connects to the channel
        # guard's, in a folder the sandbox does not see.
        self.transport = "ipc"
        self._private_folder = Path(tempfile.mkdtemp(prefix="coursekit-kernel-"))
        os.chmod(self._private_folder, 0o711)
        self._channels_folder = Path(tempfile.mkdtemp(prefix="coursekit-channels-"))  # mode 0700
        self.ip = str(self._channels_folder / "kernel")
        self.connection_file = str(self._channels_folder / "connection.json")
        self.kernel_connection_file = str(self._private_folder / "connection.json")
        self._sandbox_uid = random.randint(200000, 299999) if os.geteuid() == 0 else os.geteuid()
        self._home_mounted = False
        self._cgroup: cgroups.KernelCgroup | None = None
        self._kernel_arguments: list[str] = []

    def bwrap(self) -> str | None:
        bwrap = shutil.which(self.bwrap_path)
        reason = f"{self.bwrap_path} is not installed" if bwrap is None else bwrap_works(bwrap)
        if reason is None:
            return bwrap
        if self.allow_grading_without_sandbox:
            self.log.warning("Grading WITHOUT a sandbox (%s): allow_grading_without_sandbox is set.", reason)
            return None
        self.release_sandbox()  # the run stops here: no clean-up follows
        raise SandboxUnavailable(f"coursekit: cannot sandbox student code ({reason}). {INSTALL_HINT}")

    def format_kernel_cmd(self, extra_arguments=None):
        # The kernel is the hardened one whatever the notebook's kernelspec says.
        # -I: files in the working folder must not shadow the modules the kernel itself imports.
        # The extra arguments are the grading process's (nbclient's --HistoryManager.hist_file=:memory:
        # among them: without it IPython writes every cell into an SQLite file).
        self._kernel_arguments = [str(argument) for argument in extra_arguments or []]
        kernel = [sys.executable, "-I", "-m", KERNEL_MODULE, "-f", self.kernel_connection_file,
                  *self._kernel_arguments]
        if self.kernel_spec is not None:
            self.kernel_spec.interrupt_mode = "message"  # signals do not cross the sandbox's session
        self.prepare_private_folder()
        self.prepare_cgroups()
        self.write_kernel_connection_file()
        use_server = self.fork_server and os.geteuid() == 0
        server = ForkServer.shared(environment=sandbox_environment()) if use_server else None
        if server is not None:
            return server.relay_command(self.fork_server_request(), beside=self.channel_guard_command())
        if use_server:
            self.log.warning("No fork server (%s): bubblewrap starts each kernel.", ForkServer.failure)
        bwrap = self.bwrap()
        # Through the relay, like a fork-server kernel: capped output, the cgroup, the seccomp program,
        # the channel guard beside the kernel.
        relay = [sys.executable, "-I", "-S", kernel_relay.__file__, "--run",
                 json.dumps({"cgroups": self.cgroups(), "seccomp": self.seccomp_program().hex() if bwrap else "",
                             "beside": self.channel_guard_command()}), "--"]
        if bwrap is None:
            return relay + kernel
        return (relay + self.limits() + [bwrap] + self.sandbox_arguments() + ["--"] + self.drop_privileges()
                + kernel)

    def cgroups(self) -> list[str]:
        """The folders of the kernel's cgroups: what its sandbox and its channel guard join."""
        return list(self._cgroup.folders) if self._cgroup else []

    def cpu_seconds(self) -> float | None:
        """The CPU time the kernel's sandbox and its channel guard used so far; None without a cpu cgroup."""
        if self._cgroup is None or self._cgroup.usage_file is None:
            return None
        return cgroups.cpu_seconds(self._cgroup.usage_file)

    def memory_capped(self) -> bool:
        return self._cgroup is not None and self._cgroup.memory_capped

    def write_kernel_connection_file(self) -> None:
        """The connection file the kernel reads: its sockets in the folder it sees, the same key."""
        info = self.get_connection_info()
        info.update(ip=str(self._private_folder / "kernel"), key=self.session.key.decode())
        descriptor = os.open(self.kernel_connection_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "w") as file:
            json.dump(info, file)

    def endpoints(self, ip: str) -> dict[str, str]:
        return {channel: f"ipc://{ip}-{getattr(self, f'{channel}_port')}"
                for channel in channel_guard.CHANNELS}

    def channel_guard_command(self) -> list[str]:
        """The channel guard's command: the only way the kernel's messages reach this process."""
        limits = kernel_client.CHANNEL_LIMITS
        config = {
            "kernel": self.endpoints(str(self._private_folder / "kernel")), "grader": self.endpoints(self.ip),
            "limits": {channel: [limit.largest_message_bytes, limit.most_frames] for channel, limit in limits.items()},
            "cgroups": self.cgroups(),
            "address_space_bytes": None if self.memory_capped() else GUARD_ADDRESS_SPACE_BYTES,
        }
        return [sys.executable, "-I", channel_guard.__file__, json.dumps(config)]

    def _create_connected_socket(self, channel: str, identity: bytes | None = None):
        # The manager's own control socket (interrupts): never read, yet bounded like the client's.
        return kernel_client.connected_socket(self, channel, identity)

    def seccomp_program(self) -> bytes:
        return seccomp.program(refuse_memfd=self.address_space_bytes() is not None)

    def address_space_bytes(self) -> int | None:
        if self.memory_capped():
            return None
        return self.memory_limit_mib * MIB + ADDRESS_SPACE_HEADROOM_BYTES

    def limits(self) -> list[str]:
        processes = self.process_limit
        if os.geteuid() != 0:  # the cap counts all processes of this user, not only the sandbox's
            processes += len([p for p in os.listdir("/proc") if p.isdigit()])
        address_space = self.address_space_bytes()
        return ["prlimit", f"--data={self.memory_limit_mib * MIB}", f"--nproc={processes}",
                f"--fsize={self.file_size_limit_mib * MIB}", "--core=0",
                *([f"--as={address_space}"] if address_space else []), "--"]

    def prepare_private_folder(self) -> None:
        """As root, the private folder (connection file, sockets, home copy) becomes a size-capped tmpfs.

        So the home copy and anything written to it or next to the sockets
        never reaches the host's disk, and the home's mount shows no host path.
        """
        if os.geteuid() != 0 or self._home_mounted:
            return
        # jupyter_client wrote the connection file already: it moves onto the tmpfs.
        kept = {path: path.read_bytes() for path in self._private_folder.iterdir() if path.is_file()}
        namespaces.mount("tmpfs", str(self._private_folder), "tmpfs", namespaces.MS_NOSUID | namespaces.MS_NODEV,
                         namespaces.tmpfs_options(self.home_size_limit_mib * MIB, mode="0711"))
        self._home_mounted = True
        for path, content in kept.items():
            path.touch(mode=0o600)
            path.write_bytes(content)

    _caps_said_in: int | None = None  # the process that logged the memory and CPU lines

    def prepare_cgroups(self) -> None:
        if self._cgroup is not None:
            return  # a restart keeps the kernel's cgroups
        memory = cgroups.find_home() if self.memory_cgroup else "switched off by SandboxedKernelManager.memory_cgroup"
        cpu = cgroups.find_cpu_home() if self.cpu_cgroup else "switched off by SandboxedKernelManager.cpu_cgroup"
        share = cgroups.CpuShare(weight=self.cpu_weight, cores=self.cpu_limit)
        try:
            self._cgroup = cgroups.create(
                memory_bytes=self.memory_limit_mib * MIB if isinstance(memory, cgroups.CgroupHome) else None,
                cpu=share if isinstance(cpu, cgroups.CgroupHome) else None)
        except OSError as error:
            memory = cpu = f"cannot create one: {error.strerror or error}"
        if SandboxedKernelManager._caps_said_in != os.getpid():
            SandboxedKernelManager._caps_said_in = os.getpid()
            (self.log.info if self.memory_capped() else self.log.warning)(
                memory_cap_summary(memory, self.memory_limit_mib))
            (self.log.info if self._cgroup and self._cgroup.cpu_shared else self.log.warning)(
                cpu_share_summary(cpu, share))

    def release_sandbox(self) -> None:
        """Kill what is left of the sandbox, remove its cgroup and its private folder."""
        if self._cgroup is not None:
            for folder in self._cgroup.folders:
                cgroups.remove(folder)
            self._cgroup = None
        if self._home_mounted:
            try:
                namespaces.unmount(str(self._private_folder))
            except namespaces.SandboxError as error:
                self.log.warning("coursekit: %s", error)
            self._home_mounted = False
        shutil.rmtree(self._private_folder, ignore_errors=True)
        shutil.rmtree(self._channels_folder, ignore_errors=True)

    def drop_privileges(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        uid = str(self._sandbox_uid)
        return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                "--no-new-privs", "--"]

    def fork_server_request(self) -> dict:
        """What coursekit.sandbox.fork_server needs to build the same sandbox as sandbox_arguments()."""
        return {
            "connection_file": self.kernel_connection_file, "private_folder": str(self._private_folder),
            "home": {"outside": str(self.student_work_copy()), "inside": SANDBOX_HOME},
            "uid": self._sandbox_uid, "memory_bytes": self.memory_limit_mib * MIB,
            "address_space_bytes": self.address_space_bytes(), "cgroups": self.cgroups(),
            "processes": self.process_limit, "file_size_bytes": self.file_size_limit_mib * MIB,
            "system_folders": list(SYSTEM_FOLDERS), "system_files": list(SYSTEM_FILES),
            "read_only": python_folders(), "kit": kit_view(), "environment": sandbox_environment(),
            "kernel_arguments": list(self._kernel_arguments),
        }

    def sandbox_arguments(self) -> list[str]:
        work_copy = self.student_work_copy()
        arguments = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                     "--die-with-parent", "--new-session", "--hostname", "jupyter"]
        if os.geteuid() != 0:
            arguments.append("--unshare-user")
        arguments += read_only_binds()
        # /tmp first: the private folder below lives under it and must stay visible.
        arguments += ["--perms", "01777", "--size", str(namespaces.TMP_BYTES), "--tmpfs", "/tmp",
                      "--proc", "/proc", "--dev", "/dev",
                      "--perms", "01777", "--size", str(namespaces.SHM_BYTES), "--tmpfs", "/dev/shm"]
        for file in SYSTEM_FILES:
            arguments += ["--ro-bind-try", file, file]
        created = set()
        kit = kit_view()
        for folder in python_folders() + [kit["folder"], str(self._private_folder), SANDBOX_HOME]:
            for parent in parents_of(folder):
                if parent not in created and parent not in SYSTEM_FOLDERS + ("/tmp",):
                    arguments += ["--perms", "0755", "--dir", parent]
                    created.add(parent)
        for folder in python_folders():
            arguments += ["--ro-bind", folder, folder]
        # The kit's folder (a checkout, or inside site-packages above) becomes an empty one showing
        # only the kernel-side package: nothing of the judge, references or grader is there to read.
        arguments += ["--perms", "0755", "--size", str(MIB), "--tmpfs", kit["folder"]]
        for shown in kit["shown"]:
            arguments += ["--ro-bind", shown, shown]
        arguments += ["--remount-ro", kit["folder"]]
        arguments += ["--bind", str(self._private_folder), str(self._private_folder)]
        arguments += ["--bind", str(work_copy), SANDBOX_HOME, "--chdir", SANDBOX_HOME]
        arguments += ["--seccomp", str(kernel_relay.SECCOMP_FD), "--clearenv"]
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
        for path in [copy, *copy.rglob("*"), self._private_folder, Path(self.kernel_connection_file)]:
            if path.exists():
                os.chown(path, self._sandbox_uid, self._sandbox_uid, follow_symlinks=False)
        return copy

    async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False):
        # Killed at once: a graded kernel has nothing to save, and a polite
        # shutdown request costs ~0.8 s per notebook.
        await super()._async_shutdown_kernel(now=True, restart=restart)

    async def _async_wait(self, pollinterval: float = 0.005) -> None:
        # jupyter_client polls a killed kernel every 0.1 s until it is gone, so every
        # shutdown waits ~0.1 s for a relay that dies within milliseconds of SIGKILL.
        # (jupyter_client's KernelManager._async_wait; it has no setting for the interval.)
        await super()._async_wait(pollinterval=pollinterval)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        # Also reached without a shutdown, after a kernel was killed or died.
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            self.release_sandbox()

    # AsyncKernelManager binds the public names to its own coroutines, not to overrides.
    shutdown_kernel = _async_shutdown_kernel
    cleanup_resources = _async_cleanup_resources
