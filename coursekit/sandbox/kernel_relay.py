"""The process jupyter_client starts in place of a sandboxed kernel.

It stands in for the kernel: it exits when the kernel exits, and when it is
killed the kernel and everything it started die too. So jupyter_client's
usual handling of a kernel process (poll, kill, wait) works unchanged.

    kernel_relay.py --fork-server SOCKET REQUEST [OPTIONS]
        asks the fork server (coursekit.sandbox.fork_server) for a kernel; when the
        relay goes, the server kills the sandbox.
    kernel_relay.py --run OPTIONS -- COMMAND...
        runs COMMAND (bubblewrap around a kernel) as its child: in the
        cgroups OPTIONS name, with the seccomp program OPTIONS hold on
        descriptor 3; bubblewrap's --die-with-parent ends it with the relay.

OPTIONS may name a command to run beside the kernel ("beside": the channel
guard, coursekit.sandbox.channel_guard, through which alone the kernel's messages
reach the grading process): when either ends, the relay ends the other and
leaves, so the grading process never talks to a kernel without its guard.

Either way the kernel writes into pipes this process reads: student code
never holds the grading process's stdout and stderr (a log file or a
terminal it could read or rewind). What it copies on is capped (a kernel that
writes 400 MiB must not fill the grading process's log or memory) and freed
of control sequences (escape codes must not reach the instructor's terminal).

Run with `python -I -S kernel_relay.py ...`: standard library only, so it
starts in milliseconds.
"""
import codecs
import ctypes
import json
import os
import re
import select
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1
DRAIN_SECONDS = 1.0
OUTPUT_LIMIT_BYTES = 1024 * 1024  # per kernel, stdout and stderr together
SECCOMP_FD = 3
# Escape sequences (CSI, OSC, DCS and the like, two-character ones), then any
# other control character but newline and tab, C1 controls included.
CONTROL_SEQUENCES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -/]*[0-~]"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def without_control_sequences(text: str, *, keep_colours_and_returns: bool = False) -> str:
    """Plain text for a terminal; for a notebook, colours (tracebacks) and carriage returns (progress bars) stay."""
    if not keep_colours_and_returns:
        return CONTROL_SEQUENCES.sub("", text)

    def kept(match: re.Match) -> str:
        found = match.group()
        return found if found == "\r" or COLOUR.fullmatch(found) else ""

    return CONTROL_SEQUENCES.sub(kept, text)


class CappedOutput:
    """Copies the kernel's output to this process's stdout and stderr, up to a limit, as plain text."""

    def __init__(self, targets: dict[int, int], limit: int = OUTPUT_LIMIT_BYTES) -> None:
        self.targets = targets  # pipe read end -> where its text goes
        self.decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in targets}
        self.left = limit
        self.limit = limit

    def copy(self, fd: int) -> bool:
        """Copy what is in the pipe; False once it is closed."""
        data = os.read(fd, 1024 * 1024)
        if not data:
            return False
        if self.left < 0:
            # Read on and drop: a closed pipe would block or break the kernel's
            # own copy of its output (ipykernel echoes fd-level output to us).
            return True
        text = without_control_sequences(self.decoders[fd].decode(data))
        write_all(self.targets[fd], text.encode()[: self.left])
        self.left -= len(data)
        if self.left < 0:
            notice = f"\ncoursekit: the kernel wrote more than {self.limit // 1024} KiB to its output; the rest is dropped\n"
            write_all(self.targets[fd], notice.encode())
        return True


def write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass  # our own output is gone (a closed terminal): the kernel goes on


def make_pipes() -> dict[int, tuple[int, int]]:
    """Kernel-side pipes: read end -> (our stdout or stderr, write end for the kernel)."""
    pipes = {}
    for target in (sys.stdout.fileno(), sys.stderr.fileno()):
        read_end, write_end = os.pipe()
        pipes[read_end] = (target, write_end)
    return pipes


def relay_output(pipes: dict[int, tuple[int, int]], finished, done_fds: list) -> None:
    """Copy the pipes until the kernel is gone: `finished(fd)` is called when one of `done_fds` is ready."""
    output = CappedOutput({read_end: target for read_end, (target, _) in pipes.items()})
    open_pipes = set(pipes)
    gone = False
    while open_pipes:
        if not gone:
            ready, _, _ = select.select([*done_fds, *open_pipes], [], [])
        else:  # the kernel is gone: take what is left in the pipes, briefly
            ready, _, _ = select.select(list(open_pipes), [], [], DRAIN_SECONDS)
            if not ready:
                break  # whatever still holds a pipe is about to go
        for fd in ready:
            if fd in done_fds:
                gone = gone or finished(fd)  # once: the kernel and what runs beside it may end together
            elif not output.copy(fd):
                open_pipes.discard(fd)
                os.close(fd)
    while not gone and done_fds:
        ready, _, _ = select.select(done_fds, [], [])
        gone = finished(ready[0])


class Beside:
    """A process that lives exactly as long as the kernel: started with it, killed when it goes."""

    def __init__(self, command: list | None) -> None:
        self.pid = self.exit = None
        if command:
            self.pid = os.fork()
            if self.pid == 0:
                try:
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    os.execv(command[0], command)
                except BaseException as error:
                    os.write(2, f"coursekit relay: cannot start {command[0]}: {error}\n".encode())
                finally:
                    os._exit(127)
            self.exit = os.pidfd_open(self.pid)

    def fds(self) -> list:
        return [] if self.exit is None else [self.exit]

    def ended(self) -> None:
        """It ended first: say so (the kernel is ended by the caller)."""
        code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        self.pid = None
        write_all(2, f"coursekit relay: the kernel's channel guard ended ({code}); the kernel is stopped\n".encode())

    def stop(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = None


def from_fork_server(server_socket: str, request: str, options: dict) -> int:
    pipes = make_pipes()
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    connection.connect(server_socket)
    socket.send_fds(connection, [request.encode()], [write_end for _, write_end in pipes.values()])
    for _, write_end in pipes.values():
        os.close(write_end)
    beside = Beside(options.get("beside"))
    replies = []

    def finished(fd) -> bool:
        if fd in beside.fds():
            beside.ended()
            connection.close()  # the server kills the sandbox when its relay's connection goes
            replies.append(b"")
            return True
        replies.append(connection.recv(64))
        return True

    relay_output(pipes, finished, [connection, *beside.fds()])
    beside.stop()
    try:
        return int(replies[0].decode())
    except (IndexError, ValueError):
        return 1


def run(options: dict, command: list[str]) -> int:
    pipes = make_pipes()
    seccomp_read = None
    if options.get("seccomp"):
        seccomp_read, seccomp_write = os.pipe()
        os.write(seccomp_write, bytes.fromhex(options["seccomp"]))  # a few hundred bytes: fits the pipe
        os.close(seccomp_write)
    child = os.fork()
    if child == 0:
        try:
            for folder in options.get("cgroups") or []:
                with open(os.path.join(folder, "cgroup.procs"), "w") as procs:
                    procs.write("0")
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            for read_end in pipes:
                os.close(read_end)
            stdout_pipe, stderr_pipe = (write_end for _, write_end in pipes.values())
            os.dup2(stdout_pipe, 1)  # dup2's copies are inherited; the originals close on exec
            os.dup2(stderr_pipe, 2)
            if seccomp_read is not None:
                os.dup2(seccomp_read, SECCOMP_FD)
            os.execvp(command[0], command)
        except BaseException as error:
            os.write(2, f"coursekit relay: cannot start the sandbox: {error}\n".encode())
        finally:
            os._exit(127)
    for _, write_end in pipes.values():
        os.close(write_end)
    if seccomp_read is not None:
        os.close(seccomp_read)
    child_exit = os.pidfd_open(child)
    beside = Beside(options.get("beside"))
    codes = []

    def finished(fd) -> bool:
        if fd in beside.fds():
            beside.ended()
            os.kill(child, signal.SIGKILL)  # bubblewrap: the sandbox's pid 1 and everything in it go too
        codes.append(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
        return True

    relay_output(pipes, finished, [child_exit, *beside.fds()])
    beside.stop()
    code = codes[0]
    return code if code >= 0 else 128 - code


def main() -> int:
    # Interrupts travel as messages (the kernel spec says so); a stray SIGINT must not end the kernel.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Die with the grading process, as bubblewrap's --die-with-parent does.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    mode = sys.argv[1]
    if mode == "--fork-server":
        return from_fork_server(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]) if len(sys.argv) > 4 else {})
    if mode == "--run" and sys.argv[3] == "--":
        return run(json.loads(sys.argv[2]), sys.argv[4:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
