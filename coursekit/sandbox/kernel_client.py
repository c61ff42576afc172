"""The grading process's side of a sandboxed kernel's channels: every message bounded, checked, or dropped.

The kernel holds the key of its connection file, so it can sign anything: a
signature proves nothing here, and every message is treated as untrusted
bytes. Each channel has a receive high-water mark and a cap on one message
(CHANNEL_LIMITS), fitted to what it carries; the channel guard
(coursekit.sandbox.channel_guard) enforces the cap on whole multipart messages
before they reach this process, the client's sockets on single frames again.
So what the sockets can hold is bounded: queued messages times their cap.

Then a message is read in the order that costs least:

1. its header and parent header (a few hundred bytes each, at most
   HEADER_LIMIT_BYTES): a message type the grader does not use on that channel
   (USED_TYPES: what nbclient and nbgrader read) is dropped here, before its
   content is even looked at; so are messages to no request at all (the
   kernel's "starting" status), without being counted;
2. only replies and outputs of requests this client sent count (nbclient
   ignores the others anyway); a request gets one reply;
3. its signature, its metadata, the date in its header;
4. its content: capped per message type, and for outputs charged against the
   cell's and the notebook's output budget (bytes plus what unpacking costs per
   JSON value, so a budget's worth of `[{},{},...]` cannot become gigabytes of
   Python objects) before it is unpacked; then checked field by field against
   what nbclient, nbformat and nbgrader read from it.

Any error in any step drops that one message (and is counted in
`KernelTraffic.dropped`); nothing a kernel sends can raise out of a channel.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from hmac import compare_digest
from queue import Empty
from typing import Any, Callable

import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel, HBChannel
from jupyter_client.connect import channel_socket_types
from jupyter_client.manager import KernelManager
from jupyter_client.session import DELIM
from traitlets import Type

from coursekit.sandbox import kernel_relay

MIB = 1024 * 1024
KIB = 1024


@dataclass(frozen=True)
class ChannelLimit:
    largest_message_bytes: int  # all frames of one message together
    queued_messages: int        # the socket's receive high-water mark
    most_frames: int = 16       # routing ids, delimiter, signature, 4 parts and a few buffers


# Fitted to what each channel carries. IOPub: outputs (a correct answer record is ~1.6 MB; ipykernel
# joins a print flood into few large stream messages). Shell: replies, of which only the status and
# an error's text are kept. Control and stdin: nothing the grader reads (nbclient sends no stdin
# replies; interrupts go out on the manager's socket). Heartbeat: an echo of b"ping".
# What the grading process can hold for one kernel: (queued + 1) x largest, summed: ~200 MiB at most.
CHANNEL_LIMITS = {
    "iopub": ChannelLimit(32 * MIB, queued_messages=4),
    "shell": ChannelLimit(8 * MIB, queued_messages=4),
    "control": ChannelLimit(64 * KIB, queued_messages=2),
    "stdin": ChannelLimit(64 * KIB, queued_messages=2),
    "hb": ChannelLimit(1 * KIB, queued_messages=2, most_frames=4),
}
# What nbclient and nbgrader read; every other type is dropped unread (comms included: the grader
# is no widget front end, see SandboxedExecute.handle_comm_msg).
OUTPUT_MESSAGE_TYPES = frozenset({"stream", "display_data", "update_display_data", "execute_result", "error"})
USED_TYPES = {
    "iopub": OUTPUT_MESSAGE_TYPES | {"status", "execute_input", "clear_output"},
    "shell": frozenset({"execute_reply", "kernel_info_reply"}),
}
# Header, parent header and metadata: a few hundred bytes from ipykernel.
HEADER_LIMIT_BYTES = 64 * KIB
CONTENT_LIMIT_BYTES = {"status": 4 * KIB, "clear_output": 4 * KIB, "kernel_info_reply": 64 * KIB,
                       # The echo of the cell's source: only its execution count is read.
                       "execute_input": 1 * MIB}
# Of an execute_reply, nbgrader copies an error's text into the notebook when no error output matches.
REPLY_TEXT_LIMIT_CHARS = 64 * KIB
# What unpacking JSON costs besides its bytes, per value (a Python object and the pointer to it).
VALUE_COST_BYTES = 64
MOST_VALUES = 200_000
DEEPEST_NESTING = 64
# Outputs: what one cell keeps, what a notebook keeps; past the notebook's budget every cell still
# keeps a little: a test cell's answers must survive a flood in an earlier cell. An honest notebook
# has well under 1 MiB of outputs. Each output message also costs its Python objects.
CELL_OUTPUT_LIMIT_BYTES = 4 * MIB
NOTEBOOK_OUTPUT_LIMIT_BYTES = 32 * MIB
CELL_OUTPUT_ALLOWANCE_BYTES = 256 * KIB
OUTPUT_MESSAGE_COST_BYTES = 512
PROTOCOL_MAJOR = "5"

# A JSON string, escapes included (the unrolled form: fast on long strings).
JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


class Dropped(Exception):
    """This message is not passed on; the reason is counted."""


class Announcement(Dropped):
    """A message to no request (the kernel's "starting" status, its IOPub welcome): dropped, not counted."""


def json_values(raw: bytes) -> int:
    """About how many values a JSON text holds (keys, containers and scalars), counted without unpacking it."""
    skeleton = JSON_STRING.sub(b"0", raw)
    return (skeleton.count(b",") + skeleton.count(b":") + skeleton.count(b"[") + skeleton.count(b"{") + 1)


def nesting_depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def unpack(raw: bytes, *, what: str, values: int | None = None) -> dict:
    """A JSON object from the kernel, or Dropped; `raw` is within its cap already, `values` its json_values."""
    if (json_values(raw) if values is None else values) > MOST_VALUES:
        raise Dropped(f"too many values in its {what}")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, numbers beyond int's digit limit, deep nesting
        raise Dropped(f"malformed JSON in its {what}") from None
    if not isinstance(value, dict):
        raise Dropped(f"its {what} is not an object")
    if raw.count(b"[") + raw.count(b"{") > DEEPEST_NESTING and nesting_depth(value) > DEEPEST_NESTING:
        raise Dropped(f"its {what} is nested too deeply")
    return value


def parse_date(value: Any) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise Dropped("a bad date")
    try:
        date = datetime.fromisoformat(value)
    except ValueError:
        raise Dropped("a bad date") from None
    return date if date.tzinfo else date.replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------- content, field by field

def is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def optional(content: dict, field: str, check: Callable[[Any], bool]) -> bool:
    return field not in content or check(content[field])


def is_count(value: Any) -> bool:
    return value is None or type(value) is int


def is_mime_bundle(content: dict) -> bool:
    data = content.get("data")
    return (isinstance(data, dict) and all(isinstance(kind, str) for kind in data)
            and optional(content, "metadata", lambda value: isinstance(value, dict))
            and optional(content, "transient", lambda value: value is None or (
                isinstance(value, dict) and optional(value, "display_id", lambda key: isinstance(key, str)))))


CONTENT_CHECKS: dict[str, Callable[[dict], bool]] = {
    "status": lambda content: isinstance(content.get("execution_state"), str),
    "execute_input": lambda content: optional(content, "execution_count", is_count),
    "clear_output": lambda content: optional(content, "wait", lambda value: isinstance(value, bool)),
    "stream": lambda content: content.get("name") in ("stdout", "stderr") and isinstance(content.get("text"), str),
    "display_data": is_mime_bundle,
    "update_display_data": lambda content: is_mime_bundle(content) and isinstance(content.get("transient"), dict)
    and isinstance(content["transient"].get("display_id"), str),
    "execute_result": lambda content: is_mime_bundle(content) and optional(content, "execution_count", is_count),
    "error": lambda content: (isinstance(content.get("ename"), str) and isinstance(content.get("evalue"), str)
                              and is_text_list(content.get("traceback"))),
    "execute_reply": lambda content: content.get("status") in ("ok", "error", "aborted") and optional(
        content, "execution_count", is_count) and (content["status"] != "error" or CONTENT_CHECKS["error"](content)),
    "kernel_info_reply": lambda content: (isinstance(content.get("protocol_version"), str)
                                          and isinstance(content.get("language_info"), dict)),
}


def for_people(content: dict) -> dict:
    """An output's text freed of control sequences but colours and carriage returns.

    Text outputs reach people: in the feedback, in the formgrader, in a
    terminal. Metadata and other data (scores, answers the grader judges) stay as sent.
    """
    def plain(text):
        if isinstance(text, list):
            return [plain(item) for item in text]
        return kernel_relay.without_control_sequences(text, keep_colours_and_returns=True) \
            if isinstance(text, str) else text

    content = dict(content)
    for field in ("text", "ename", "evalue", "traceback"):
        if field in content:
            content[field] = plain(content[field])
    if isinstance(content.get("data"), dict):
        content["data"] = {kind: plain(value) if kind.startswith("text/") else value
                           for kind, value in content["data"].items()}
    return content


def trimmed_reply(content: dict) -> dict:
    """What of an execute_reply is read: its status, count and an error's text, within bounds."""
    kept = {"status": content["status"], "execution_count": content.get("execution_count")}
    if content["status"] == "error":
        lines, left = [], REPLY_TEXT_LIMIT_CHARS
        for line in content["traceback"]:
            if len(line) > left:
                break
            lines.append(line)
            left -= len(line)
        kept.update(ename=content["ename"][:1024], evalue=content["evalue"][:REPLY_TEXT_LIMIT_CHARS], traceback=lines)
    return for_people(kept)


# ---------------------------------------------------------------- the channels

class KernelTraffic:
    """What one client has asked the kernel, and what it dropped of the kernel's messages (reason -> count)."""

    def __init__(self, log) -> None:
        self.log = log
        self.requests: set[str] = set()          # every request this client sent
        self.awaiting_reply: set[str] = set()    # the requests whose reply has not come yet
        self.dropped: Counter[str] = Counter()

    def drop(self, channel: str, reason: str) -> None:
        key = f"{channel}: {reason}"
        self.dropped[key] += 1
        if self.dropped[key] == 1:  # one line per kind: a flood must not flood the log
            self.log.warning("coursekit: dropped a message from the kernel on %s (%s); further ones are "
                             "only counted", channel, reason)


class CheckedChannel(AsyncZMQSocketChannel):
    """A kernel channel that passes on only messages it could check, and never raises on one."""

    channel = ""

    def __init__(self, *arguments, **keywords) -> None:
        super().__init__(*arguments, **keywords)
        self.traffic: KernelTraffic | None = None  # set by the client

    def send(self, msg: dict[str, Any]) -> None:
        if self.traffic is not None:
            self.traffic.requests.add(msg["header"]["msg_id"])
            self.traffic.awaiting_reply.add(msg["header"]["msg_id"])
        super().send(msg)

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message that passes the checks; Empty when none did within `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not await self.socket.poll(None if left is None else int(left * 1000)):
                raise Empty
            message = await self._recv()
            if message is not None:
                return message
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty

    async def _recv(self, **kwargs) -> dict[str, Any] | None:
        frames = await self.socket.recv_multipart(copy=False, **kwargs)
        try:
            return self.checked(frames)
        except Announcement:
            pass
        except Dropped as reason:
            self.count_drop(str(reason))
        except Exception as error:  # a check this module did not foresee: still only this message
            self.count_drop(f"unreadable ({type(error).__name__})")
        return None

    def count_drop(self, reason: str) -> None:
        if self.traffic is not None:
            self.traffic.drop(self.channel, reason)

    def checked(self, frames: list) -> dict[str, Any]:
        limit = CHANNEL_LIMITS[self.channel]
        if len(frames) > limit.most_frames or sum(len(frame) for frame in frames) > limit.largest_message_bytes:
            raise Dropped("too large")
        delimiter = next((index for index, frame in enumerate(frames) if frame.bytes == DELIM), None)
        if delimiter is None or len(frames) - delimiter - 1 < 5:
            raise Dropped("not a Jupyter message")
        signature, header, parent, metadata, content = frames[delimiter + 1: delimiter + 6]
        if max(len(header), len(parent), len(metadata)) > HEADER_LIMIT_BYTES:
            raise Dropped("too large a header")
        header_fields = unpack(header.bytes, what="header")
        msg_type, msg_id = header_fields.get("msg_type"), header_fields.get("msg_id")
        if not isinstance(msg_type, str) or not isinstance(msg_id, str):
            raise Dropped("no message type or id")
        parent_fields = unpack(parent.bytes, what="parent header")
        if not parent_fields:
            raise Announcement()
        if msg_type not in USED_TYPES.get(self.channel, ()):
            raise Dropped("a type the grader does not use")
        version = header_fields.get("version", PROTOCOL_MAJOR)
        if not isinstance(version, str) or version.split(".")[0] != PROTOCOL_MAJOR:
            raise Dropped("another protocol version")
        self.check_parent(parent_fields.get("msg_id"))
        if self.session.auth is not None:
            expected = self.session.auth.copy()
            for part in (header, parent, metadata, content):
                expected.update(part.buffer)
            if not compare_digest(signature.bytes, expected.hexdigest().encode()):
                raise Dropped("a bad signature")
        if "date" in header_fields:
            header_fields["date"] = parse_date(header_fields["date"])
        message = {"header": header_fields, "msg_id": msg_id, "msg_type": msg_type, "parent_header": parent_fields,
                   "metadata": unpack(metadata.bytes, what="metadata"), "buffers": []}
        message["content"] = self.checked_content(message, content)
        self.passed(message)
        return message

    def check_parent(self, parent_id: Any) -> None:
        if self.traffic is not None and parent_id not in self.traffic.awaiting_reply:
            raise Dropped("no reply to a request of the grader's")

    def passed(self, message: dict) -> None:
        if self.traffic is not None:
            self.traffic.awaiting_reply.discard(message["parent_header"].get("msg_id"))

    def checked_content(self, message: dict, frame, values: int | None = None) -> dict:
        msg_type = message["msg_type"]
        if len(frame) > CONTENT_LIMIT_BYTES.get(msg_type, CHANNEL_LIMITS[self.channel].largest_message_bytes):
            raise Dropped(f"too large a {msg_type}")
        content = unpack(frame.bytes, what="content", values=values)
        if not CONTENT_CHECKS[msg_type](content):
            raise Dropped(f"a malformed {msg_type}")
        return trimmed_reply(content) if msg_type == "execute_reply" else content


class ShellChannel(CheckedChannel):
    channel = "shell"


class ControlChannel(CheckedChannel):
    channel = "control"


class StdinChannel(CheckedChannel):
    channel = "stdin"


class IOPubChannel(CheckedChannel):
    """Outputs over a cell's budget are dropped, the first with a notice: the grading process keeps a bounded amount.

    Bounded by NOTEBOOK_OUTPUT_LIMIT_BYTES plus CELL_OUTPUT_ALLOWANCE_BYTES per cell.
    """

    channel = "iopub"

    def __init__(self, *arguments, **keywords) -> None:
        super().__init__(*arguments, **keywords)
        self.notebook_left = NOTEBOOK_OUTPUT_LIMIT_BYTES
        self.cell_left: dict[str, int] = {}  # execute request's id -> bytes it may still keep
        self.truncated_cells: set[str] = set()

    def check_parent(self, parent_id: Any) -> None:
        # Outputs and the idle status come after the reply: any request of the grader's will do.
        if self.traffic is not None and parent_id not in self.traffic.requests:
            raise Dropped("no output of a request of the grader's")

    def passed(self, message: dict) -> None:
        pass

    def checked_content(self, message: dict, frame, values: int | None = None) -> dict:
        msg_type = message["msg_type"]
        if msg_type not in OUTPUT_MESSAGE_TYPES:
            return super().checked_content(message, frame)
        cell = message["parent_header"].get("msg_id", "")
        if cell not in self.cell_left:
            self.cell_left[cell] = max(min(CELL_OUTPUT_LIMIT_BYTES, self.notebook_left), CELL_OUTPUT_ALLOWANCE_BYTES)
        if cell in self.truncated_cells:
            raise Dropped("outputs past the cell's budget")
        # Counted before unpacking: an output that cannot fit is never unpacked whole.
        cost = len(frame) + OUTPUT_MESSAGE_COST_BYTES
        if cost <= self.cell_left[cell]:
            values = json_values(frame.bytes)
            cost += VALUE_COST_BYTES * values
        if cost > self.cell_left[cell]:
            return self.truncated(msg_type, cell, frame)
        content = super().checked_content(message, frame, values)
        self.cell_left[cell] -= cost
        self.notebook_left -= cost
        return for_people(content)

    def truncated(self, msg_type: str, cell: str, frame) -> dict:
        """The first output past the budget: a notice, and of a stream what still fits (it holds what came first)."""
        kept = ""
        if msg_type == "stream" and self.cell_left[cell] > OUTPUT_MESSAGE_COST_BYTES:
            try:
                text = unpack(frame.bytes, what="content").get("text")
            except Dropped:
                text = None
            kept = text[: self.cell_left[cell] - OUTPUT_MESSAGE_COST_BYTES] if isinstance(text, str) else ""
        self.notebook_left -= len(kept)
        self.truncated_cells.add(cell)
        self.cell_left[cell] = 0
        notice = (f"\n[coursekit: output truncated: more output than this cell may keep "
                  f"({CELL_OUTPUT_LIMIT_BYTES // MIB} MiB, {NOTEBOOK_OUTPUT_LIMIT_BYTES // MIB} MiB per notebook)]\n")
        if msg_type == "error":
            return {"ename": "OutputTruncated", "evalue": notice.strip(), "traceback": []}
        if msg_type == "stream":
            return {"name": "stdout", "text": for_people({"text": kept})["text"] + notice}
        return {"data": {"text/plain": notice}, "metadata": {}, "transient": {}, "execution_count": None}


class CappedHeartbeatChannel(HBChannel):
    """jupyter_client's heartbeat, on a socket capped like the others (nbclient asks the manager, not this)."""

    def _create_socket(self) -> None:
        if self.socket is not None:
            self.poller.unregister(self.socket)
            self.socket.close()
        self.socket = self.context.socket(zmq.REQ)
        self.socket.linger = 1000
        apply_limit(self.socket, CHANNEL_LIMITS["hb"])
        self.socket.connect(self.address)
        self.poller.register(self.socket, zmq.POLLIN)


def apply_limit(socket: zmq.Socket, limit: ChannelLimit) -> None:
    """Before connecting: ZeroMQ takes a socket's options into a connection when it is made."""
    socket.setsockopt(zmq.MAXMSGSIZE, limit.largest_message_bytes)
    socket.setsockopt(zmq.RCVHWM, limit.queued_messages)
    # The channel guard binds its sockets a moment after the client connects: retry soon, not after 0.1 s.
    socket.setsockopt(zmq.RECONNECT_IVL, 10)


def connected_socket(connection, channel: str, identity: bytes | None = None) -> zmq.Socket:
    """jupyter_client's ConnectionFileMixin._create_connected_socket, with the channel's limits set before connecting.

    For the client's sockets and the kernel manager's own control socket alike
    (set after connecting, they would not apply to the connection).
    """
    if connection.curve_publickey is not None:
        raise ValueError("the sandboxed kernel's channels are local: CurveZMQ is not supported")
    # IOPub comes from the channel guard's PUSH socket (it loses nothing for a slow reader), never
    # straight from a kernel's PUB.
    socket = connection.context.socket(zmq.PULL if channel == "iopub" else channel_socket_types[channel])
    socket.linger = 1000
    if identity:
        socket.identity = identity
    apply_limit(socket, CHANNEL_LIMITS[channel])
    socket.connect(connection._make_url(channel))
    return socket


# How long the kernel may take to publish the idle status of an answered kernel_info request
# (milliseconds after the reply, in practice) before IOPub counts as quiet anyway.
IDLE_AFTER_REPLY_SECONDS = 0.2


def is_idle_status_of(message: dict, request_id: str | None) -> bool:
    return (message.get("msg_type") == "status" and message.get("content", {}).get("execution_state") == "idle"
            and message.get("parent_header", {}).get("msg_id") == request_id)


class BoundedKernelClient(AsyncKernelClient):
    """A client whose every channel is bounded in bytes and passes on only checked messages it uses."""

    shell_channel_class = Type(ShellChannel)
    iopub_channel_class = Type(IOPubChannel)
    stdin_channel_class = Type(StdinChannel)
    control_channel_class = Type(ControlChannel)
    hb_channel_class = Type(CappedHeartbeatChannel)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.traffic = KernelTraffic(self.log)

    def _create_connected_socket(self, channel: str, identity: bytes | None = None):
        return connected_socket(self, channel, identity)

    def connect_iopub(self, identity: bytes | None = None) -> zmq.Socket:
        return connected_socket(self, "iopub", identity)  # a PULL socket: nothing to subscribe to

    def _attach(self, channel):
        if getattr(channel, "traffic", False) is None:
            channel.traffic = self.traffic
        return channel

    @property
    def shell_channel(self):
        return self._attach(super().shell_channel)

    @property
    def iopub_channel(self):
        return self._attach(super().iopub_channel)

    @property
    def stdin_channel(self):
        return self._attach(super().stdin_channel)

    @property
    def control_channel(self):
        return self._attach(super().control_channel)

    async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
        """jupyter_client's wait_for_ready, minus ~0.2 s per kernel start.

        jupyter_client (8.x) retries kernel_info until a reply and an IOPub message
        arrive, then drains IOPub until it has been silent for 0.2 s: every kernel
        start waits those 0.2 s. Here the drain ends at the idle status of the
        answered request, the signal jupyter_client's maintainers name as "fully
        connected" (jupyter/jupyter_client#593, #592); still 0.2 s of silence at most.
        Stale messages left over would be harmless anyway: nbclient reads only the
        messages whose parent is its own request.
        """
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        if not isinstance(self.parent, KernelManager):  # as jupyter_client: first a heartbeat
            while not await self._async_is_alive():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Kernel didn't respond to heartbeats in {timeout:.0f} seconds")
                await asyncio.sleep(0.2)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                pass
            else:
                if reply["msg_type"] == "kernel_info_reply":
                    try:  # IOPub is connected once one message arrives; if none does, start over
                        seen = await self.iopub_channel.get_msg(timeout=IDLE_AFTER_REPLY_SECONDS)
                    except Empty:
                        pass
                    else:
                        self._handle_kernel_info_reply(reply)
                        break
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
        answered = reply["parent_header"].get("msg_id")
        while not is_idle_status_of(seen, answered):
            try:
                seen = await self.iopub_channel.get_msg(timeout=IDLE_AFTER_REPLY_SECONDS)
            except Empty:
                break

    # AsyncKernelClient binds the public name to the base class's coroutine.
    wait_for_ready = _async_wait_for_ready
