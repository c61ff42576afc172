"""grades.csv: one row per student, for the course's grade sheet.

Teams are graded, students are graded in OLAT: a pair's points are written for
both members. Roster students without a submission get a row with 0 points, so
the sheet lists everyone who has to receive a grade. A task none of whose
answers is graded yet (a task only TAs grade, before they do) is empty, not 0. Names, e-mails and team
ids come from the roster and from uploads: every cell goes through
`spreadsheet_safe`, so none runs as a formula when the sheet is opened.
"""
from __future__ import annotations

import csv
from pathlib import Path

from coursekit.course import is_autograded
from coursekit.errors import CourseKitError
from coursekit.olat.importing import RosterEntry
from coursekit.records import TASK_CELLS, TeamResult
from coursekit.safe_text import spreadsheet_safe
from coursekit.statuses import GradingStatus

NO_SUBMISSION = "no submission"
STUDENT_COLUMNS = ("username", "first_name", "last_name", "email", "team")
POINT_COLUMNS = ("autograded", "manual", "total", "max_total", "status", "needs_manual_grading")
COLUMNS = (*STUDENT_COLUMNS, *TASK_CELLS, *POINT_COLUMNS, "team_members")


def write_grades_csv(*, results: list[TeamResult], roster: tuple[RosterEntry, ...], path: Path) -> None:
    """grades.csv with a row per student and team, sorted by user name."""
    roster_by_name = {entry.username: entry for entry in roster}
    # A team without cells (nbgrader never graded it) still owes the assignment's full points.
    assignment_max = max((result.max_total for result in results), default=0.0)
    rows = []
    for result in results:
        for member in result.members:
            rows.append(_team_row(result, roster_by_name.get(member), member, assignment_max))
    submitted = {member for result in results for member in result.members}
    for entry in roster:
        if entry.username not in submitted:
            rows.append(_no_submission_row(entry, assignment_max))
    # A student in two teams gets two rows (the import reports it); the team decides the order.
    rows.sort(key=lambda row: (row["username"], row["team"]))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # newline="": the csv module writes its own line endings.
        with path.open("w", encoding="utf-8", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({column: spreadsheet_safe(value) for column, value in row.items()} for row in rows)
    except OSError as error:
        raise CourseKitError(f"cannot write {path} ({error.strerror or error}); choose another output folder.") from None


def summary_counts(*, results: list[TeamResult]) -> dict[str, int]:
    """How many teams were graded, graded in part (crashed or timed out, points so far kept),
    could not be graded at all, and still wait for a TA."""
    graded = sum(result.status == GradingStatus.GRADED for result in results)
    partial = sum(result.status in (GradingStatus.CRASHED, GradingStatus.TIMED_OUT) for result in results)
    return {
        "graded": graded,
        "partly graded": partial,
        "failed": len(results) - graded - partial,
        "needs manual grading": sum(result.needs_manual_grading for result in results),
    }


def format_points(points: float) -> str:
    """At most two decimals and no float noise: 6 not 5.999999, 2.5 not 2.50."""
    # Adding 0.0 turns -0.0 into 0.0, which would otherwise print as "-0".
    return f"{round(points, 2) + 0.0:g}"


def _team_row(result: TeamResult, entry: RosterEntry | None, username: str, assignment_max: float) -> dict[str, str]:
    autograded = sum(cell.score for cell in result.cells if is_autograded(cell))
    manual = sum(cell.score for cell in result.cells if not is_autograded(cell))
    task_points = result.task_points()
    return {
        **_student_columns(entry, username),
        "team": result.team_id,
        **{task: "" if task_waits_for_ta(result, task) else format_points(task_points[task]) for task in TASK_CELLS},
        "autograded": format_points(autograded),
        "manual": format_points(manual),
        "total": format_points(result.total),
        "max_total": format_points(result.max_total if result.cells else assignment_max),
        "status": result.status,
        "needs_manual_grading": _yes_no(result.needs_manual_grading),
        "team_members": " / ".join(line.strip().lstrip("-*•").strip()
                                   for line in result.written_members.splitlines() if line.strip()),
    }


def task_waits_for_ta(result: TeamResult, task: str) -> bool:
    """No answer of the task has points yet: every one of its cells still waits for a TA."""
    cells = [cell for cell in result.cells if cell.grade_id in TASK_CELLS[task]]
    return bool(cells) and all(cell.needs_manual_grade for cell in cells)


def _no_submission_row(entry: RosterEntry, assignment_max: float) -> dict[str, str]:
    return {
        **_student_columns(entry, entry.username),
        "team": "",
        **{task: "0" for task in TASK_CELLS},
        "autograded": "0",
        "manual": "0",
        "total": "0",
        "max_total": format_points(assignment_max),
        "status": NO_SUBMISSION,
        "needs_manual_grading": _yes_no(False),
        "team_members": "",
    }


def _student_columns(entry: RosterEntry | None, username: str) -> dict[str, str]:
    if entry is None:
        return {"username": username, "first_name": "", "last_name": "", "email": ""}
    return {"username": username, "first_name": entry.first_name, "last_name": entry.last_name, "email": entry.email}


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"
