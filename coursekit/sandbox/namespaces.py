"""Linux namespaces, mounts and privileges: the sandbox bubblewrap builds, built by the fork server.

Everything here runs as root in a fork that is about to become a kernel;
nothing here runs student code. The mount options follow bubblewrap's: every
mount is nosuid and nodev, the system is read-only down to its submounts.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import resource
import socket
import struct

from coursekit.sandbox import seccomp

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41}
CAPABILITY_VERSION_3 = 0x20080522
SIOCSIFFLAGS, IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x8914, 0x1, 0x8, 0x40
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
MIB = 1024 * 1024
# Together with the home folder's (coursekit.sandbox.kernel_manager), the cap on all a kernel can write;
# tmpfs is memory, so the kernel's memory cgroup counts it too.
TMP_BYTES, SHM_BYTES = 256 * MIB, 64 * MIB
TMPFS_INODES = 65536

libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(Exception):
    pass


def raise_on_failure(result: int, action: str) -> None:
    if result != 0:
        raise SandboxError(f"{action}: {os.strerror(ctypes.get_errno())}")


def unshare(flags: int) -> None:
    raise_on_failure(libc.unshare(flags), "unshare")


def die_with_parent() -> None:
    raise_on_failure(libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0), "parent-death signal")


def mount(source: str | None, target: str, fstype: str | None, flags: int, options: str | None = None) -> None:
    def as_bytes(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    raise_on_failure(libc.mount(as_bytes(source), as_bytes(target), as_bytes(fstype), ctypes.c_ulong(flags),
                                as_bytes(options)), f"mount {target}")


def mounts_under(target: str) -> list[str]:
    with open("/proc/self/mountinfo") as table:
        points = [line.split()[4].replace("\\040", " ") for line in table]
    return [point for point in points if point == target or point.startswith(target.rstrip("/") + "/")]


def tmpfs_options(size_bytes: int, mode: str = "1777") -> str:
    return f"mode={mode},size={size_bytes},nr_inodes={TMPFS_INODES}"


def unmount(target: str) -> None:
    raise_on_failure(libc.umount2(target.encode(), MNT_DETACH), f"unmount {target}")


def bind_mount(source: str, target: str, *, read_only: bool, recursive: bool = True) -> None:
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    # Flags take effect only on a second, remounting call, and only on one
    # mount at a time: each submount is remounted too.
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (MS_RDONLY if read_only else 0)
    for point in mounts_under(target) if recursive else [target]:
        mount(None, point, None, flags)


def bring_up_loopback() -> None:
    """A new network namespace starts with its loopback down; bubblewrap brings it up, so do we."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as handle:
        fcntl.ioctl(handle, SIOCSIFFLAGS, struct.pack("16sH", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING))


def build_root(request: dict) -> None:
    """Make a new root holding only what the kernel may see, and switch to it."""
    new_root = os.path.join(request["private_folder"], "root")
    os.makedirs(new_root, exist_ok=True)
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted from here on may reach the host
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
    mount("tmpfs", inside("/tmp"), "tmpfs", MS_NOSUID | MS_NODEV, tmpfs_options(TMP_BYTES))
    for path in request["system_files"]:
        if os.path.isfile(path):
            make_folder(os.path.dirname(path))
            open(inside(path), "a").close()
            bind_mount(path, inside(path), read_only=True)
    for folder in request["read_only"]:
        make_folder(folder)
        bind_mount(folder, inside(folder), read_only=True)
    if request.get("kit"):
        show_only(request["kit"]["folder"], request["kit"]["shown"], inside)
    make_folder(request["private_folder"])
    # Not recursive: the new root is mounted inside the private folder.
    bind_mount(request["private_folder"], inside(request["private_folder"]), read_only=False, recursive=False)
    make_folder(request["home"]["inside"])
    bind_mount(request["home"]["outside"], inside(request["home"]["inside"]), read_only=False)
    make_folder("/proc")
    mount("proc", inside("/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    build_dev(inside("/dev"))
    mount(None, new_root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(new_root)
    raise_on_failure(libc.syscall(PIVOT_ROOT_SYSCALL[os.uname().machine], b".", b"."), "pivot_root")
    raise_on_failure(libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")


def show_only(folder: str, shown: list[str], inside) -> None:
    """Replace `folder` in the new root by an empty read-only one that shows only the entries `shown`.

    The kit's folder may lie inside a folder mounted above (site-packages): a
    tmpfs on top hides all of it, then each shown file or folder is bound back.
    """
    if not os.path.isdir(inside(folder)):
        os.makedirs(inside(folder), mode=0o755)
    mount("tmpfs", inside(folder), "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0755,size={MIB}")
    for path in shown:
        if os.path.isdir(path):
            os.mkdir(inside(path), 0o755)
        elif os.path.isfile(path):
            open(inside(path), "a").close()
        else:
            continue
        bind_mount(path, inside(path), read_only=True)
    mount(None, inside(folder), None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def build_dev(dev: str) -> None:
    os.makedirs(dev, mode=0o755, exist_ok=True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=0755")
    for device in DEVICES:
        if os.path.exists(f"/dev/{device}"):
            open(f"{dev}/{device}", "a").close()
            mount(f"/dev/{device}", f"{dev}/{device}", None, MS_BIND)
    os.mkdir(f"{dev}/shm", 0o1777)
    mount("tmpfs", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, tmpfs_options(SHM_BYTES))
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")


def drop_privileges(request: dict) -> None:
    """Limits, then an unprivileged user with no capabilities that can never gain any, then the seccomp filter."""
    limits = [(resource.RLIMIT_DATA, request["memory_bytes"]), (resource.RLIMIT_NPROC, request["processes"]),
              (resource.RLIMIT_FSIZE, request["file_size_bytes"]), (resource.RLIMIT_CORE, 0)]
    if request.get("address_space_bytes"):  # no memory cgroup: shared memory counts only here
        limits.append((resource.RLIMIT_AS, request["address_space_bytes"]))
    for limit, value in limits:
        resource.setrlimit(limit, (value, value))
    uid = request["uid"]
    if uid == 0:
        raise SandboxError("refusing to run student code as root")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # clears the effective and permitted capabilities
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    raise_on_failure(libc.capset(header, (ctypes.c_uint32 * 6)()), "clear inheritable capabilities")
    raise_on_failure(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no new privileges")
    # Changing uid made the process undumpable (its /proc entries root's); a
    # kernel bubblewrap starts is exec'd after the change and is not.
    raise_on_failure(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable like an exec'd kernel")
    try:
        seccomp.install(seccomp.program(refuse_memfd=bool(request.get("address_space_bytes"))))
    except seccomp.SeccompUnavailable as error:
        raise SandboxError(str(error)) from None
