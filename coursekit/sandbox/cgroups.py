"""A memory cgroup per sandboxed kernel: one cap on everything the kernel's sandbox holds in memory.

RLIMIT_DATA does not count shared memory (`mmap(-1, n)` in Python is shared
and anonymous) nor files in tmpfs; a memory cgroup counts all of it: the
processes' memory, shared memory and every tmpfs page they write (/tmp,
/dev/shm, the home folder). Each kernel's sandbox goes into its own cgroup
(cgroup v2 `memory.max`, or cgroup v1 `memory.limit_in_bytes` together with
`memory.memsw.limit_in_bytes`), created under the grading process's own, and
removed, with anything left in it killed, when the kernel is cleaned up.
Over the cap, the kernel's out-of-memory killer ends the largest process in
the sandbox: the kernel.

Needs root (or a delegated cgroup); where none can be had, the caller falls
back to RLIMIT_AS plus fixed tmpfs sizes and says so.
"""
from __future__ import annotations

import functools
import os
import secrets
import signal
import time
from dataclasses import dataclass

PREFIX = "coursekit-"
REMOVE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class CgroupHome:
    """Where kernels' cgroups go: a folder of the memory hierarchy this process may create cgroups in."""

    folder: str
    version: int

    @property
    def description(self) -> str:
        return ("cgroup v2 memory.max" if self.version == 2 else
                "cgroup v1 memory.limit_in_bytes + memory.memsw.limit_in_bytes")


def mount_points() -> dict[str, str]:
    """'v1' / 'v2' -> where the memory controller's hierarchy is mounted."""
    points = {}
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split()
            separator = fields.index("-")
            fstype, super_options = fields[separator + 1], fields[separator + 3]
            if fstype == "cgroup" and "memory" in super_options.split(","):
                points.setdefault("v1", fields[4])
            elif fstype == "cgroup2":
                points.setdefault("v2", fields[4])
    return points


def own_cgroups() -> dict[str, str]:
    """'v1' -> this process's memory cgroup path, 'v2' -> its unified cgroup path."""
    paths = {}
    with open("/proc/self/cgroup") as table:
        for line in table:
            hierarchy, controllers, path = line.rstrip("\n").split(":", 2)
            if hierarchy == "0" and controllers == "":
                paths["v2"] = path
            elif "memory" in controllers.split(","):
                paths["v1"] = path
    return paths


def read(path: str) -> str:
    with open(path) as file:
        return file.read()


def write(path: str, value: str) -> None:
    with open(path, "w") as file:
        file.write(value)


@functools.lru_cache(maxsize=None)
def find_home() -> CgroupHome | str:
    """Where kernels' memory cgroups can be made, or why they cannot (checked once per process)."""
    if os.geteuid() != 0:
        return "not root"
    try:
        points, paths = mount_points(), own_cgroups()
    except OSError as error:
        return f"cannot read the cgroup tables ({error})"
    reasons = []
    if "v2" in points and "v2" in paths:
        folder = os.path.normpath(points["v2"] + paths["v2"])
        try:
            if "memory" not in read(f"{folder}/cgroup.controllers").split():
                raise OSError("the memory controller is not available there")
            if "memory" not in read(f"{folder}/cgroup.subtree_control").split():
                write(f"{folder}/cgroup.subtree_control", "+memory")  # fails while processes sit in `folder`
            return CgroupHome(folder, 2)
        except OSError as error:
            reasons.append(f"cgroup v2 at {folder}: {error.strerror or error}")
    if "v1" in points and "v1" in paths:
        folder = os.path.normpath(points["v1"] + paths["v1"])
        if os.access(f"{folder}/memory.limit_in_bytes", os.W_OK):
            return CgroupHome(folder, 1)
        reasons.append(f"cgroup v1 at {folder}: not writable")
    return "; ".join(reasons) or "no memory cgroup hierarchy is mounted"


def create(*, limit_bytes: int) -> str:
    """A new memory cgroup capped at `limit_bytes`, memory and swap together; returns its folder."""
    home = find_home()
    assert isinstance(home, CgroupHome), home
    remove_abandoned(home.folder)
    folder = f"{home.folder}/{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    os.mkdir(folder)
    try:
        if home.version == 2:
            write(f"{folder}/memory.max", str(limit_bytes))
            if os.path.exists(f"{folder}/memory.swap.max"):
                write(f"{folder}/memory.swap.max", "0")
            write(f"{folder}/memory.oom.group", "1")  # over the cap, the whole sandbox goes at once
        else:
            write(f"{folder}/memory.limit_in_bytes", str(limit_bytes))
            if os.path.exists(f"{folder}/memory.memsw.limit_in_bytes"):  # swap accounting is on
                write(f"{folder}/memory.memsw.limit_in_bytes", str(limit_bytes))
    except OSError:
        os.rmdir(folder)
        raise
    return folder


def join(folder: str) -> None:
    """Move the calling process into the cgroup; what it starts from now on is in it too."""
    write(f"{folder}/cgroup.procs", "0")


def members(folder: str) -> list[int]:
    try:
        return [int(pid) for pid in read(f"{folder}/cgroup.procs").split()]
    except OSError:
        return []


def remove(folder: str) -> None:
    """Kill whatever is still in the cgroup and remove it; quietly, if it is gone already."""
    deadline = time.monotonic() + REMOVE_TIMEOUT_SECONDS
    while os.path.isdir(folder):
        for pid in members(folder):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                return  # a process stuck in the kernel; remove_abandoned retries later
            time.sleep(0.01)


def remove_abandoned(home: str) -> None:
    """Cgroups of grading processes that died without cleaning up."""
    for name in os.listdir(home):
        if not name.startswith(PREFIX):
            continue
        try:
            owner = int(name[len(PREFIX):].split("-")[0])
            os.kill(owner, 0)
        except ProcessLookupError:
            remove(f"{home}/{name}")
        except (ValueError, PermissionError):
            pass
