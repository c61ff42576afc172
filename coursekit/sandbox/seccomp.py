"""A seccomp filter for student code: refuse the system calls no exercise needs.

The sandboxed kernel already runs as an unprivileged user without
capabilities; this filter closes what such a user can still reach and what
has been the way out of sandboxes like this one: new user namespaces (which
hand back capabilities), debugging other processes, kernel keyrings, BPF,
userfaultfd and perf events (favourite exploit primitives), io_uring (a second
way to make most system calls, unseen by this filter), and mounting.

The program is classic BPF built here, in plain Python, so that no C
extension is needed; the fork server installs it in the kernel right before
the kernel starts, and bubblewrap gets the very same bytes via `--seccomp FD`.
Refused calls fail with EPERM, as they would for an unprivileged user, so
libraries that probe for them carry on; clone3 fails with ENOSYS, which makes
the C library fall back to clone, whose flags (unlike clone3's) the filter
can read. System calls of another architecture (32-bit calls on x86_64)
kill the process: nothing in a kernel makes them.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct

# Linux audit architectures and syscall numbers (asm/unistd_64.h, asm-generic/unistd.h).
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000
REFUSED_SYSCALLS = {
    # name: (x86_64, aarch64); None where the architecture has no such call
    "setns": (308, 268), "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433),
    "move_mount": (429, 429), "open_tree": (428, 428), "mount_setattr": (442, 442),
    "bpf": (321, 280), "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "userfaultfd": (323, 282), "perf_event_open": (298, 241),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294),
    "init_module": (175, 105), "finit_module": (313, 273), "delete_module": (176, 106),
    "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264),
    "swapon": (167, 224), "swapoff": (168, 225), "reboot": (169, 142), "acct": (163, 89),
    "quotactl": (179, 60), "quotactl_fd": (443, 443), "iopl": (172, None), "ioperm": (173, None),
    "fanotify_init": (300, 262), "lookup_dcookie": (212, 18), "syslog": (103, 116), "uselib": (134, None),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "memfd_secret": (447, 447),
}
# Memory in a memfd is written, not mapped: RLIMIT_AS never sees it. Refused
# only where no memory cgroup counts it.
MEMFD_CREATE = (319, 279)
UNSHARE = {"x86_64": 272, "aarch64": 97}
CLONE = {"x86_64": 56, "aarch64": 220}
CLONE3 = {"x86_64": 435, "aarch64": 435}
# Every namespace flag. CLONE_NEWTIME (0x80) only for unshare: in clone's flags those bits are the exit signal.
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
CLONE_NEWTIME = 0x00000080

# Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
LOAD_WORD, JUMP_EQUAL, JUMP_GREATER_EQUAL, JUMP_ANY_BIT, RETURN = 0x20, 0x15, 0x35, 0x45, 0x06
RET_KILL_PROCESS, RET_ERRNO, RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
NR_OFFSET, ARCH_OFFSET, FIRST_ARGUMENT_LOW_OFFSET = 0, 4, 16  # struct seccomp_data, little-endian
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


class SeccompUnavailable(Exception):
    pass


def instruction(code: int, k: int, jump_true: int = 0, jump_false: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jump_true, jump_false, k)


def refuse_with_namespace_flags(number: int, flags: int) -> list[bytes]:
    """The call `number` fails with EPERM when its first argument asks for a namespace; others go on."""
    return [
        instruction(JUMP_EQUAL, number, 0, 4),  # not this call: on to the next check
        instruction(LOAD_WORD, FIRST_ARGUMENT_LOW_OFFSET),
        instruction(JUMP_ANY_BIT, flags, 0, 1),
        instruction(RETURN, RET_ERRNO | errno.EPERM),
        instruction(RETURN, RET_ALLOW),
    ]


@functools.lru_cache(maxsize=None)
def program(machine: str | None = None, *, refuse_memfd: bool = False) -> bytes:
    """The filter, as the bytes of a `struct sock_filter` array."""
    machine = machine or os.uname().machine
    if machine not in AUDIT_ARCH:
        raise SeccompUnavailable(f"no seccomp filter for the {machine} architecture")
    column = 0 if machine == "x86_64" else 1
    code = [
        instruction(LOAD_WORD, ARCH_OFFSET),
        instruction(JUMP_EQUAL, AUDIT_ARCH[machine], 1, 0),
        instruction(RETURN, RET_KILL_PROCESS),
        instruction(LOAD_WORD, NR_OFFSET),
    ]
    if machine == "x86_64":  # the x32 ABI: the same calls under other numbers
        code += [instruction(JUMP_GREATER_EQUAL, X32_SYSCALL_BIT, 0, 1), instruction(RETURN, RET_ERRNO | errno.EPERM)]
    for numbers in [*REFUSED_SYSCALLS.values(), *([MEMFD_CREATE] if refuse_memfd else [])]:
        if numbers[column] is not None:
            code += [instruction(JUMP_EQUAL, numbers[column], 0, 1), instruction(RETURN, RET_ERRNO | errno.EPERM)]
    code += [instruction(JUMP_EQUAL, CLONE3[machine], 0, 1), instruction(RETURN, RET_ERRNO | errno.ENOSYS)]
    code += refuse_with_namespace_flags(UNSHARE[machine], CLONE_NAMESPACES | CLONE_NEWTIME)
    code += refuse_with_namespace_flags(CLONE[machine], CLONE_NAMESPACES)
    code.append(instruction(RETURN, RET_ALLOW))
    return b"".join(code)


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(compiled: bytes) -> None:
    """Apply the filter to this (single-threaded) process and all it starts; for good."""
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(compiled, len(compiled))
    fprog = SockFprog(len(compiled) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    for arguments, action in (((PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no new privileges"),
                              ((PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp filter")):
        if libc.prctl(*arguments) != 0:
            raise SeccompUnavailable(f"{action}: {os.strerror(ctypes.get_errno())}")
