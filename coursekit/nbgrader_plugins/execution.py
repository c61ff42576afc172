"""Sandboxed execution and judging: nbgrader's Execute step, hardened.

Replaces `nbgrader.preprocessors.Execute` in nbgrader_config.py. On top of it:
- the kernel runs in the sandbox (coursekit.sandbox.kernel_manager);
- a wall-clock cap per notebook, enforced by killing the kernel, so code that
  ignores interrupts cannot stall grading;
- a kernel that dies (os._exit, segfault, out of memory) or a cell that will
  not stop ends the notebook: the cells left are marked as not run, and the
  notebook is still graded and written;
- the kernel never judges. Each test cell gets a fresh challenge, its hidden
  part sends the answers as data (coursekit.recorder), and the judge
  (coursekit.exercise.checks) decides the points here, in the grading process,
  on the given values the grader drew for this run (DrawGivenValues,
  coursekit.nbgrader_plugins.given_values). The verdict (score first, then one
  line per part) is written into the test cell only after the kernel is gone,
  so no message from the kernel can change it; whatever the kernel itself
  printed or displayed as a score is dropped.
- a test cell counts the answer records it receives: exactly one (its own
  recorder's) is judged; more, or a record outside a test cell, is a finding
  and the cell scores 0. Every record is bounded (MAX_RECORD_CHARS); the
  sandbox's kernel client (coursekit.sandbox.kernel_manager) bounds every
  message and the outputs of each cell and notebook.
- after a wrong answer that later cells build on, the right values (computed
  here from the given values) go into the kernel as data (coursekit.exercise.repairs).
"""
from __future__ import annotations

import asyncio
import copy
import secrets
import time
from typing import Any

from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellControlSignal, DeadKernelError
from nbformat import NotebookNode
from traitlets import Bool, Float, Integer

from nbgrader import utils
from nbgrader.preprocessors import Execute

from coursekit.course import answer_of_test, is_autograded_cell
from coursekit.exercise.checks import (
    CHECKERS, MAX_PARSED_CELL, Situation, Verdict, failed_verdict, judge, several_records,
)
from coursekit.exercise.given import SHEET, GivenValues
from coursekit.exercise.repairs import repair_code
from coursekit.exercise.given import cell_challenge
from coursekit.nbgrader_plugins.given_values import challenge_key_of, given_values_of
from coursekit.nbgrader_plugins.rebuild import STATUS_KEY
from coursekit.recorder.wire import ANSWER_MIME, CHALLENGE_NAME, MAX_RECORD_CHARS
from coursekit.sandbox.kernel_manager import SandboxedKernelManager
from coursekit.statuses import GradingStatus

# A test cell keeps this many records for the judge, whatever arrives: one is judged, two say "too many".
RECORDS_KEPT_PER_CELL = 2
FINDINGS_KEY = "findings"
# How often a running cell's CPU time is read (one small file of the kernel's cgroup).
CPU_POLL_SECONDS = 0.5


class TimeLimitReached(Exception):
    """The notebook used up its CPU time, or a cell ignored the interrupt after using up its own."""


async def cancelled(*tasks) -> None:
    """Cancel what is still running of `tasks` and wait for it; their errors no longer matter."""
    for task in tasks:
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass


def error_output(name: str, message: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=name, evalue=message, traceback=[f"{name}: {message}"])


def judged_answer(cell: NotebookNode) -> str | None:
    """The answer cell a test cell judges (`squeeze_target_test` judges `squeeze_target`), if it has a judge.

    A test cell without a judge (an instructor's own assert cell) is scored by
    nbgrader's usual rule, inside the kernel; every test cell of ex2 has one
    (tests/test_master_notebook.py checks that).
    """
    grade_id = cell.metadata["nbgrader"].get("grade_id") if utils.is_grade(cell) and cell.cell_type == "code" else None
    if grade_id and is_autograded_cell(grade_id) and answer_of_test(grade_id) in CHECKERS:
        return answer_of_test(grade_id)
    return None


def is_answer_record(output: NotebookNode) -> bool:
    data = output.get("data")
    return output.get("output_type") in ("display_data", "execute_result") and isinstance(data, dict) and ANSWER_MIME in data


def output_size(output: NotebookNode) -> int:
    size = len(output.get("text", "") or "")
    for value in (output.get("data") or {}).values():
        size += len(value) if isinstance(value, str) else 1024
    return size + sum(len(line) for line in output.get("traceback", []) or [])


def verdict_outputs(verdict: Verdict, execution_count: Any) -> list[NotebookNode]:
    """nbgrader scores a test cell by its first result or error: the verdict's score goes first."""
    lines = "\n".join(verdict.lines())
    return [
        NotebookNode(output_type="execute_result", execution_count=execution_count, metadata={},
                     data={"text/plain": repr(verdict.score)}),
        NotebookNode(output_type="stream", name="stdout",
                     text=f"Autograder: {verdict.score:g} of {verdict.max_points:g} points\n{lines}\n"),
    ]


class SandboxedExecute(Execute):
    notebook_timeout = Integer(
        300, help="Time cap for one notebook, in seconds: CPU-seconds of its processes where its kernel has a cpu "
        "cgroup (see wall_clock_slack), wall-clock seconds otherwise."
    ).tag(config=True)
    wall_clock_slack = Float(
        2.0, min=1.0, help="Where the kernel has a cpu cgroup (SandboxedKernelManager.cpu_cgroup), the time limits "
        "(Execute.timeout per cell, notebook_timeout per notebook) count the notebook's own CPU time, which a busy "
        "neighbour cannot inflate; the wall clock still stops a cell or notebook at this many times its limit "
        "(code that sleeps or waits uses no CPU). 1: the limits count wall-clock time as well."
    ).tag(config=True)
    iopub_timeout = Integer(
        30, help="Seconds the outputs of a cell may still take after its reply (nbclient's iopub_timeout; nbgrader "
        "makes running past it a timeout). nbclient's 4 s are too few for a grading process busy with other "
        "notebooks to read a burst of outputs: honest notebooks lost their last outputs and 'timed out'."
    ).tag(config=True)
    unresponsive_grace = Integer(
        5, help="Seconds an interrupted cell has to stop before its kernel is killed."
    ).tag(config=True)

    # The grader is not a widget front end: comm messages from student code
    # could otherwise redirect a cell's outputs, write into the notebook's
    # metadata, or (a malformed widget) crash nbclient and so the whole notebook.
    store_widget_state = Bool(False).tag(config=True)

    def __init__(self, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(**kwargs)

    def handle_comm_msg(self, outs, msg, cell_index):
        """Comm messages are ignored (see store_widget_state)."""

    def preprocess(self, nb, resources=None, km=None):
        self._started = time.monotonic()
        self._deadline = self._started + self.notebook_timeout
        self._cpu_start: float | None = None  # the kernel's CPU time at its first cell, where a cgroup counts it
        self._cpu_interrupted = False
        self._stop_reason = ""
        self._status = GradingStatus.GRADED
        self._verdicts: dict[int, tuple[Verdict, list[NotebookNode]]] = {}
        self._records_received: dict[int, int] = {}
        self._oversized_records: set[int] = set()
        self._findings: list[dict] = []
        self._given: GivenValues = given_values_of(resources) or SHEET
        self._challenge_key = challenge_key_of(resources)
        self._cell_index = -1
        self._traffic = None
        try:
            nb, resources = super().preprocess(nb, resources, km=km)
        except Exception as error:
            if not self.code_cells_executed:
                raise  # the kernel never ran the notebook: nbgrader reports it as not graded
            self.stopped_early(nb, error)
        finally:
            # Written only now, with the kernel gone: no display update can touch them.
            for index, (verdict, kept) in self._verdicts.items():
                cell = nb.cells[index]
                cell.outputs = verdict_outputs(verdict, cell.get("execution_count")) + kept
        status = nb.metadata.setdefault(STATUS_KEY, {})
        if status.get("unreadable"):
            self._status, self._stop_reason = GradingStatus.UNREADABLE, status["unreadable"]
        status.update(status=self._status.value, reason=self._stop_reason)
        status[FINDINGS_KEY] = status.get(FINDINGS_KEY, []) + self._findings
        if self._traffic is not None and self._traffic.dropped:
            status["messages_dropped"] = dict(self._traffic.dropped)
        return nb, resources

    def finding(self, cell_index: int, explanation: str) -> None:
        """Something the integrity report should show a TA (coursekit.engine.workflow reads them)."""
        cell = self.nb.cells[cell_index] if 0 <= cell_index < len(self.nb.cells) else {}
        name = (cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") if cell else None) or f"cell {cell_index + 1}"
        self._findings.append({"cell": name, "explanation": explanation})

    # ------------------------------------------------------------ resilience: nothing a kernel sends ends the notebook

    def stopped_early(self, nb: NotebookNode, error: Exception) -> None:
        """nbclient gave up on the notebook after its kernel ran: the cells judged so far keep their points.

        The kernel's client passes on only messages it checked (coursekit.sandbox.kernel_client);
        this is the last line behind it. Graded cells not judged yet get a NotRun error, so
        nbgrader does not score them as passed.
        """
        reason = f"grading stopped early: the kernel's messages broke the grader ({type(error).__name__})"
        self.log.warning("coursekit: %s", reason)
        left = [cell for index, cell in enumerate(nb.cells) if index >= self._cell_index and index not in self._verdicts
                and cell.cell_type == "code" and utils.is_grade(cell)]
        if left and not self._stop_reason:
            self._status, self._stop_reason = GradingStatus.CRASHED, reason
        for cell in left:
            cell.outputs = [error_output("NotRun", self._stop_reason or reason)]

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type != "code" or not cell.source.strip():
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        self._cell_index = cell_index
        self._traffic = getattr(self.kc, "traffic", self._traffic)  # what the client dropped, for the metadata
        if self._cpu_start is None and (used := self.cpu_seconds()) is not None:
            self._cpu_start = used  # from now on the limits count CPU time, the wall clock only beyond the slack
            self._deadline = self._started + self.notebook_timeout * self.wall_clock_slack
        if self._stop_reason:
            cell.outputs = [error_output("NotRun", self._stop_reason)] if utils.is_grade(cell) else []
            return cell
        answer_id = judged_answer(cell)
        # Derived from the course secret and the submission (DrawGivenValues), so grading it again
        # judges on the same challenge; without DrawGivenValues, a fresh one.
        challenge = (cell_challenge(key=self._challenge_key, grade_id=answer_id or "") if self._challenge_key
                     else secrets.randbits(62))
        # The challenge travels in a silent request of its own: it is not in the
        # cell's source, the input history or the test cell's message.
        if answer_id and not await self.run_silently(f"{CHALLENGE_NAME} = {challenge}"):
            await self.stop_kernel(GradingStatus.CRASHED, "the kernel stopped answering")
        completed = not self._stop_reason and await self.run_within_limits(cell, cell_index, execution_count, store_history)
        if answer_id:
            await self.judge_cell(cell, cell_index, answer_id, challenge, completed)
        return cell

    # nbconvert's preprocess_cell calls the synchronous wrapper, bound to the base class's coroutine.
    execute_cell = run_sync(async_execute_cell)

    async def judge_cell(self, cell: NotebookNode, cell_index: int, answer_id: str, challenge: int, completed: bool) -> None:
        records = [output["data"][ANSWER_MIME] for output in cell.outputs if is_answer_record(output)]
        received = self._records_received.get(cell_index, 0)
        kept = [copy.deepcopy(output) for output in cell.outputs
                if not is_answer_record(output) and output.get("output_type") != "execute_result"]
        points = float(cell.metadata["nbgrader"]["points"])
        if not completed:
            verdict = failed_verdict(answer_id, points=points, reason=self._stop_reason or "the cell did not finish")
        elif received > 1:
            verdict = failed_verdict(answer_id, points=points, reason=several_records(received))
            self.finding(cell_index, f"{received} answer records reached the grader from this test cell, whose "
                                     "hidden test sends one: code other than the test sent answers (scored 0)")
        elif cell_index in self._oversized_records:
            verdict = failed_verdict(answer_id, points=points,
                                     reason="the answer record was larger than any right answer needs, so it scores 0")
        else:
            verdict = judge(answer_id, records, points=points,
                            situation=Situation(challenge=challenge, sources=self.sources_before(cell_index),
                                                given=self._given))
        self._verdicts[cell_index] = (verdict, kept)
        repair = None if verdict.full_marks or self._stop_reason else repair_code(answer_id, self._given)
        if repair:
            await self.run_silently(repair)

    def sources_before(self, cell_index: int) -> tuple[str, ...]:
        """The code that ran before a test cell, for the judge to parse; cells too long to parse are a finding."""
        sources = []
        for index, cell in enumerate(self.nb.cells[:cell_index]):
            if cell.cell_type != "code":
                continue
            if len(cell.source) > MAX_PARSED_CELL:
                explanation = (f"a code cell of {len(cell.source):,} characters, too long for the grader to "
                               "read how an answer was computed; read it by hand")
                if not any(f["explanation"] == explanation for f in self._findings):
                    self.finding(index, explanation)
                continue
            sources.append(cell.source)
        return tuple(sources)

    def output(self, outs, msg, display_id, cell_index):
        """Answer records are counted per cell as they arrive and kept only while they can matter.

        A test cell keeps at most RECORDS_KEPT_PER_CELL records of at most
        MAX_RECORD_CHARS each (a second one already means 0 points); a record in
        any other cell is dropped and noted. An output that is not valid
        nbformat is dropped too (a kernel can send any message content; nbclient
        would let the validation error end the notebook).
        """
        try:
            out = super().output(outs, msg, display_id, cell_index)
        except Exception:
            return None
        if out is not None and is_answer_record(out):
            outs.remove(out)
            self._records_received[cell_index] = self._records_received.get(cell_index, 0) + 1
            if not judged_answer(self.nb.cells[cell_index]):
                if self._records_received[cell_index] == 1:
                    self.finding(cell_index, "an answer record came from a cell that is not a test cell: "
                                             "code other than the hidden tests sent answers for the grader (ignored)")
            elif output_size(out) > MAX_RECORD_CHARS:
                self._oversized_records.add(cell_index)
            elif sum(is_answer_record(o) for o in outs) < RECORDS_KEPT_PER_CELL:
                outs.append(out)
        return out

    def process_message(self, msg, cell, cell_index):
        try:
            return super().process_message(msg, cell, cell_index)
        except CellControlSignal:
            raise  # the idle status: the cell is done
        except Exception as error:  # the client checked the message already; whatever still breaks drops it alone
            self.log.warning("coursekit: dropped a %s message nbclient could not handle (%s)",
                             msg.get("msg_type"), type(error).__name__)
            return None
        finally:
            # nbclient copies any message's execution_count into the cell unchecked.
            if type(cell.get("execution_count")) is not int:
                cell["execution_count"] = None

    def _update_display_id(self, display_id, msg):
        data = msg.get("content", {}).get("data") if isinstance(msg.get("content"), dict) else None
        if isinstance(data, dict) and ANSWER_MIME in data:
            return  # answers arrive as outputs of their own test cell, never by rewriting another output
        try:
            super()._update_display_id(display_id, msg)
        except Exception:  # an invalid update from student code changes nothing
            pass

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
        cell_limit = (self._get_timeout(cell) or self.notebook_timeout) + self.unresponsive_grace
        execution = watch = None
        try:
            if remaining <= 0:
                raise asyncio.TimeoutError
            execution = asyncio.ensure_future(super().async_execute_cell(cell, cell_index, execution_count, store_history))
            watch = asyncio.ensure_future(self.watch_cpu()) if self._cpu_start is not None else None
            done, _ = await asyncio.wait([task for task in (execution, watch) if task], return_when=asyncio.FIRST_COMPLETED,
                                         timeout=min(remaining, cell_limit))
            if watch in done:
                raise TimeLimitReached(watch.result())
            if execution not in done:
                raise asyncio.TimeoutError
            execution.result()
        except (asyncio.TimeoutError, TimeLimitReached) as error:
            await self.stop_kernel(GradingStatus.TIMED_OUT, str(error) if isinstance(error, TimeLimitReached) else
                                   "the notebook exceeded its time limit, or a cell would not stop when interrupted")
            cell.outputs.append(error_output("TimeLimitExceeded", self._stop_reason))
            return False
        except DeadKernelError:
            await self.stop_kernel(GradingStatus.CRASHED,
                                   "the kernel died (crash, os._exit, a killed process or exhausted memory)")
            cell.outputs.append(error_output("KernelDied", self._stop_reason))
            return False
        except Exception as error:  # anything else the kernel's messages broke: its earlier cells keep their points
            await self.stop_kernel(GradingStatus.CRASHED,
                                   f"grading stopped: the kernel's messages broke the grader ({type(error).__name__})")
            cell.outputs.append(error_output("KernelMisbehaved", self._stop_reason))
            return False
        finally:
            await cancelled(execution, watch)
        if self._cpu_interrupted:
            self._cpu_interrupted = False
            cell.outputs.append(error_output("CellTimeoutError", f"the cell used more than {self.timeout} CPU-seconds"))
        if any(o.get("ename") == "CellTimeoutError" for o in cell.outputs):
            if not await self.run_silently("pass"):
                await self.stop_kernel(GradingStatus.TIMED_OUT, "a cell ran past its time limit and ignored the interrupt")
                return False
        return True

    # ------------------------------------------------------------ time limits that count the notebook's own CPU

    _cpu_interrupted = False

    def cpu_seconds(self) -> float | None:
        """CPU time of the kernel's sandbox so far, where its cgroup counts it (coursekit.sandbox.cgroups)."""
        reader = getattr(self.km, "cpu_seconds", None)
        return reader() if reader is not None else None

    def _get_timeout(self, cell):
        """nbclient's wall-clock limit for a cell: stretched by the slack where watch_cpu counts CPU time."""
        timeout = super()._get_timeout(cell)
        return timeout * self.wall_clock_slack if timeout and self._cpu_start is not None else timeout

    async def watch_cpu(self) -> str:
        """While a cell runs: interrupt it once it used its CPU time; return why the notebook must stop."""
        cell_start, interrupted_at = self.cpu_seconds(), None
        while True:
            await asyncio.sleep(CPU_POLL_SECONDS)
            used = self.cpu_seconds()
            if used is None or cell_start is None:
                await asyncio.Event().wait()  # the cgroup is gone with the kernel: nbclient notices the death
            if used - self._cpu_start >= self.notebook_timeout:
                return f"the notebook used more than its {self.notebook_timeout} CPU-seconds"
            if interrupted_at is None and self.timeout and used - cell_start >= self.timeout:
                interrupted_at, self._cpu_interrupted = time.monotonic(), True
                try:
                    await ensure_async(self.km.interrupt_kernel())
                except Exception:
                    pass  # a kernel that cannot be interrupted is stopped after the grace below
            elif interrupted_at is not None and time.monotonic() - interrupted_at > self.unresponsive_grace:
                return f"a cell used more than {self.timeout} CPU-seconds and would not stop when interrupted"

    async def stop_kernel(self, status: GradingStatus, reason: str) -> None:
        self._status, self._stop_reason = status, reason
        try:
            await self.km._async_kill_kernel()
        except Exception:
            pass
