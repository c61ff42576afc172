"""The channel guard between a kernel and the grading process, run as the relay runs it, with real sockets.

The kernel's side here is plain ZeroMQ, as hostile code in a kernel would use
it: a multipart message whose frames are each within ZeroMQ's per-frame cap
but together far over the channel's cap never reaches the grader's socket.
"""
import json
import subprocess
import sys
import time

import pytest
import zmq

from coursekit.sandbox import channel_guard

KIB = 1024


@pytest.fixture
def guard(tmp_path):
    """(kernel-side sockets, grader-side sockets, the guard's process) for shell and iopub."""
    kernel = {channel: f"ipc://{tmp_path}/kernel-{channel}" for channel in channel_guard.CHANNELS}
    grader = {channel: f"ipc://{tmp_path}/grader-{channel}" for channel in channel_guard.CHANNELS}
    config = {"kernel": kernel, "grader": grader, "cgroups": [], "address_space_bytes": 1 << 30,
              "limits": {channel: [64 * KIB, 16] for channel in channel_guard.CHANNELS}}
    process = subprocess.Popen([sys.executable, "-I", channel_guard.__file__, json.dumps(config)],
                               stderr=subprocess.PIPE, text=True)
    context = zmq.Context()
    sockets = {
        "kernel iopub": context.socket(zmq.PUB), "kernel shell": context.socket(zmq.ROUTER),
        "grader iopub": context.socket(zmq.PULL), "grader shell": context.socket(zmq.DEALER),
    }
    sockets["kernel iopub"].bind(kernel["iopub"])
    sockets["kernel shell"].bind(kernel["shell"])
    sockets["grader iopub"].connect(grader["iopub"])
    sockets["grader shell"].setsockopt(zmq.ROUTING_ID, b"grader")
    sockets["grader shell"].connect(grader["shell"])
    yield sockets, process
    process.kill()
    process.wait()
    for socket in sockets.values():
        socket.close(linger=0)
    context.term()


def receive(socket, seconds=0.5):
    return socket.recv_multipart() if socket.poll(int(seconds * 1000)) else None


def test_the_guard_forwards_messages_within_the_cap_and_drops_the_others(guard):
    sockets, process = guard
    # Requests go through to the kernel, replies come back to the one who asked.
    sockets["grader shell"].send_multipart([b"<IDS|MSG>", b"request"])
    assert receive(sockets["kernel shell"], seconds=10) == [b"coursekit-channel-guard", b"grader", b"<IDS|MSG>",
                                                            b"request"]
    sockets["kernel shell"].send_multipart([b"coursekit-channel-guard", b"grader", b"<IDS|MSG>", b"reply"])
    assert receive(sockets["grader shell"], seconds=10) == [b"<IDS|MSG>", b"reply"]
    # IOPub: the guard subscribes a moment after it starts; publish until something arrives.
    deadline = time.monotonic() + 20
    while receive(sockets["grader iopub"], seconds=0.05) is None:
        assert time.monotonic() < deadline, "the guard never forwarded IOPub"
        sockets["kernel iopub"].send_multipart([b"topic", b"hello"])
    frame = b"x" * (60 * KIB)  # within the cap alone: 40 of them are 2.4 MB
    sockets["kernel iopub"].send_multipart([b"topic"] + [frame] * 40)
    sockets["kernel iopub"].send_multipart([b"topic"] + [b"f"] * 20)          # too many frames
    sockets["kernel iopub"].send_multipart([b"topic", b"after the flood"])
    seen = []
    while (message := receive(sockets["grader iopub"])) is not None:
        seen.append(message)
    assert [message for message in seen if message != [b"topic", b"hello"]] == [[b"topic", b"after the flood"]]
    # One frame over the cap is dropped too, and the channel stays open.
    sockets["kernel iopub"].send(b"y" * (65 * KIB))
    sockets["kernel iopub"].send_multipart([b"topic", b"still connected"])
    assert receive(sockets["grader iopub"], seconds=10) == [b"topic", b"still connected"]
    assert process.poll() is None  # dropping is no reason to stop
    process.kill()
    stderr = process.communicate()[1]
    assert "dropped a message of 2457605 bytes in 41 frames from the kernel on iopub" in stderr


def test_a_burst_of_outputs_reaches_a_slow_grader_whole_and_in_order(guard):
    """IOPub loses nothing when the grading process reads slower than the kernel writes: a burst of 400
    outputs (a loop of display() calls) and the idle status after it, read at a crawl, all arrive."""
    sockets, process = guard
    deadline = time.monotonic() + 20
    while receive(sockets["grader iopub"], seconds=0.05) is None:
        assert time.monotonic() < deadline, "the guard never forwarded IOPub"
        sockets["kernel iopub"].send_multipart([b"topic", b"hello"])
    while receive(sockets["grader iopub"], seconds=0.3) is not None:
        pass  # the probes still on their way
    burst = [[b"topic", b"output %d" % number, b"x" * 8 * KIB] for number in range(400)] + [[b"topic", b"idle"]]
    for message in burst:
        sockets["kernel iopub"].send_multipart(message)
    seen = []
    while (message := receive(sockets["grader iopub"], seconds=5)) is not None:
        seen.append(message)
        if len(seen) % 50 == 0:
            time.sleep(0.2)  # a grading process busy with other notebooks
    assert seen == burst
    assert process.poll() is None
