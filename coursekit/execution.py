"""Sandboxed execution: nbgrader's Execute step, hardened.

Replaces `nbgrader.preprocessors.Execute` in nbgrader_config.py. On top of it:
- the kernel runs in the sandbox (coursekit.sandbox);
- a wall-clock cap per notebook, enforced by killing the kernel, so code that
  ignores interrupts cannot stall grading;
- a kernel that dies (os._exit, segfault, out of memory) or a cell that will
  not stop ends the notebook: the cells left are marked as not run, and the
  notebook is still graded and written;
- every test cell must prove it ran to the end: it receives a fresh secret
  when it starts, and only the score its hidden tests publish with that
  secret counts. Student code cannot skip, cut short or fake a test cell.
"""
from __future__ import annotations

import asyncio
import secrets
import time

from jupyter_core.utils import run_sync
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from traitlets import Bool, Integer

from nbgrader import utils
from nbgrader.preprocessors import Execute

from .checks import NONCE_NAME, PROOF_KEY
from .rebuild import STATUS_KEY
from .sandbox import SandboxedKernelManager

STATUS_GRADED = "graded"
STATUS_CRASHED = "kernel crashed"
STATUS_TIMED_OUT = "timed out"
STATUS_UNREADABLE = "unreadable"


def error_output(name: str, message: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=name, evalue=message, traceback=[f"{name}: {message}"])


class SandboxedExecute(Execute):
    notebook_timeout = Integer(300, help="Wall-clock cap for one notebook, in seconds.").tag(config=True)
    unresponsive_grace = Integer(
        5, help="Seconds an interrupted cell has to stop before its kernel is killed."
    ).tag(config=True)
    require_completion_proof = Bool(
        True, help="Give a test cell points only for a score its hidden tests published with the cell's secret."
    ).tag(config=True)

    def __init__(self, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(**kwargs)

    def preprocess(self, nb, resources=None, km=None):
        self._deadline = time.monotonic() + self.notebook_timeout
        self._stop_reason = ""
        self._status = STATUS_GRADED
        nb, resources = super().preprocess(nb, resources, km=km)
        status = nb.metadata.setdefault(STATUS_KEY, {})
        if status.get("unreadable"):
            self._status, self._stop_reason = STATUS_UNREADABLE, status["unreadable"]
        status.update(status=self._status, reason=self._stop_reason)
        return nb, resources

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type != "code" or not cell.source.strip():
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        if self._stop_reason:
            cell.outputs = [error_output("NotRun", self._stop_reason)] if utils.is_grade(cell) else []
            return cell
        is_test = utils.is_grade(cell) and self.require_completion_proof
        nonce = secrets.token_hex(16)
        # The secret travels in a silent request of its own: it never appears in
        # the cell's source, the input history or the test cell's message.
        if is_test and not await self.run_silently(f"{NONCE_NAME} = {nonce!r}"):
            await self.stop_kernel(STATUS_CRASHED, "the kernel stopped answering")
        completed = not self._stop_reason and await self.run_within_limits(cell, cell_index, execution_count, store_history)
        if is_test:
            if completed:
                self.keep_proven_score(cell, nonce)
            else:
                cell.outputs.insert(0, error_output("NotFinished", self._stop_reason or "the cell did not finish"))
        return cell

    # nbconvert's preprocess_cell calls the synchronous wrapper, bound to the base class's coroutine.
    execute_cell = run_sync(async_execute_cell)

    async def run_silently(self, code: str) -> bool:
        try:
            message_id = self.kc.execute(code, silent=True, store_history=False)
            return await self.wait_for_shell_reply(message_id, self.unresponsive_grace * 2)
        except Exception:
            return False

    async def wait_for_shell_reply(self, message_id: str, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            reply = await asyncio.wait_for(self.kc._async_get_shell_msg(), timeout=max(0.01, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == message_id:
                return True
        return False

    async def run_within_limits(self, cell, cell_index, execution_count, store_history) -> bool:
        """Run one cell; False when the kernel had to be stopped."""
        remaining = self._deadline - time.monotonic()
        cell_limit = (self.timeout or self.notebook_timeout) + self.unresponsive_grace
        try:
            if remaining <= 0:
                raise asyncio.TimeoutError
            await asyncio.wait_for(
                super().async_execute_cell(cell, cell_index, execution_count, store_history),
                timeout=min(remaining, cell_limit),
            )
        except asyncio.TimeoutError:
            await self.stop_kernel(STATUS_TIMED_OUT, "the notebook exceeded its time limit, or a cell would not stop when interrupted")
            cell.outputs.append(error_output("TimeLimitExceeded", self._stop_reason))
            return False
        except DeadKernelError:
            await self.stop_kernel(STATUS_CRASHED, "the kernel died (crash, os._exit, a killed process or exhausted memory)")
            cell.outputs.append(error_output("KernelDied", self._stop_reason))
            return False
        if any(o.get("ename") == "CellTimeoutError" for o in cell.outputs):
            if not await self.run_silently("pass"):
                await self.stop_kernel(STATUS_TIMED_OUT, "a cell ran past its time limit and ignored the interrupt")
                return False
        return True

    async def stop_kernel(self, status: str, reason: str) -> None:
        self._status, self._stop_reason = status, reason
        try:
            await self.km._async_kill_kernel()
        except Exception:
            pass

    def keep_proven_score(self, cell: NotebookNode, nonce: str) -> None:
        """Keep exactly one score: the one published with this cell's secret, first in the outputs.

        nbgrader scores a test cell by its first error or result output, so the
        proven score goes first, and every other result (forged or not) goes.
        """
        proofs = [o for o in cell.outputs if o.get("output_type") == "display_data"
                  and o.get("metadata", {}).get(PROOF_KEY, {}).get("nonce") == nonce]
        cell.outputs = [o for o in cell.outputs if o.get("output_type") != "execute_result"
                        and not (o.get("output_type") == "display_data" and PROOF_KEY in o.get("metadata", {}))]
        if len(proofs) != 1:
            cell.outputs.insert(0, error_output(
                "TestsDidNotFinish", "the hidden tests of this cell did not run to the end, so it scores 0"))
            return
        points = float(cell.metadata["nbgrader"]["points"])
        score = min(max(float(proofs[0]["metadata"][PROOF_KEY]["score"]), 0.0), points)
        cell.outputs.insert(0, NotebookNode(output_type="execute_result", execution_count=cell.get("execution_count"),
                                            metadata={}, data={"text/plain": repr(score)}))
