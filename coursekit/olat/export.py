"""Grades and feedback in the form OpenOLAT's bulk assessment wizard takes them.

`results/olat/bulk_assessment.csv` holds one line per student (user name,
score, passed, comment) to paste into the wizard's "assessment data" step;
`results/olat/return_files.zip` holds one folder per user name with that
student's team feedback, for its "return files" upload. Every student of a
graded team gets a line, and so does every student of a team whose notebook the
grader stopped early (kernel crashed, timed out: the points judged before
count, the comment says so); while answers still wait for a TA, the comment says
the score is not final yet. A student whose team's grading failed, who is in
two teams or not in the roster is left out, with the reason, in `left_out.csv`.

`passed` is written only once no TA grade can change it: `yes` when the points
already given reach the pass mark, `no` when even full marks on every answer
still waiting for a TA would not, and empty otherwise. OpenOLAT's wizard reads
an empty (or any other) value as "not given" (ChooseColumnsStepForm.createRow:
`passed = null`, "only set defined values, ignore everything else"), and its
bulk assessment then writes the score with passed undefined (BulkAssessmentTask,
with no cut value: the new ScoreEvaluation carries `passed = null`), so no
student is failed while TAs still grade.

OpenOLAT splits each pasted line at the delimiter without any quoting, so no
value may contain a comma; the score uses a decimal point for the same reason.
"""
from __future__ import annotations

import csv
import io
import os
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from traitlets import Float
from traitlets.config import Configurable

from coursekit.errors import CourseKitError
from coursekit.course import is_autograded
from coursekit.reports.exporting import format_points
from coursekit.olat.importing import RosterEntry
from coursekit.course import NOTEBOOK_NAME
from coursekit.records import TeamResult
from coursekit.safe_text import spreadsheet_safe
from coursekit.statuses import STOPPED_EARLY, GradingStatus

OLAT_FOLDER = "olat"
BULK_ASSESSMENT_FILE = "bulk_assessment.csv"
RETURN_FILES_FILE = "return_files.zip"
LEFT_OUT_FILE = "left_out.csv"
BULK_COLUMNS = ("username", "score", "passed", "comment")
LEFT_OUT_COLUMNS = ("username", "team", "reason")
# The name students find in their returned files.
FEEDBACK_FILE_NAME = f"{NOTEBOOK_NAME}_feedback.html"


class OlatExport(Configurable):
    """Settings of the OLAT bulk assessment export, read from nbgrader_config.py."""

    pass_mark = Float(
        50.0, help="Points a student needs to pass: `passed` is yes from this score on (OLAT's cut value)."
    ).tag(config=True)


@dataclass(frozen=True)
class BulkAssessmentRow:
    """One student's line in bulk_assessment.csv and folder in return_files.zip."""

    username: str
    team: str
    score: float
    passed: bool | None       # None: not decided while answers wait for a TA
    comment: str
    feedback: Path          # the team's feedback HTML, returned to every member


@dataclass(frozen=True)
class LeftOut:
    """A student with a submission who gets no line, and why."""

    username: str
    team: str
    reason: str


@dataclass(frozen=True)
class OlatExportResult:
    rows: tuple[BulkAssessmentRow, ...]
    left_out: tuple[LeftOut, ...]
    bulk_assessment: Path
    return_files: Path
    left_out_file: Path


def pass_mark(*, config) -> float:
    """The pass mark `c.OlatExport.pass_mark` of a loaded nbgrader_config.py (default 50)."""
    value = OlatExport(config=config).pass_mark
    if value < 0:
        raise CourseKitError(f"c.OlatExport.pass_mark is {value:g}; set it to the points needed to pass (0 or more).")
    return value


def one_line(text: str) -> str:
    """One line without the characters OpenOLAT's plain split or the CSV quoting would break on."""
    return " ".join(text.replace(",", ";").replace('"', "'").split())


def format_score(points: float) -> str:
    """Points with a decimal point, always: 78.0, 78.5, 78.25."""
    text = f"{round(points, 2) + 0.0:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def summary_comment(result: TeamResult, *, waiting: int = 0) -> str:
    autograded = sum(cell.score for cell in result.cells if is_autograded(cell))
    manual = sum(cell.score for cell in result.cells if not is_autograded(cell))
    pending = f" Not final: {waiting} answers still wait for a TA." if waiting else ""
    stopped = (f" Grading stopped early ({result.status}); the answers judged before count."
               if result.status in STOPPED_EARLY else "")
    return one_line(
        f"{NOTEBOOK_NAME}: {format_points(result.total)} of {format_points(result.max_total)} points "
        f"(autograded {format_points(autograded)} + TA-graded {format_points(manual)}).{stopped}{pending} "
        f"Feedback: {FEEDBACK_FILE_NAME} in your returned files."
    )


def passed_for(result: TeamResult, *, pass_mark: float) -> bool | None:
    """yes/no once no grade still to come can change it, None (empty in the CSV) before."""
    given = sum(cell.score for cell in result.cells if not cell.needs_manual_grade)
    still_open = sum(cell.max_score for cell in result.cells if cell.needs_manual_grade)
    if given >= pass_mark:
        return True
    if given + still_open < pass_mark:
        return False
    return None


def bulk_assessment(*, results: list[TeamResult], roster: tuple[RosterEntry, ...], waiting: dict[str, int],
                    feedback_folder: Path, pass_mark: float) -> tuple[tuple[BulkAssessmentRow, ...], tuple[LeftOut, ...]]:
    """Who gets a line and who is left out (and why), sorted by user name.

    `waiting`: per team, how many answers still wait for a TA (the gradebook knows, see feedback.answers_waiting_for_ta).
    """
    teams_of: dict[str, list[str]] = {}
    for result in results:
        for member in result.members:
            teams_of.setdefault(member, []).append(result.team_id)
    known = {entry.username for entry in roster}
    rows, left_out = [], []
    for result in results:
        feedback = feedback_folder / f"{result.team_id}.html"
        for member in result.members:
            reason = left_out_reason(result=result, member=member, teams=teams_of[member], known=known,
                                     feedback=feedback)
            if reason:
                left_out.append(LeftOut(username=member, team=result.team_id, reason=reason))
                continue
            rows.append(BulkAssessmentRow(
                username=member, team=result.team_id, score=result.total, passed=passed_for(result, pass_mark=pass_mark),
                comment=summary_comment(result, waiting=waiting.get(result.team_id, 0)), feedback=feedback,
            ))
    return (tuple(sorted(rows, key=lambda row: row.username)),
            tuple(sorted(left_out, key=lambda entry: (entry.username, entry.team))))


def left_out_reason(*, result: TeamResult, member: str, teams: list[str], known: set[str], feedback: Path) -> str:
    if len(teams) > 1:
        return f"in {len(teams)} teams ({', '.join(sorted(teams))}): decide which submission counts"
    if known and member not in known:
        return "not in the roster: check the user name in the file name"
    if member in (".", "..") or "/" in member or "\\" in member:
        return "the user name cannot be a folder name in the return files"
    if result.status != GradingStatus.GRADED and result.status not in STOPPED_EARLY:
        return f"grading {result.status}" + (f": {result.reason}" if result.reason else "")
    if not feedback.exists():
        return "no feedback file"
    return ""


def write_bulk_assessment(*, rows: tuple[BulkAssessmentRow, ...], path: Path) -> None:
    lines = [BULK_COLUMNS] + [
        (row.username, format_score(row.score), {True: "yes", False: "no", None: ""}[row.passed], row.comment)
        for row in rows
    ]
    _write_csv(path, [[spreadsheet_safe(one_line(value)) for value in line] for line in lines])


def write_left_out(*, left_out: tuple[LeftOut, ...], path: Path) -> None:
    lines = [LEFT_OUT_COLUMNS] + [(entry.username, entry.team, entry.reason) for entry in left_out]
    _write_csv(path, [[spreadsheet_safe(value) for value in line] for line in lines])


def write_return_files(*, rows: tuple[BulkAssessmentRow, ...], path: Path) -> None:
    """One folder per user name holding the team's feedback, the layout OpenOLAT's wizard reads."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for row in rows:
            moment = datetime.fromtimestamp(row.feedback.stat().st_mtime).timetuple()[:6]
            archive.writestr(zipfile.ZipInfo(f"{row.username}/{FEEDBACK_FILE_NAME}", moment),
                             row.feedback.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    _write_bytes(path, buffer.getvalue())


def export_for_olat(*, results: list[TeamResult], roster: tuple[RosterEntry, ...], waiting: dict[str, int],
                    feedback_folder: Path, output_folder: Path, pass_mark: float) -> OlatExportResult:
    """Write bulk_assessment.csv, return_files.zip and left_out.csv into `output_folder`."""
    rows, left_out = bulk_assessment(results=results, roster=roster, waiting=waiting,
                                     feedback_folder=feedback_folder, pass_mark=pass_mark)
    exported = OlatExportResult(rows=rows, left_out=left_out, bulk_assessment=output_folder / BULK_ASSESSMENT_FILE,
                                return_files=output_folder / RETURN_FILES_FILE,
                                left_out_file=output_folder / LEFT_OUT_FILE)
    write_bulk_assessment(rows=rows, path=exported.bulk_assessment)
    write_return_files(rows=rows, path=exported.return_files)
    write_left_out(left_out=left_out, path=exported.left_out_file)
    return exported


def _write_csv(path: Path, lines: list[list[str]]) -> None:
    buffer = io.StringIO()
    # "\n": OpenOLAT splits pasted lines at \r?\n; no quoting is needed as no value holds a comma.
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    _write_bytes(path, buffer.getvalue().encode("utf-8"))


def _write_bytes(path: Path, content: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(content)
        os.replace(partial, path)
    except OSError as error:
        raise CourseKitError(f"cannot write {path} ({error.strerror or error}); choose another output folder.") from None
