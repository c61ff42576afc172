"""The process jupyter_client starts in place of a kernel when the fork server is on.

It asks the fork server (coursekit.fork_server) for a sandboxed kernel and
stands in for it: it exits when the kernel exits, and when it is killed the
fork server kills the kernel and everything it started. So jupyter_client's
usual handling of a kernel process (poll, kill, wait) works unchanged.

The kernel writes into pipes this process copies to its own stdout and
stderr: those may be a log file or a terminal, which student code must not
read or rewind.

Run with `python -I -S kernel_relay.py <server socket> <request>`: standard
library only, so it starts in milliseconds.
"""
import ctypes
import os
import select
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1
DRAIN_SECONDS = 1.0


def main() -> int:
    # Interrupts travel as messages (the kernel spec says so); a stray SIGINT must not end the kernel.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Die with the grading process, as bubblewrap's --die-with-parent did.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    server_socket, request = sys.argv[1], sys.argv[2]
    pipes = {}
    for target in (sys.stdout.fileno(), sys.stderr.fileno()):
        read_end, write_end = os.pipe()
        pipes[read_end] = (target, write_end)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    connection.connect(server_socket)
    socket.send_fds(connection, [request.encode()], [write_end for _, write_end in pipes.values()])
    for _, write_end in pipes.values():
        os.close(write_end)
    reply = None
    while pipes:
        if reply is None:
            ready, _, _ = select.select([connection, *pipes], [], [])
        else:  # the kernel is gone: take what is left in the pipes, briefly
            ready, _, _ = select.select(list(pipes), [], [], DRAIN_SECONDS)
        if not ready:
            break  # the kernel is gone; whatever still holds a pipe is about to be
        for fd in ready:
            if fd is connection:
                reply = connection.recv(64)
                continue
            data = os.read(fd, 65536)
            if data:
                os.write(pipes[fd][0], data)
            else:
                del pipes[fd]
    if reply is None:
        reply = connection.recv(64)
    try:
        return int(reply.decode())
    except ValueError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
