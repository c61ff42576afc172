"""The one way a sandboxed kernel's messages reach the grading process: a process that bounds each of them.

ZeroMQ's own caps cannot bound what a receiver holds. `ZMQ_MAXMSGSIZE` limits
one frame, and the receive high-water mark counts whole messages: a kernel that
sends one multipart message of 40 frames of 32 MiB each (the same buffer 40
times: it costs the kernel 32 MiB) makes the receiving process hold 1.3 GB
before a single byte of it can be read, whatever the caps. So the grading
process does not connect to the kernel's sockets. This guard does, and
forwards a message only when all its frames together fit the channel's cap;
what it receives counts against the kernel's own memory (it joins the kernel's
memory cgroup, or caps its address space where there is none), so a kernel
that floods it kills its own sandbox, never the grader.

IOPub reaches the grading process by PUSH/PULL, not PUB/SUB, so nothing is lost
when the grading process reads slower than the kernel writes: a PUB socket drops
for a slow subscriber, and one burst of 150 outputs lost the cell's last outputs
and its idle status, which nbclient waits for (the notebook then "timed out").
When the grading process's queue is full, the guard holds the one message it
could not pass on and stops reading the kernel's IOPub until there is room: the
backlog waits in the kernel's own socket, in the kernel's own memory.

    kernel (sandbox) ──ipc, the kernel's private folder──> guard ──ipc, a root-only folder──> grading process

The guard understands no message: the grading process's client
(coursekit.sandbox.kernel_client) checks signatures, types and budgets of
what gets through. Messages from the grading process to the kernel pass as
they are. Sending never blocks: on the other channels, what does not fit the
grading process's queue is dropped here, as a ROUTER socket drops.

Started by coursekit/sandbox/kernel_relay.py beside the kernel; the relay ends
the kernel when the guard ends and the other way round.

    python -I channel_guard.py CONFIG

CONFIG (JSON): "kernel" and "grader": channel -> endpoint; "limits": channel ->
[largest message in bytes, most frames]; "cgroups": folders to join first;
"address_space_bytes": the cap without a memory cgroup (or null).
"""
import ctypes
import json
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1
# Routing id of the guard's sockets towards the kernel. One value for all of them: ipykernel
# addresses an input request on stdin with the identity its shell request came from.
ROUTING_ID = b"coursekit-channel-guard"
# Messages taken from one socket before the others get their turn.
BATCH = 64
# Messages queued here for the grading process, per channel; more are dropped.
QUEUED_FOR_GRADER = 64
CHANNELS = ("shell", "control", "stdin", "hb", "iopub")


def join_cgroups(folders: list) -> None:
    for folder in folders:
        with open(os.path.join(folder, "cgroup.procs"), "w") as procs:
            procs.write("0")


def within(frames: list, limit: tuple) -> bool:
    largest_bytes, most_frames = limit
    if len(frames) > most_frames:
        return False
    return sum(len(frame) for frame in frames) <= largest_bytes


class Guard:
    """Sockets in pairs: one towards the kernel, one towards the grading process, per channel."""

    def __init__(self, config: dict) -> None:
        import zmq

        self.zmq = zmq
        self.context = zmq.Context(io_threads=1)
        self.limits = {name: tuple(value) for name, value in config["limits"].items()}
        self.pairs = {}  # socket -> (the socket it forwards to, channel, towards the grader)
        self.dropped: dict[str, int] = {}
        self.held: list | None = None  # the IOPub message the grading process had no room for yet
        for channel in CHANNELS:
            if channel == "iopub":
                kernel_side = self.socket(zmq.SUB, config["limits"][channel])
                kernel_side.setsockopt(zmq.SUBSCRIBE, b"")
                grader_side = self.socket(zmq.PUSH, None)
                self.iopub = (kernel_side, grader_side)
            else:
                kernel_side = self.socket(zmq.DEALER, config["limits"][channel])
                kernel_side.setsockopt(zmq.ROUTING_ID, ROUTING_ID)
                grader_side = self.socket(zmq.ROUTER, None)
            grader_side.setsockopt(zmq.SNDHWM, QUEUED_FOR_GRADER)
            grader_side.bind(config["grader"][channel])
            kernel_side.connect(config["kernel"][channel])
            self.pairs[kernel_side] = (grader_side, channel, True)
            self.pairs[grader_side] = (kernel_side, channel, False)

    def socket(self, kind: int, limit):
        zmq = self.zmq
        socket = self.context.socket(kind)
        socket.setsockopt(zmq.LINGER, 0)
        # The kernel binds its sockets a moment after the guard starts connecting.
        socket.setsockopt(zmq.RECONNECT_IVL, 10)
        if limit is not None:
            # Few messages queued: they are the kernel's memory, but the kernel need not hoard them here.
            # No ZMQ_MAXMSGSIZE: a frame over it would end the connection for good (a protocol error
            # is not reconnected), and one oversized frame would cut the grader off its kernel.
            socket.setsockopt(zmq.RCVHWM, 1)
        return socket

    def run(self) -> None:
        zmq = self.zmq
        self.poller = poller = zmq.Poller()
        for socket in self.pairs:
            if socket.socket_type != zmq.PUSH:  # nothing to read on a PUSH socket
                poller.register(socket, zmq.POLLIN)
        iopub_grader_side = self.iopub[1]
        while True:
            for socket, events in poller.poll():
                if socket is iopub_grader_side:
                    self.pass_on_held()
                else:
                    self.forward(socket)

    def forward(self, socket) -> None:
        zmq = self.zmq
        target, channel, towards_grader = self.pairs[socket]
        for _ in range(BATCH):
            if self.held is not None and socket is self.iopub[0]:
                return  # no reading on until the held message is passed on
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if towards_grader and not within(frames, self.limits[channel]):
                self.drop(channel, frames)
                continue
            try:
                target.send_multipart(frames, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                if socket is self.iopub[0]:
                    self.hold(frames)
                # else: the receiver's queue is full: dropped, as a ROUTER socket drops
            except zmq.ZMQError:
                pass  # a ROUTER's unknown peer and the like: the message had nowhere to go

    def hold(self, frames: list) -> None:
        """The grading process's IOPub queue is full (or it is not connected yet): wait for room."""
        kernel_side, grader_side = self.iopub
        self.held = frames
        self.poller.unregister(kernel_side)
        self.poller.register(grader_side, self.zmq.POLLOUT)

    def pass_on_held(self) -> None:
        kernel_side, grader_side = self.iopub
        try:
            grader_side.send_multipart(self.held, self.zmq.NOBLOCK, copy=False)
        except self.zmq.Again:
            return
        self.held = None
        self.poller.unregister(grader_side)
        self.poller.register(kernel_side, self.zmq.POLLIN)

    def drop(self, channel: str, frames: list) -> None:
        self.dropped[channel] = self.dropped.get(channel, 0) + 1
        if self.dropped[channel] == 1:  # one line per channel: a flood must not flood the log
            size = sum(len(frame) for frame in frames)
            print(f"coursekit: dropped a message of {size} bytes in {len(frames)} frames from the kernel on "
                  f"{channel} (at most {self.limits[channel][0]} bytes in {self.limits[channel][1]} frames); "
                  "further ones are dropped silently", file=sys.stderr, flush=True)


def main() -> int:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(sys.argv[1])
    # First, before anything is allocated: all the guard will hold counts as the kernel's.
    join_cgroups(config.get("cgroups") or [])
    if config.get("address_space_bytes"):
        limit = int(config["address_space_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    Guard(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
