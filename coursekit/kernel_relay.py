"""The process jupyter_client starts in place of a kernel when the fork server is on.

It asks the fork server (coursekit.fork_server) for a sandboxed kernel and
stands in for it: it exits when the kernel exits, and when it is killed the
fork server kills the kernel and everything it started. So jupyter_client's
usual handling of a kernel process (poll, kill, wait) works unchanged.

Run with `python -I -S kernel_relay.py <server socket> <request>`: standard
library only, so it starts in milliseconds.
"""
import ctypes
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1


def main() -> int:
    # Interrupts travel as messages (the kernel spec says so); a stray SIGINT must not end the kernel.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Die with the grading process, as bubblewrap's --die-with-parent did.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    server_socket, request = sys.argv[1], sys.argv[2]
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    connection.connect(server_socket)
    # The kernel writes its own log to this process's stdout and stderr.
    socket.send_fds(connection, [request.encode()], [sys.stdout.fileno(), sys.stderr.fileno()])
    reply = connection.recv(64)
    try:
        return int(reply.decode())
    except ValueError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
