"""The grading process's kernel channels, fed crafted signed messages over real ZeroMQ sockets.

The kernel holds the key of its connection file, so everything here is signed
with the right key, as a hostile kernel would sign it. A channel passes on a
message only when it is one the grader uses, answers a request of the
grader's and is well-formed to the last field; anything else is dropped, and
counted, without an exception and without ending the channel.
"""
import asyncio
import json
import logging
import uuid

import pytest
import zmq
import zmq.asyncio
from jupyter_client.session import DELIM, Session

from coursekit.sandbox import kernel_client
from coursekit.sandbox.kernel_client import (CELL_OUTPUT_LIMIT_BYTES, IOPubChannel, KernelTraffic, ShellChannel,
                                             json_values)

MIB = 1024 * 1024
REQUEST = "request-of-the-grader"


def header(msg_type, **extra):
    return {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "kernel", "session": "s",
            "date": "2026-01-01T00:00:00.000000Z", "version": "5.4", **extra}


class HostileKernel:
    """The kernel's end of one channel: signs whatever it is given with the connection's key."""

    def __init__(self, session, socket, routing):
        self.session, self.socket, self.routing = session, socket, routing

    def parts(self, head, parent=None, metadata=None, content=None, *, raw=None):
        packed = [json.dumps(part).encode() if not isinstance(part, bytes) else part
                  for part in (head, {"msg_id": REQUEST} if parent is None else parent, metadata or {}, content or {})]
        if raw:  # replace packed parts by raw bytes: index -> bytes
            for index, value in raw.items():
                packed[index] = value
        return packed

    sent = 0

    def send(self, *arguments, extra_frames=(), signature=None, **keywords):
        self.sent += 1
        packed = self.parts(*arguments, **keywords)
        signed = self.session.sign(packed) if signature is None else signature
        self.socket.send_multipart([*self.routing, DELIM, signed, *packed, *extra_frames])


@pytest.fixture
def channels(tmp_path):
    """(kernel's iopub, kernel's shell, the client's iopub and shell channels, what they dropped)."""
    session = Session(key=b"the-connection-files-key")
    context = zmq.asyncio.Context()
    kernel_context = zmq.Context()
    iopub_kernel = kernel_context.socket(zmq.PUSH)  # as the channel guard, which alone talks to the client
    iopub_kernel.bind(f"ipc://{tmp_path}/iopub")
    shell_kernel = kernel_context.socket(zmq.ROUTER)
    shell_kernel.bind(f"ipc://{tmp_path}/shell")
    traffic = KernelTraffic(logging.getLogger("test"))
    traffic.requests.add(REQUEST)
    traffic.awaiting_reply.add(REQUEST)

    class Connection:  # what connected_socket reads of a client or manager
        curve_publickey = None

        def __init__(self):
            self.context = context

        def _make_url(self, channel):
            return f"ipc://{tmp_path}/{channel}"

    iopub_socket = kernel_client.connected_socket(Connection(), "iopub")
    shell_socket = kernel_client.connected_socket(Connection(), "shell", identity=b"grader")
    iopub, shell = IOPubChannel(iopub_socket, session), ShellChannel(shell_socket, session)
    iopub.traffic = shell.traffic = traffic
    yield (HostileKernel(session, iopub_kernel, [b"kernel.x.iopub"]), HostileKernel(session, shell_kernel, [b"grader"]),
           iopub, shell, traffic, shell_socket)
    for socket in (iopub_kernel, shell_kernel):
        socket.close(linger=0)
    iopub_socket.close(linger=0)
    shell_socket.close(linger=0)
    kernel_context.term()
    context.term()


async def received(channel, *, seconds=2.0):
    """Every message that passes until none has for `seconds`; probes left over from connecting are skipped."""
    messages = []
    while True:
        try:
            message = await channel.get_msg(timeout=seconds)
        except Exception as error:  # Empty: nothing left that passes
            assert type(error).__name__ == "Empty", error
            return messages
        if message["content"].get("text") != "probe":
            messages.append(message)


async def connected(kernel, channel):
    """Wait until the channel is connected: send a probe until one arrives."""
    for _ in range(200):
        kernel.send(header("stream"), content={"name": "stdout", "text": "probe"})
        try:
            await channel.get_msg(timeout=0.05)
            return
        except Exception:
            continue
    raise AssertionError("the channel never connected")


def test_garbage_is_dropped_one_message_at_a_time_and_counted(channels):
    iopub_kernel, _, iopub, _, traffic, _ = channels
    stream = {"name": "stdout", "text": "kept"}
    asyncio.run(connected(iopub_kernel, iopub))
    iopub_kernel.send(header("stream"), content={"name": "stdout", "text": "before"})
    iopub_kernel.sent = 0
    iopub_kernel.send(header("stream"), raw={3: b"{not json"})                                  # bad JSON
    iopub_kernel.send(header("stream"), raw={3: b"\xff\xfe{}"})                                 # not UTF-8
    iopub_kernel.send(["a", "header", "list"], content=stream)                                  # header not an object
    iopub_kernel.send(header("stream"), parent=["not", "an", "object"], content=stream)         # parent header
    iopub_kernel.send(header("stream"), metadata="metadata as text", content=stream)           # metadata
    iopub_kernel.send(header("stream"), content=["content", "as", "a", "list"])                 # content
    iopub_kernel.send(header("stream", date="2026-13-45T99:00:00Z"), content=stream)           # bad date
    iopub_kernel.send(header("stream", date=12), content=stream)                               # date of a wrong type
    iopub_kernel.send({"msg_type": "stream"}, content=stream)                                   # no msg_id
    iopub_kernel.send({"msg_id": "x"}, content=stream)                                          # no msg_type
    iopub_kernel.send({**header("stream"), "msg_type": ["stream"]}, content=stream)           # msg_type of a wrong type
    iopub_kernel.send(header("stream", version="4.1"), content=stream)                         # another protocol
    iopub_kernel.send(header("stream"), parent={"msg_id": "someone else's"}, content=stream)   # not the grader's request
    iopub_kernel.send(header("stream"), content=stream, signature=b"0" * 64)                    # bad signature
    iopub_kernel.send(header("stream"), content={"name": "nowhere", "text": 7})                # wrong fields
    iopub_kernel.send(header("status"), content={"execution_state": ["idle"]})
    iopub_kernel.send(header("display_data"), content={"data": {"text/plain": "x"}, "transient": []})
    iopub_kernel.send(header("update_display_data"), content={"data": {}, "metadata": {}})
    iopub_kernel.send(header("error"), content={"ename": "E", "evalue": 1, "traceback": "not a list"})
    iopub_kernel.send(header("execute_result"), content={"data": {}, "metadata": {}, "execution_count": "7"})
    iopub_kernel.send(header("stream"), raw={3: b"[" * 200 + b"]" * 200})                      # nested deeply
    nested = []
    for _ in range(80):
        nested = [nested]
    iopub_kernel.send(header("display_data"), content={"data": {"application/json": {"a": nested}}})
    iopub_kernel.send(header("stream"), raw={3: b"1" * 5000})                                   # beyond int's digits
    iopub_kernel.send(header("stream"), content=stream, extra_frames=[b"buffer"] * 20)         # too many frames
    iopub_kernel.socket.send_multipart([b"no delimiter", b"at all"])
    iopub_kernel.socket.send_multipart([DELIM, b"too few parts"])
    garbage = iopub_kernel.sent + 2
    iopub_kernel.send(header("stream"), content={"name": "stdout", "text": "after"})
    messages = asyncio.run(received(iopub))
    assert [message["content"]["text"] for message in messages] == ["before", "after"]
    assert all(isinstance(message["header"]["date"], type(messages[0]["header"]["date"])) for message in messages)
    dropped = "\n".join(f"{reason}: {count}" for reason, count in sorted(traffic.dropped.items()))
    for reason in ("malformed JSON", "is not an object", "a bad date", "no message type or id", "another protocol",
                   "no output of a request", "a bad signature", "a malformed stream", "a malformed status",
                   "a malformed display_data", "a malformed update_display_data", "a malformed error",
                   "a malformed execute_result", "nested too deeply", "too large", "not a Jupyter message"):
        assert reason in dropped, (reason, dropped)
    assert sum(traffic.dropped.values()) == garbage


def test_a_type_the_grader_does_not_use_is_dropped_unread(channels):
    iopub_kernel, _, iopub, _, traffic, _ = channels
    asyncio.run(connected(iopub_kernel, iopub))
    # 30 MiB that are no JSON at all: were they unpacked, they would count as malformed.
    for msg_type in ("x_unused_type", "comm_msg", "input_request", "debug_event"):
        iopub_kernel.send(header(msg_type), raw={3: b"\0" * (30 * MIB)})
    # To no request at all (the kernel's "starting" status, its IOPub welcome): dropped without a count.
    iopub_kernel.send(header("iopub_welcome"), parent={}, content={"subscription": ""})
    iopub_kernel.send(header("stream"), content={"name": "stdout", "text": "after"})
    messages = asyncio.run(received(iopub))
    assert [message["content"]["text"] for message in messages] == ["after"]
    assert traffic.dropped == {"iopub: a type the grader does not use": 4}


def test_outputs_are_charged_for_what_unpacking_costs(channels):
    iopub_kernel, _, iopub, _, traffic, _ = channels
    asyncio.run(connected(iopub_kernel, iopub))
    empties = b"[" + b",".join([b"{}"] * (1 << 20)) + b"]"  # 2 MiB of JSON, a million dicts once unpacked
    bomb = b'{"data": {"application/json": ' + empties + b'}, "metadata": {}}'
    assert len(bomb) < CELL_OUTPUT_LIMIT_BYTES and json_values(bomb) > 2_000_000
    iopub_kernel.send(header("display_data"), raw={3: bomb})
    iopub_kernel.send(header("display_data"), content={"data": {"text/plain": "later"}})  # past the budget: dropped
    messages = asyncio.run(received(iopub))
    assert len(messages) == 1 and "output truncated" in messages[0]["content"]["data"]["text/plain"]
    assert traffic.dropped == {"iopub: outputs past the cell's budget": 1}
    assert json_values(b'{"text": "a, b: [c] {d}", "n": [1, 2]}') == 7  # an object, 2 keys, 4 values


def test_shell_passes_one_checked_reply_per_request_trimmed(channels):
    _, shell_kernel, _, shell, traffic, shell_socket = channels
    huge = "x" * (2 * MIB)
    error = {"status": "error", "execution_count": 3, "ename": "ValueError", "evalue": huge,
             "traceback": ["\x1b]0;title\x07line", huge], "payload": [{"source": "page", "data": huge}]}

    async def exchange():
        await shell_socket.send(b"hello")  # the kernel's ROUTER learns the client's identity from its first message
        assert shell_kernel.socket.poll(5000)
        shell_kernel.socket.recv_multipart()
        shell_kernel.send(header("execute_reply"), content={"status": "error", "execution_count": 3})  # no error fields
        shell_kernel.send(header("kernel_info_reply"), content={"status": "ok"})                     # no language_info
        shell_kernel.send(header("execute_reply"), content=error)
        shell_kernel.send(header("execute_reply"), content={"status": "ok", "execution_count": 4})   # a second reply
        shell_kernel.send(header("execute_request"), content={"code": "1"})                          # not a reply
        return await received(shell)

    messages = asyncio.run(exchange())
    assert len(messages) == 1
    reply = messages[0]["content"]
    assert set(reply) == {"status", "execution_count", "ename", "evalue", "traceback"}  # no payload
    assert reply["traceback"] == ["line"] and len(reply["evalue"]) == kernel_client.REPLY_TEXT_LIMIT_CHARS
    assert traffic.dropped == {"shell: a malformed execute_reply": 1, "shell: a malformed kernel_info_reply": 1,
                               "shell: no reply to a request of the grader's": 1,
                               "shell: a type the grader does not use": 1}
