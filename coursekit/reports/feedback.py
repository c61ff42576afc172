"""Feedback that follows the gradebook and shows students nothing secret.

Two nbgrader preprocessors, enabled in `c.GenerateFeedback.preprocessors`
(nbgrader_config.py), so `coursekit grade`, plain `nbgrader generate_feedback`
and the formgrader all use them:

- CutHiddenTraceback: error tracebacks keep only what the student wrote and
  what the release shows; frames of the hidden tests and of this kit go.
- MarkWaitingForTA: an answer no TA has graded yet says so instead of "0 / 4".

And `refresh_feedback`, which regenerates the feedback of exactly the teams
whose grades, comments or autograded notebook changed since their feedback
was last made.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from nbconvert.exporters.exporter import ResourcesDict
from nbformat import v4
from nbformat.notebooknode import NotebookNode
from traitlets import Unicode

from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.preprocessors import NbGraderPreprocessor

from coursekit.course import autograded_notebook, feedback_page, waits_for_ta
from coursekit.errors import CourseKitError
from coursekit.engine.grading import load_rows, nbgrader_in_fork, submitted_notebooks
from coursekit.course import ASSIGNMENT_ID

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# IPython's frame headers: "Cell In[12], line 3" (IPython >= 8.5), "Input In [12], in <cell line: 3>()" (8.0-8.4).
CELL_FRAME = re.compile(r"^\s*(?:Cell In ?\[(\d+)\], line (\d+)|Input In ?\[(\d+)\], in <cell line: (\d+)>)")
# "File /path/module.py:42, in function(...)" (IPython 8) or '  File "/path/module.py", line 42' (plain Python).
FILE_FRAME = re.compile(r'^\s*File "?([^",]+?)"?(?::(\d+)|, line (\d+))')
# A context line of a frame: "      3 code" or "----> 3 code". Possessive quantifiers: with plain ones a
# student's line of spaces (no digit after them) backtracks quadratically (40,000 spaces: 20 s).
CONTEXT_LINE = re.compile(r"^\s*+(?:-*+>)?\s*+(\d+)(?: (.*))?$")
# A traceback line is matched on its start only: no frame header or context line is longer.
MATCHED_PREFIX = 500
# This kit's own modules (the hidden checks among them), wherever the sandbox mounts them.
KIT_PATH = re.compile(r"(?:^|[/\\])coursekit[/\\][^/\\]+\.py$")
HIDDEN_FRAMES_NOTE = "[the hidden tests' code is not shown]"


def plain(text: str) -> str:
    return ANSI_ESCAPE.sub("", text)


def start_of(line: str) -> str:
    """What the traceback patterns look at: the line's first MATCHED_PREFIX characters, without colours."""
    return plain(line[: MATCHED_PREFIX * 4])[:MATCHED_PREFIX]


def hidden_line_numbers(source: str, *, begin: str, end: str) -> frozenset[int]:
    """1-based numbers of the lines of a cell's hidden test regions, delimiters included."""
    hidden, inside = set(), False
    for number, line in enumerate(source.split("\n"), start=1):
        if begin in line:
            inside = True
        if inside:
            hidden.add(number)
        if end in line:
            inside = False
    return frozenset(hidden)


class HiddenRegions:
    """Where the hidden tests are, to tell a traceback's hidden lines from the student's."""

    def __init__(self, nb: NotebookNode, *, begin: str, end: str) -> None:
        self.cells: dict[int, tuple[list[str], frozenset[int]]] = {}
        self.texts: set[str] = set()
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            lines = cell.source.split("\n")
            hidden = hidden_line_numbers(cell.source, begin=begin, end=end)
            self.texts.update(lines[number - 1].strip() for number in hidden if lines[number - 1].strip())
            if cell.get("execution_count") is not None:
                self.cells[cell.execution_count] = (lines, hidden)

    def is_hidden(self, execution_count: int | None, number: int, text: str | None) -> bool:
        """Whether line `number` of the cell that ran as In[execution_count] is hidden test code."""
        located = self.cells.get(execution_count)
        if located is not None:
            lines, hidden = located
            # The numbering is trusted only if the line shown is that cell's line.
            if text is None or (0 < number <= len(lines) and lines[number - 1].rstrip() == text.rstrip()):
                return number in hidden
        return text is not None and text.strip() in self.texts


class CutHiddenTraceback(NbGraderPreprocessor):
    """Cut tracebacks in feedback to the student's code and the release's.

    A failing test cell's traceback shows the lines around the failing line,
    hidden tests included, and the frames of the checking code it called.
    Frames of this kit's modules and frames whose failing line is hidden test
    code are replaced by one note; hidden lines shown as context go. Must run
    before ClearHiddenTests, which removes the regions this reads.
    """

    begin_test_delimeter = Unicode("BEGIN HIDDEN TESTS", help="Marks the start of a hidden test region").tag(config=True)
    end_test_delimeter = Unicode("END HIDDEN TESTS", help="Marks the end of a hidden test region").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict) -> tuple[NotebookNode, ResourcesDict]:
        regions = HiddenRegions(nb, begin=self.begin_test_delimeter, end=self.end_test_delimeter)
        for cell in nb.cells:
            for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
                if output.get("output_type") == "error":
                    output["traceback"] = cut_traceback(list(output.get("traceback", [])), regions)
                elif output.get("output_type") == "stream":
                    output["text"] = cut_printed_traceback(output.get("text", ""), regions)
        return nb, resources


def cut_traceback(entries: list[str], regions: HiddenRegions) -> list[str]:
    kept: list[str] = []
    for entry in entries:
        cut = cut_frame(entry, regions)
        if cut is None:
            if not kept or kept[-1] != HIDDEN_FRAMES_NOTE:
                kept.append(HIDDEN_FRAMES_NOTE)
        else:
            kept.append(cut)
    return kept


# What Python prints for a frame or a warning: 'File "/p/m.py", line 42, in f' or "/p/m.py:42: UserWarning: ...",
# each followed by the source line.
PRINTED_LOCATION = re.compile(r'^\s*(?:File "(?P<frame>[^"]+)", line \d+|(?P<warning>\S+\.py):\d+: \w+: )')


def cut_printed_traceback(text: str, regions: HiddenRegions) -> str:
    """Printed tracebacks and warnings (stdout, or stderr moved there) without this kit's or hidden source lines."""
    lines = text.split("\n")
    kept: list[str] = []
    for number, line in enumerate(lines):
        previous = PRINTED_LOCATION.match(start_of(lines[number - 1])) if number else None
        location = PRINTED_LOCATION.match(start_of(line))
        if location and location.group("frame") and KIT_PATH.search(location.group("frame")):
            kept.append(HIDDEN_FRAMES_NOTE)
            continue
        if previous and (KIT_PATH.search(previous.group("frame") or previous.group("warning") or "")
                         or plain(line).strip() in regions.texts):
            continue  # the source line Python shows under a location
        kept.append(line)
    return "\n".join(kept)


def cut_frame(entry: str, regions: HiddenRegions) -> str | None:
    """The traceback entry without hidden lines, or None when the whole frame is hidden."""
    lines = entry.split("\n")
    header = start_of(lines[0])
    file_frame = FILE_FRAME.match(header)
    if file_frame:
        return None if KIT_PATH.search(file_frame.group(1).strip()) else entry
    cell_frame = CELL_FRAME.match(header)
    if not cell_frame:
        return entry  # the separator, "NameError  Traceback ...", or the error message itself
    execution_count = int(cell_frame.group(1) or cell_frame.group(3))
    failing_line = int(cell_frame.group(2) or cell_frame.group(4))
    kept = [lines[0]]
    for line in lines[1:]:
        context = CONTEXT_LINE.match(start_of(line))
        if context is None:
            kept.append(line)
            continue
        number, text = int(context.group(1)), context.group(2) or ""
        if regions.is_hidden(execution_count, number, text):
            if number == failing_line:
                return None
            continue
        kept.append(line)
    if regions.is_hidden(execution_count, failing_line, None):
        return None
    return "\n".join(kept)


class MarkWaitingForTA(NbGraderPreprocessor):
    """Say "waiting for a TA" where nbgrader's feedback would show 0 points for an ungraded answer.

    nbgrader's feedback template prints every graded cell's score, and an
    answer nobody graded yet scores 0. The template is left alone (the
    formgrader forces its own); instead such an answer is shown as an answer
    without a score, with a note in its comment, and a note at the top says
    how many points are still open. Runs after GetGrades.
    """

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict) -> tuple[NotebookNode, ResourcesDict]:
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gradebook:
            notebook = gradebook.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
            rows = load_rows(gradebook, notebook)  # a few queries, not two per cell
            waiting = {grade.name: float(grade.max_score) for grade in notebook.grades if waits_for_ta(grade)}
            del rows
        marked: list[float] = []
        for cell in nb.cells:
            metadata = cell.metadata.get("nbgrader", {})
            grade_id = metadata.get("grade_id")
            if utils.is_solution(cell) and metadata.get("grade") and grade_id in waiting:
                # Without the grade flag the template shows the answer and its comment, but no score.
                metadata["grade"] = False
                note = f"**Waiting for a TA:** this answer ({format_points(waiting[grade_id])} points) is not graded yet."
                metadata["comment"] = "\n\n".join(part for part in (note, metadata.get("comment")) if part)
                marked.append(waiting[grade_id])
        if marked:
            nb.cells.insert(0, v4.new_markdown_cell(
                f"**Waiting for a TA:** {len(marked)} answers ({format_points(sum(marked))} points) are not graded yet; "
                "the score above counts only the answers graded so far."))
        return nb, resources


def answers_waiting_for_ta(*, database: str, teams: list[str]) -> dict[str, frozenset[str]]:
    """Per team, the grade_ids of the answers a TA still has to grade (teams without such answers left out)."""
    waiting = {}
    with Gradebook(database) as gradebook:
        for team, notebook in submitted_notebooks(gradebook, teams):
            grade_ids = frozenset(grade.name for grade in notebook.grades if waits_for_ta(grade))
            if grade_ids:
                waiting[team] = grade_ids
    return waiting


def format_points(points: float) -> str:
    return f"{round(points, 2) + 0.0:g}"


# ---- regenerating the feedback of the teams whose grades changed ----

FEEDBACK_STATE = "feedback.json"


def feedback_html(course_root: Path, team: str) -> Path:
    return feedback_page(course_root, team)


@dataclass(frozen=True)
class FeedbackState:
    fingerprint: str        # digest of everything the team's feedback shows
    graded_by_ta: bool      # a TA scored or commented something, which only the course's gradebook holds


def feedback_states(*, course_root: Path, database: str, teams: list[str]) -> dict[str, FeedbackState]:
    """Per graded team, a digest of everything its feedback shows: scores, TA scores and comments, the graded notebook.

    The course's configuration and the modules that make the pages are part of
    it, so changing the feedback preprocessors or the exporter (KaTeX included)
    regenerates every team's feedback.
    """
    here = Path(__file__).resolve().parent
    code = hashlib.sha256(b"".join(path.read_bytes() for path in (
        course_root / "nbgrader_config.py", here / "feedback.py", here / "feedback_exporter.py",
        here / "page_serializer.py", here / "math.py",
    ))).hexdigest()
    states = {}
    with Gradebook(database) as gradebook:
        for team, notebook in submitted_notebooks(gradebook, teams):
            autograded = autograded_notebook(course_root, team)
            if not autograded.exists():
                continue  # no feedback can be made without it (its grading failed)
            state = {
                "code": code,
                "notebook": hashlib.sha256(autograded.read_bytes()).hexdigest(),
                "late_penalty": notebook.late_submission_penalty,
                "grades": sorted((g.name, g.auto_score, g.manual_score, g.extra_credit, bool(g.needs_manual_grade))
                                 for g in notebook.grades),
                "comments": sorted((c.name, c.auto_comment or "", c.manual_comment or "") for c in notebook.comments),
            }
            graded_by_ta = (any(g.manual_score is not None or g.extra_credit for g in notebook.grades)
                            or any(c.manual_comment for c in notebook.comments))
            states[team] = FeedbackState(fingerprint=hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest(),
                                         graded_by_ta=graded_by_ta)
    return states


def refresh_feedback(*, course_root: Path, database: str, teams: list[str], state_folder: Path,
                     made_by_autograding: list[str], workers: int = 1) -> tuple[str, ...]:
    """Regenerate the feedback of the teams whose fingerprint changed (and only theirs); returns them.

    `made_by_autograding`: teams whose feedback the grading engine just made
    from their own gradebook, which holds the same automatic grades as the
    course's but no TA input; their feedback is current unless a TA graded them.
    """
    state_file = state_folder / FEEDBACK_STATE
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    current = feedback_states(course_root=course_root, database=database, teams=teams)
    fresh = [team for team in made_by_autograding if team in current
             and not current[team].graded_by_ta and feedback_html(course_root, team).exists()]
    state.update({team: current[team].fingerprint for team in fresh})
    stale = [team for team in teams if team in current and team not in fresh
             and (state.get(team) != current[team].fingerprint or not feedback_html(course_root, team).exists())]
    if stale:
        generate_feedback(course_root=course_root, teams=stale, work=state_folder / "feedback-work",
                          workers=max(1, min(workers, len(stale))))
        state.update({team: current[team].fingerprint for team in stale})
    save_state(state_file, state)
    return tuple(fresh) + tuple(stale)


def generate_feedback(*, course_root: Path, teams: list[str], work: Path, workers: int) -> None:
    """`nbgrader generate_feedback` in the course for exactly `teams`, split over `workers` forks.

    Feedback generation only reads the gradebook, so the forks can share it.
    """
    from coursekit.engine import forking  # the preprocessors above must not pull in the grading machinery

    autograded = course_root / "autograded"
    everyone = {path.name for path in autograded.iterdir() if path.is_dir()}
    groups = [teams[number::workers] for number in range(workers)]
    if len(groups) == 1 or threading.active_count() > 1:  # forking a threaded process can deadlock
        generate_feedback_for(course_root, everyone, teams)
        return
    folders = [work / f"worker-{number}" for number in range(len(groups))]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    pids = [forking.fork_worker(lambda _folder, group: generate_feedback_for(course_root, everyone, group),
                                folder, group) for folder, group in zip(folders, groups)]
    failures = [forking.worker_failure(folder, os.waitpid(pid, 0)[1]) for pid, folder in zip(pids, folders)]
    failures = [failure for failure in failures if failure]
    if failures:
        raise CourseKitError(failures[0])


def generate_feedback_for(course_root: Path, everyone: set[str], group: list[str]) -> None:
    arguments = ["generate_feedback", ASSIGNMENT_ID, "--force"]
    others = sorted(everyone - set(group))
    if others:
        arguments.append(f"--CourseDirectory.student_id_exclude={','.join(others)}")
    result = nbgrader_in_fork(course_root, *arguments)
    missing = [team for team in group if not feedback_html(course_root, team).exists()]
    if result.returncode != 0 or missing:
        reason = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no message"]
        raise CourseKitError(f"nbgrader generate_feedback failed for {', '.join(missing or group)} ({reason[0]}); "
                             f"run `nbgrader generate_feedback {ASSIGNMENT_ID}` in {course_root} to see why.")


def save_state(state_file: Path, state: dict[str, str]) -> None:
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(state, indent=1, sort_keys=True))
