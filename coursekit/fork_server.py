"""A fork server that starts sandboxed kernels with torch already imported.

Starting a kernel costs about 2 s, almost all of it `import torch`; grading a
notebook takes about 1 s more. So one server per grading process imports
torch, ipykernel and the hidden checks once, and every kernel is a fork of it
that builds the same sandbox bubblewrap builds, before any student code runs:

    server ── per kernel ──> monitor (host namespaces; kills the sandbox when the relay goes)
                              └─> init (pid 1 of new pid, mount, network, IPC and UTS
                                   namespaces; builds the read-only root, reaps orphans)
                                   └─> kernel (own session, resource limits, random
                                        unprivileged uid, no new privileges)

Needs root (to create the namespaces without a user namespace); without it
the kernel manager uses bubblewrap per kernel. Run by coursekit.sandbox as
`python -I -m coursekit.fork_server <socket>`.
"""
from __future__ import annotations

import ctypes
import json
import os
import random
import resource
import select
import shutil
import signal
import socket
import sys
import tempfile

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41}
CAPABILITY_VERSION_3 = 0x20080522
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(error)}")


def unshare(flags: int) -> None:
    _check(libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda text: None if text is None else text.encode()  # noqa: E731
    _check(libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)),
           f"mount {target}")


def bind_mount(source: str, target: str, *, read_only: bool) -> None:
    mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        # A bind mount takes read-only only on a second, remounting call.
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def supported() -> str | None:
    """None when this machine lets the server build sandboxes, else the reason.

    Builds a throwaway sandbox in a child, so a machine that allows the
    namespaces but not the mounts (a container, a security module) is found
    out here, before any student's kernel fails to start.
    """
    if os.geteuid() != 0:
        return "it needs root"
    if os.uname().machine not in PIVOT_ROOT_SYSCALL:
        return f"no pivot_root number known for {os.uname().machine}"
    from .sandbox import SANDBOX_HOME, SYSTEM_FILES, SYSTEM_FOLDERS

    folder = tempfile.mkdtemp(prefix="coursekit-probe-")
    os.mkdir(os.path.join(folder, "home"))
    request = {"private_folder": folder, "home": {"outside": os.path.join(folder, "home"), "inside": SANDBOX_HOME},
               "system_folders": list(SYSTEM_FOLDERS), "system_files": list(SYSTEM_FILES), "read_only": []}
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        try:
            unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
            build_root(request)
            os._exit(0)
        except BaseException as error:
            os.write(write_end, str(error).encode()[:500])
            os._exit(1)
    os.close(write_end)
    with os.fdopen(read_end) as reason:
        problem = reason.read()
    _, status = os.waitpid(child, 0)
    shutil.rmtree(folder, ignore_errors=True)
    return None if os.waitstatus_to_exitcode(status) == 0 else f"cannot build a sandbox ({problem or 'unknown'})"


# ---------------------------------------------------------------- the sandbox

def build_root(request: dict) -> None:
    """Make a new root holding only what the kernel may see, and switch to it (like bwrap)."""
    new_root = os.path.join(request["private_folder"], "root")
    os.makedirs(new_root, exist_ok=True)
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here may reach the host
    mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")

    def inside(path: str) -> str:
        return new_root + path

    def make_folder(path: str) -> None:
        os.makedirs(inside(path), mode=0o755, exist_ok=True)

    for folder in request["system_folders"]:
        if os.path.islink(folder):  # a merged /usr: /lib must stay a link inside too
            os.symlink(os.readlink(folder), inside(folder))
        elif os.path.isdir(folder):
            make_folder(folder)
            bind_mount(folder, inside(folder), read_only=True)
    # /tmp before the private folder, which lives under it and must stay visible.
    make_folder("/tmp")
    mount("tmpfs", inside("/tmp"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for path in request["system_files"]:
        if os.path.isfile(path):
            make_folder(os.path.dirname(path))
            open(inside(path), "a").close()
            bind_mount(path, inside(path), read_only=True)
    for folder in request["read_only"]:
        make_folder(folder)
        bind_mount(folder, inside(folder), read_only=True)
    make_folder(request["private_folder"])
    mount(request["private_folder"], inside(request["private_folder"]), None, MS_BIND)
    make_folder(request["home"]["inside"])
    bind_mount(request["home"]["outside"], inside(request["home"]["inside"]), read_only=False)
    make_folder("/proc")
    mount("proc", inside("/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    build_dev(inside("/dev"))
    mount(None, new_root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(new_root)
    _check(libc.syscall(PIVOT_ROOT_SYSCALL[os.uname().machine], b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")


def build_dev(dev: str) -> None:
    os.makedirs(dev, mode=0o755, exist_ok=True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=0755")
    for device in DEVICES:
        if os.path.exists(f"/dev/{device}"):
            open(f"{dev}/{device}", "a").close()
            mount(f"/dev/{device}", f"{dev}/{device}", None, MS_BIND)
    os.mkdir(f"{dev}/shm", 0o1777)
    mount("tmpfs", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")


def drop_privileges(request: dict) -> None:
    for limit, value in ((resource.RLIMIT_DATA, request["memory_bytes"]), (resource.RLIMIT_NPROC, request["processes"]),
                         (resource.RLIMIT_FSIZE, request["file_size_bytes"]), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))
    uid = request["uid"]
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # clears the effective and permitted capabilities
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    _check(libc.capset(header, (ctypes.c_uint32 * 6)()), "clear inheritable capabilities")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no new privileges")


def become_kernel(request: dict, output_fds: list[int]) -> None:
    """Turn this fork into the sandboxed hardened kernel; never returns."""
    code = 1
    try:
        os.setsid()  # no controlling terminal to push keystrokes into
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(output_fds[0], 1)
        os.dup2(output_fds[1], 2)
        os.closerange(3, 65536)  # nothing of the server's may reach student code
        drop_privileges(request)
        os.environ.clear()
        os.environ.update(request["environment"])
        os.chdir(request["home"]["inside"])
        # Forks share the server's random state; a kernel of its own gets its own.
        random.seed()
        import numpy

        numpy.random.seed()
        from ipykernel.kernelapp import IPKernelApp

        from .hardened_kernel import HardenedKernel

        IPKernelApp.launch_instance(kernel_class=HardenedKernel, argv=["-f", request["connection_file"]])
        code = 0
    except BaseException as error:  # the kernel's end, whatever it is, must not return into the server
        print(f"coursekit kernel: {type(error).__name__}: {error}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def become_init(request: dict, output_fds: list[int]) -> None:
    """pid 1 of the sandbox: builds it, starts the kernel, reaps orphans; never returns."""
    try:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
        try:
            unshare(CLONE_NEWCGROUP)
        except SandboxError:
            pass  # old kernels: the cgroup view is only information
        socket.sethostname("jupyter")
        build_root(request)
        kernel = os.fork()
        if kernel == 0:
            become_kernel(request, output_fds)
        for fd in output_fds:
            os.close(fd)
        while True:
            pid, status = os.wait()
            if pid == kernel:
                # Leaving ends the pid namespace: every process the kernel left behind dies.
                os._exit(exit_code(status))
    except BaseException as error:
        print(f"coursekit sandbox: {type(error).__name__}: {error}", file=sys.stderr)
        os._exit(1)


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def serve_one(connection: socket.socket) -> None:
    """The monitor of one kernel: starts the sandbox, ends it when the relay goes; never returns."""
    init = None
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server's reaper must not take our child
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        message, output_fds, _, _ = socket.recv_fds(connection, 65536, 2)
        request = json.loads(message)
        sys.stdout.flush()
        sys.stderr.flush()
        unshare(CLONE_NEWPID)  # the next child is pid 1 of a new pid namespace
        init = os.fork()
        if init == 0:
            connection.close()
            become_init(request, output_fds)
        for fd in output_fds:
            os.close(fd)
        init_exit = os.pidfd_open(init)
        ready, _, _ = select.select([connection, init_exit], [], [])
        if init_exit in ready:
            _, status = os.waitpid(init, 0)
            connection.send(str(exit_code(status)).encode())
        else:  # the relay is gone: jupyter_client killed the kernel
            os.kill(init, signal.SIGKILL)
            os.waitpid(init, 0)
        os._exit(0)
    except BaseException as error:
        print(f"coursekit fork server: {type(error).__name__}: {error}", file=sys.stderr)
        if init:
            os.kill(init, signal.SIGKILL)
        os._exit(1)


def preimport() -> str | None:
    """Import what every kernel needs, once; the reason when that makes forking unsafe."""
    from .hardened_kernel import preimport_protected_modules

    preimport_protected_modules()
    import ipykernel.debugger  # noqa: F401
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401
    import ipykernel.zmqshell  # noqa: F401

    # A fork keeps only the forking thread: a thread pool started by an import
    # (OpenBLAS without OMP_NUM_THREADS=1, say) would be half there in every kernel.
    threads = len(os.listdir("/proc/self/task"))
    return None if threads == 1 else f"importing torch started {threads - 1} thread(s)"


def serve(socket_path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(socket_path)
    listener.listen(16)
    signal.signal(signal.SIGCHLD, lambda *_: reap())
    print("ready", flush=True)
    while True:
        # The grading process holds our stdin: when it goes, so do we.
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            return
        if listener in ready:
            connection, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                serve_one(connection)
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
