"""A fork server that starts sandboxed kernels with torch already imported.

Starting a kernel costs about 2 s, almost all of it `import torch`; grading a
notebook takes about 1 s more. So one server per grading process imports
torch, ipykernel and the kernel-side package (coursekit.recorder) once, and
every kernel is a fork of it that builds the sandbox bubblewrap builds
(coursekit.sandbox.namespaces) before any student code runs, then forgets
every module of the kit but coursekit.recorder:

    server ── per kernel ──> monitor (host namespaces; ends the sandbox when the relay goes)
                              └─> init (in the kernel's cgroups; pid 1 of new pid,
                                   mount, network, IPC and UTS namespaces; builds the
                                   read-only root, reaps orphans)
                                   └─> kernel (own session, resource limits, random
                                        unprivileged uid, no new privileges, seccomp filter)

jupyter_client starts coursekit/sandbox/kernel_relay.py as "the kernel", which asks
the server for one over a Unix socket in a root-only folder: that folder's
mode is what keeps anyone but the grading process from asking. Needs root
(the namespaces are made without a user namespace); without it the kernel
manager uses bubblewrap per kernel.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coursekit.sandbox import cgroups
from coursekit.sandbox import namespaces
from coursekit.sandbox.layout import SANDBOX_HOME, SYSTEM_FILES, SYSTEM_FOLDERS, kit_view
from coursekit.sandbox.namespaces import CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUTS

START_TIMEOUT_SECONDS = 120
NEW_NAMESPACES = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS


class ForkServer:
    """The grading process's side: starts the server at the first kernel and stops it at exit.

    A server serves the process that started it and that process's forks (parallel
    grading workers forked after `prestart` or a first kernel): starting one
    costs ~1 s and ~1.5 CPU-s (importing torch), once per run instead of once per
    worker. A fork never stops its parent's server.
    """

    _running: "ForkServer | None" = None
    failure: str | None = None  # why this process cannot have one, once that is known

    def __init__(self, environment: dict[str, str]) -> None:
        self.owner = os.getpid()
        self.folder = tempfile.mkdtemp(prefix="coursekit-forkserver-")  # mode 0700
        self.socket_path = os.path.join(self.folder, "socket")
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-m", "coursekit.sandbox.fork_server", self.socket_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment, cwd=self.folder,
        )
        self.status: str | None = None  # "ready" or "unavailable: why", once read
        atexit.register(self.stop)

    def wait_until_started(self) -> str:
        if self.status is None and os.getpid() == self.owner:
            ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT_SECONDS)
            self.status = (self.process.stdout.readline().strip() if ready else "") or "unavailable: it did not start"
        elif self.status is None:
            # A fork of the owner: its siblings may wait too, and only one of them could read
            # the status line. The server listens right after it made its socket.
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while not os.path.exists(self.socket_path) and self.alive(require_socket=False):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            self.status = "ready" if self.alive() else "unavailable: it did not start"
        return self.status

    @classmethod
    def prestart(cls, *, environment: dict[str, str]) -> None:
        """Start this process's server now without waiting for it: it imports torch while the caller goes on.

        Call it early in a grading run (and before forking workers, which then share
        it); the first kernel waits for what is left of the start.
        """
        if cls._running is None and cls.failure is None and os.geteuid() == 0:
            cls._running = cls(environment)

    @classmethod
    def shared(cls, *, environment: dict[str, str]) -> "ForkServer | None":
        """This process's running server, started if need be; None when it cannot run here (see `failure`)."""
        running = cls._running
        if running is not None and not running.alive(require_socket=running.status is not None):
            # A server that died (out of memory, say) is replaced, or every kernel would fail.
            cls._running = running = None
        if running is None and cls.failure is None:
            running = cls._running = cls(environment)
        if running is not None and running.wait_until_started() != "ready":
            cls.failure = running.status.removeprefix("unavailable: ")
            running.stop()
            cls._running = None
        return cls._running

    def alive(self, *, require_socket: bool = True) -> bool:
        if os.getpid() == self.owner:
            return self.process.poll() is None
        # A fork cannot wait for its parent's child: ask the system instead.
        try:
            with open(f"/proc/{self.process.pid}/stat") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X") and (os.path.exists(self.socket_path) or not require_socket)

    @classmethod
    def stop_if_started_here(cls) -> None:
        if cls._running is not None:
            cls._running.stop()

    def relay_command(self, request: dict, *, beside: list[str] | None = None) -> list[str]:
        """The relay's command; `beside`: a command the relay runs as long as the kernel (see kernel_relay)."""
        relay = str(Path(__file__).with_name("kernel_relay.py"))
        return [sys.executable, "-I", "-S", relay, "--fork-server", self.socket_path, json.dumps(request),
                json.dumps({"beside": beside})]

    def stop(self) -> None:
        if os.getpid() != self.owner:
            return
        if self.process.poll() is None:
            self.process.stdin.close()  # the server leaves at once when its stdin closes
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


# ----------------------------------------------------------------- the server

def supported() -> str | None:
    """None when this machine lets the server build sandboxes, else the reason.

    Builds a throwaway sandbox the way a kernel's is built, so a machine that
    allows the namespaces but not the mounts (a container, a security module)
    is found out before any student's kernel fails to start.
    """
    if os.geteuid() != 0:
        return "it needs root"
    if os.uname().machine not in namespaces.PIVOT_ROOT_SYSCALL:
        return f"no pivot_root number known for {os.uname().machine}"

    folder = tempfile.mkdtemp(prefix="coursekit-probe-")
    os.mkdir(os.path.join(folder, "home"))
    request = {"private_folder": folder, "home": {"outside": os.path.join(folder, "home"), "inside": SANDBOX_HOME},
               "system_folders": list(SYSTEM_FOLDERS), "system_files": list(SYSTEM_FILES), "read_only": [],
               "kit": kit_view(), "uid": 299999, "memory_bytes": 2**30, "processes": 64, "file_size_bytes": 2**20}
    read_end, write_end = os.pipe()

    def build_and_drop_privileges() -> int:
        enter_sandbox(request)
        namespaces.drop_privileges(request)
        return 0

    def start_init() -> int:
        namespaces.unshare(CLONE_NEWPID)  # as for a kernel: the init below is pid 1 of its own namespace
        init = os.fork()
        if init == 0:
            exit_reporting_errors(build_and_drop_privileges, write_end)
        os.pidfd_open(init)  # the monitor needs it (Linux 5.3 or newer)
        return os.waitstatus_to_exitcode(os.waitpid(init, 0)[1])

    probe = os.fork()
    if probe == 0:
        exit_reporting_errors(start_init, write_end)
    os.close(write_end)
    with os.fdopen(read_end) as reason:
        problem = reason.read()
    _, status = os.waitpid(probe, 0)
    shutil.rmtree(folder, ignore_errors=True)
    return None if os.waitstatus_to_exitcode(status) == 0 else f"cannot build a sandbox ({problem or 'unknown'})"


def exit_reporting_errors(action, errors: int) -> None:
    """Leave this fork with action()'s exit code; if it raises, with 1 and its message written to `errors`."""
    code = 1
    try:
        code = action()
    except BaseException as error:
        os.write(errors, str(error).encode()[:500])
    finally:
        os._exit(code)


def preimport() -> str | None:
    """Import what every kernel needs, once; the reason when that makes forking unsafe."""
    from coursekit.recorder.kernel import preimport_protected_modules, warm_up_tracebacks

    preimport_protected_modules()
    import ipykernel.debugger  # noqa: F401
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401
    import ipykernel.zmqshell  # noqa: F401

    warm_up_tracebacks()

    # A fork keeps only the forking thread: a thread pool started by an import
    # (OpenBLAS without OMP_NUM_THREADS=1, say) would be half there in every kernel.
    threads = len(os.listdir("/proc/self/task"))
    return None if threads == 1 else f"importing torch started {threads - 1} thread(s)"


def enter_sandbox(request: dict) -> None:
    namespaces.unshare(NEW_NAMESPACES)
    try:
        namespaces.unshare(CLONE_NEWCGROUP)
    except namespaces.SandboxError:
        pass  # old kernels: the cgroup view is only information
    socket.sethostname("jupyter")
    namespaces.bring_up_loopback()
    namespaces.build_root(request)


def become_kernel(request: dict, output_fds: list[int]) -> None:
    """Turn this fork into the sandboxed hardened kernel; never returns."""
    code = 1
    try:
        os.setsid()  # no controlling terminal to push keystrokes into
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(output_fds[0], 1)
        os.dup2(output_fds[1], 2)
        close_inherited_descriptors()
        namespaces.drop_privileges(request)
        os.environ.clear()
        os.environ.update(request["environment"])
        os.chdir(request["home"]["inside"])
        # CPython reseeds `random` in every fork; numpy's global generator it does not.
        import numpy

        numpy.random.seed()
        from ipykernel.kernelapp import IPKernelApp

        from coursekit.recorder.kernel import HardenedKernel

        arguments = ["-f", request["connection_file"], *request.get("kernel_arguments", [])]
        forget_the_server()
        IPKernelApp.launch_instance(kernel_class=HardenedKernel, argv=arguments)
        code = 0
    except BaseException as error:  # whatever ends the kernel, it must not return into the server's code
        print(f"coursekit kernel: {type(error).__name__}: {error}", file=sys.stderr)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def is_kernel_side(module_name: str) -> bool:
    return module_name in ("coursekit", "coursekit.recorder") or module_name.startswith("coursekit.recorder.")


def forget_the_server() -> None:
    """Leave the kernel nothing of the kit but coursekit.recorder, as bubblewrap's fresh kernels have.

    The fork inherited the server's modules (this one, the namespaces, cgroups
    and seccomp code): they go from sys.modules and from their packages, this
    module's globals keep only what the running frames below still use, and a
    collection frees the rest. Their files are not in the sandbox either.
    """
    import gc

    for name in [name for name in sys.modules if name.startswith("coursekit.") and not is_kernel_side(name)]:
        parent, _, child = name.rpartition(".")
        if parent in sys.modules and getattr(sys.modules[parent], child, None) is sys.modules[name]:
            delattr(sys.modules[parent], child)
        del sys.modules[name]
    kept = {"os": os, "sys": sys, "__name__": __name__}
    module_globals = globals()
    module_globals.clear()
    module_globals.update(kept)
    del kept, module_globals  # no local of this frame may keep a module alive through the collection
    gc.collect()


def close_inherited_descriptors() -> None:
    """Nothing of the server's may reach student code: close every descriptor but 0, 1 and 2."""
    for name in os.listdir("/proc/self/fd"):  # bounded, unlike a range up to SC_OPEN_MAX
        if int(name) > 2:
            try:
                os.close(int(name))
            except OSError:
                pass  # the listing's own descriptor, already gone


def become_init(request: dict, output_fds: list[int]) -> None:
    """pid 1 of the sandbox: builds it, starts the kernel, reaps orphans; never returns."""
    code = 1
    try:
        namespaces.die_with_parent()
        for folder in request.get("cgroups") or []:  # first: all the sandbox holds and uses counts from here on
            cgroups.join(folder)
        enter_sandbox(request)
        kernel = os.fork()
        if kernel == 0:
            become_kernel(request, output_fds)
        for fd in output_fds:
            os.close(fd)
        while True:
            pid, status = os.wait()
            if pid == kernel:
                # Leaving ends the pid namespace: every process the kernel left behind dies.
                code = exit_code(status)
                break
    except BaseException as error:
        print(f"coursekit sandbox: {type(error).__name__}: {error}", file=sys.stderr)
    finally:
        os._exit(code)


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def monitor_kernel(connection: socket.socket, server: int) -> None:
    """Start one sandboxed kernel and end it when its relay goes; never returns."""
    init = None
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server's reaper must not take our child
        namespaces.die_with_parent()
        if os.getppid() != server:
            return  # the server died before the line above
        message, output_fds, _, _ = socket.recv_fds(connection, 65536, 2)
        request = json.loads(message)
        namespaces.unshare(CLONE_NEWPID)  # the next child is pid 1 of a new pid namespace
        init = os.fork()
        if init == 0:
            connection.close()
            become_init(request, output_fds)
        for fd in output_fds:
            os.close(fd)
        init_exit = os.pidfd_open(init)
        ready, _, _ = select.select([connection, init_exit], [], [])
        if init_exit not in ready:  # the relay is gone: jupyter_client killed the kernel
            os.kill(init, signal.SIGKILL)
        _, status = os.waitpid(init, 0)
        init = None
        # The student's private copy goes with the sandbox, even if the manager's clean-up came first.
        shutil.rmtree(request["private_folder"], ignore_errors=True)
        try:
            connection.send(str(exit_code(status)).encode())
        except BrokenPipeError:
            pass  # the relay was killed: nobody is waiting for the exit code
        code = 0
    except BaseException as error:
        print(f"coursekit fork server: {type(error).__name__}: {error}", file=sys.stderr)
        if init:
            os.kill(init, signal.SIGKILL)
    finally:
        os._exit(code)


def serve(socket_path: str) -> None:
    server = os.getpid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(socket_path)
    listener.listen(16)
    signal.signal(signal.SIGCHLD, lambda *_: reap())
    print("ready", flush=True)
    while True:
        # The grading process holds our stdin: when it goes, so do we.
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            # At once: a normal exit finalizes torch and friends, ~0.5 s the grading run would wait
            # for. Nothing is left to clean up; each kernel's monitor dies with us (die_with_parent).
            os._exit(0)
        if listener in ready:
            connection, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                monitor_kernel(connection, server)
            connection.close()


def reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def main() -> None:
    problem = supported() or preimport()
    if problem:
        print(f"unavailable: {problem}", flush=True)
        return
    serve(sys.argv[1])


if __name__ == "__main__":
    main()
