"""A cgroup per sandboxed kernel: one cap on everything the kernel's sandbox holds in memory, one share of the CPU.

Memory. RLIMIT_DATA does not count shared memory (`mmap(-1, n)` in Python is
shared and anonymous) nor files in tmpfs; a memory cgroup counts all of it: the
processes' memory, shared memory and every tmpfs page they write (/tmp,
/dev/shm, the home folder). Each kernel's sandbox goes into its own cgroup
(cgroup v2 `memory.max`, or cgroup v1 `memory.limit_in_bytes` together with
`memory.memsw.limit_in_bytes`), created under the grading process's own, and
removed, with anything left in it killed, when the kernel is cleaned up.
Over the cap, the kernel's out-of-memory killer ends the largest process in
the sandbox: the kernel.

CPU. The scheduler shares the CPU between sessions (autogroups), so a kernel
whose processes each start a session of their own would get a share per
process: 120 busy processes would leave an honest neighbour's kernel a 61st of
two cores. In a cgroup of its own (v2 `cpu.weight` and `cpu.max`, v1
`cpu.shares` and `cpu.cfs_quota_us`), a notebook's processes share one weight
and one cap, whatever sessions they make. The same cgroup counts the CPU time
they use (v2 `cpu.stat`, v1 `cpuacct.usage`), so a notebook's time limits can
count its own CPU rather than the wall clock a busy machine stretches.

Needs root (or a delegated cgroup); where none can be had, the caller falls
back to RLIMIT_AS plus fixed tmpfs sizes for memory, to the wall clock for
time, and says so.
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


V1_CONTROLLERS = ("memory", "cpu", "cpuacct")
CPU_PERIOD_MICROSECONDS = 100_000


@dataclass(frozen=True)
class CgroupHome:
    """Where kernels' cgroups go: a folder of a hierarchy this process may create cgroups in."""

    folder: str
    version: int

    @property
    def description(self) -> str:
        return ("cgroup v2 memory.max" if self.version == 2 else
                "cgroup v1 memory.limit_in_bytes + memory.memsw.limit_in_bytes")


@dataclass(frozen=True)
class CpuShare:
    """One notebook's part of the CPU: a weight against the other notebooks, and a cap (0: none)."""

    weight: int = 100     # cgroup v2 cpu.weight (1 to 10000, default 100); v1 cpu.shares is 1024 / 100 of it
    cores: float = 0.0    # at most this many CPUs' time, all its processes together


@dataclass(frozen=True)
class KernelCgroup:
    """A kernel's cgroups: one folder per hierarchy (one in all under cgroup v2), joined and removed together."""

    folders: tuple[str, ...]
    memory_capped: bool
    cpu_shared: bool
    usage_file: str | None  # the CPU time of all its processes: v2 cpu.stat, v1 cpuacct.usage


def mount_points() -> dict[str, str]:
    """'memory' / 'cpu' / 'cpuacct' (cgroup v1 controllers) and 'v2' -> where its hierarchy is mounted."""
    points = {}
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split()
            separator = fields.index("-")
            fstype, super_options = fields[separator + 1], fields[separator + 3]
            if fstype == "cgroup":
                for controller in set(super_options.split(",")) & set(V1_CONTROLLERS):
                    points.setdefault(controller, fields[4])
            elif fstype == "cgroup2":
                points.setdefault("v2", fields[4])
    return points


def own_cgroups() -> dict[str, str]:
    """'memory' / 'cpu' / 'cpuacct' -> this process's cgroup path in that v1 hierarchy, 'v2' -> its unified one."""
    paths = {}
    with open("/proc/self/cgroup") as table:
        for line in table:
            hierarchy, controllers, path = line.rstrip("\n").split(":", 2)
            if hierarchy == "0" and controllers == "":
                paths["v2"] = path
            for controller in set(controllers.split(",")) & set(V1_CONTROLLERS):
                paths[controller] = path
    return paths


def v1_folder(controller: str) -> str | None:
    points, paths = mount_points(), own_cgroups()
    if controller in points and controller in paths:
        return os.path.normpath(points[controller] + paths[controller])
    return None


def read(path: str) -> str:
    with open(path) as file:
        return file.read()


def write(path: str, value: str) -> None:
    with open(path, "w") as file:
        file.write(value)


def find_controller_home(controller: str, v1_probe: str) -> CgroupHome | str:
    """Where kernels' cgroups of `controller` ('memory', 'cpu') can be made, or why they cannot.

    cgroup v2: this process's own cgroup, with the controller enabled for its children (which fails
    while processes sit in it); v1: the controller's hierarchy, if `v1_probe` in it is writable.
    """
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
            if controller not in read(f"{folder}/cgroup.controllers").split():
                raise OSError(f"the {controller} controller is not available there")
            if controller not in read(f"{folder}/cgroup.subtree_control").split():
                write(f"{folder}/cgroup.subtree_control", f"+{controller}")
            return CgroupHome(folder, 2)
        except OSError as error:
            reasons.append(f"cgroup v2 at {folder}: {error.strerror or error}")
    folder = v1_folder(controller)
    if folder is not None:
        if os.access(f"{folder}/{v1_probe}", os.W_OK):
            return CgroupHome(folder, 1)
        reasons.append(f"cgroup v1 at {folder}: not writable")
    return "; ".join(reasons) or f"no {controller} cgroup hierarchy is mounted"


@functools.lru_cache(maxsize=None)
def find_home() -> CgroupHome | str:
    """Where kernels' memory cgroups can be made, or why they cannot (checked once per process)."""
    return find_controller_home("memory", "memory.limit_in_bytes")


@functools.lru_cache(maxsize=None)
def find_cpu_home() -> CgroupHome | str:
    """Where kernels' CPU cgroups can be made, or why they cannot (checked once per process)."""
    return find_controller_home("cpu", "cpu.shares")


def create(*, memory_bytes: int | None, cpu: CpuShare | None) -> KernelCgroup | None:
    """A kernel's new cgroups: memory capped at `memory_bytes` (memory and swap together), CPU shared as `cpu`.

    Either may be None (not wanted); each that is wanted must have its home (find_home,
    find_cpu_home). None when neither is wanted.
    """
    homes = {}  # hierarchy's folder -> version; the kernel gets one cgroup in each
    memory_home = find_home() if memory_bytes is not None else None
    cpu_home = find_cpu_home() if cpu is not None else None
    for home in (memory_home, cpu_home):
        if home is not None:
            assert isinstance(home, CgroupHome), home
            homes[home.folder] = home.version
    if cpu_home is not None and cpu_home.version == 1:
        accounting = v1_folder("cpuacct")  # co-mounted with cpu, or a hierarchy of its own
        if accounting is not None and os.access(accounting, os.W_OK):
            homes.setdefault(accounting, 1)
    if not homes:
        return None
    name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    folders = []
    try:
        for home, version in homes.items():
            remove_abandoned(home)
            folder = f"{home}/{name}"
            os.mkdir(folder)
            folders.append(folder)
            if memory_home is not None and home == memory_home.folder:
                limit_memory(folder, version, memory_bytes)
            if cpu_home is not None and home == cpu_home.folder:
                share_cpu(folder, version, cpu)
    except OSError:
        for folder in folders:
            remove(folder)
        raise
    return KernelCgroup(folders=tuple(folders), memory_capped=memory_home is not None, cpu_shared=cpu_home is not None,
                        usage_file=usage_file(folders))


def limit_memory(folder: str, version: int, limit_bytes: int) -> None:
    if version == 2:
        write(f"{folder}/memory.max", str(limit_bytes))
        if os.path.exists(f"{folder}/memory.swap.max"):
            write(f"{folder}/memory.swap.max", "0")
        write(f"{folder}/memory.oom.group", "1")  # over the cap, the whole sandbox goes at once
    else:
        write(f"{folder}/memory.limit_in_bytes", str(limit_bytes))
        if os.path.exists(f"{folder}/memory.memsw.limit_in_bytes"):  # swap accounting is on
            write(f"{folder}/memory.memsw.limit_in_bytes", str(limit_bytes))


def share_cpu(folder: str, version: int, share: CpuShare) -> None:
    quota = round(share.cores * CPU_PERIOD_MICROSECONDS) if share.cores > 0 else None
    if version == 2:
        write(f"{folder}/cpu.weight", str(share.weight))
        write(f"{folder}/cpu.max", f"{quota or 'max'} {CPU_PERIOD_MICROSECONDS}")
    else:
        write(f"{folder}/cpu.shares", str(max(2, share.weight * 1024 // 100)))
        write(f"{folder}/cpu.cfs_period_us", str(CPU_PERIOD_MICROSECONDS))
        write(f"{folder}/cpu.cfs_quota_us", str(quota or -1))


def usage_file(folders: list[str]) -> str | None:
    for folder in folders:
        for name in ("cpuacct.usage", "cpu.stat"):
            if os.path.exists(f"{folder}/{name}") and (name != "cpu.stat" or "usage_usec" in read(f"{folder}/{name}")):
                return f"{folder}/{name}"
    return None


def cpu_seconds(usage: str) -> float | None:
    """The CPU time all processes of a kernel's cgroup used so far; None once it is gone."""
    try:
        text = read(usage)
    except OSError:
        return None
    if usage.endswith("cpuacct.usage"):
        return int(text) / 1e9
    fields = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
    return int(fields["usage_usec"]) / 1e6


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
