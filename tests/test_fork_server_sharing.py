"""One fork server per grading run: started early, shared with forked workers, gone at once when stopped."""
import os
import time

import pytest

from coursekit.sandbox.fork_server import ForkServer, supported
from coursekit.sandbox.kernel_manager import sandbox_environment

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or supported() is not None, reason="the fork server needs root")


@pytest.fixture
def fresh_server_state():
    saved = ForkServer._running, ForkServer.failure
    ForkServer._running, ForkServer.failure = None, None
    yield
    ForkServer.stop_if_started_here()
    ForkServer._running, ForkServer.failure = saved


def test_prestarted_server_is_shared_by_forks_and_stops_at_once(fresh_server_state):
    ForkServer.prestart(environment=sandbox_environment())
    server = ForkServer._running
    assert server is not None and server.status is None  # started, not waited for

    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # a grading worker: uses its parent's server, never stops it
        code = 1
        try:
            shared = ForkServer.shared(environment=sandbox_environment())
            ForkServer.stop_if_started_here()
            os.write(write_end, f"{shared.socket_path if shared else None} {shared.status if shared else None}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        socket_path, status = answer.read().split()
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
    assert (socket_path, status) == (server.socket_path, "ready")

    assert ForkServer.shared(environment=sandbox_environment()) is server  # the fork left it running
    assert server.process.poll() is None
    started = time.monotonic()
    server.stop()
    assert server.process.returncode == 0
    assert time.monotonic() - started < 0.3  # no interpreter shutdown with torch loaded
    assert not os.path.exists(server.folder)
