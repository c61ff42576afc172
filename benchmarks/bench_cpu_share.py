"""An honest kernel's CPU share beside a kernel with 120 busy processes, each in a session of its own.

    python benchmarks/bench_cpu_share.py [--seconds 15] [--busy 120]

Two sandboxed kernels run at once, as two grading workers would run them:
one forks --busy processes that each start a session and spin; the other
counts for --seconds how much CPU time its own busy loop gets. Printed: the
honest kernel's CPU time per wall-clock second (1.0: a whole CPU) alone,
beside the busy kernel with a cpu cgroup per kernel (as configured), and
beside it without (SandboxedKernelManager.cpu_cgroup = False). The scheduler
shares the CPU per session (autogroups), so without a cgroup the honest kernel
gets about one busy process's part. The machine may be shared: compare the
lines of one run. Needs root (cgroups, the fork server).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile

from coursekit.sandbox.kernel_manager import SandboxedKernelManager

BUSY = """
import os, time
end = time.time() + {seconds}
for _ in range({busy}):
    if os.fork() == 0:
        os.setsid()
        while time.time() < end:
            pass
        os._exit(0)
time.sleep({seconds})
"""
HONEST = """
import json, time
time.sleep({delay})
wall, cpu, count = time.monotonic(), time.process_time(), 0
while time.monotonic() - wall < {seconds}:
    count += 1
print(json.dumps({{"share": (time.process_time() - cpu) / (time.monotonic() - wall)}}))
"""


async def run_cell(manager: SandboxedKernelManager, code: str) -> str:
    """Execute `code` in the manager's kernel; what it printed."""
    client = manager.client()
    client.start_channels()
    await client.wait_for_ready(timeout=120)
    request = client.execute(code)
    printed = []
    while True:
        message = await client.get_iopub_msg(timeout=300)
        if message["parent_header"].get("msg_id") != request:
            continue
        if message["msg_type"] == "stream":
            printed.append(message["content"]["text"])
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            break
    client.stop_channels()
    return "".join(printed)


async def honest_share(*, cgroup: bool, busy: int, seconds: float) -> float:
    managers = [SandboxedKernelManager(kernel_name="python3", cpu_cgroup=cgroup) for _ in range(2 if busy else 1)]
    try:
        for manager in managers:
            await manager.start_kernel(cwd=tempfile.mkdtemp(prefix="coursekit-bench-"))
        cells = [run_cell(managers[0], HONEST.format(seconds=seconds, delay=2 if busy else 0))]
        if busy:
            cells.append(run_cell(managers[1], BUSY.format(busy=busy, seconds=seconds + 4)))
        printed = await asyncio.gather(*cells)
        return json.loads(printed[0].strip().splitlines()[-1])["share"]
    finally:
        for manager in managers:
            if manager.has_kernel:
                await manager.shutdown_kernel(now=True)
            manager.release_sandbox()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--busy", type=int, default=120)
    arguments = parser.parse_args()
    for label, cgroup, busy in (("alone", True, 0), (f"beside {arguments.busy} busy sessions, cpu cgroup", True,
                                                     arguments.busy),
                                (f"beside {arguments.busy} busy sessions, no cpu cgroup", False, arguments.busy)):
        share = asyncio.run(honest_share(cgroup=cgroup, busy=busy, seconds=arguments.seconds))
        print(f"honest kernel {label:42} {share:5.2f} CPU-s per s", flush=True)


if __name__ == "__main__":
    main()
