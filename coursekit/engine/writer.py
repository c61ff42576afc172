"""The one writer: merges a team's outcome into the course's gradebook and folders.

Only the grading process writes, one team at a time, in one short
transaction per team, and only the automatic columns (auto_score,
needs_manual_grade, auto_comment): a TA's manual score or comment, written
through the formgrader or the question page while a run merges, is never
read back and written over. Works on any gradebook nbgrader supports
(SQLite by default, PostgreSQL for several TAs).
"""
from __future__ import annotations

import json
import shutil
import warnings
from datetime import datetime
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from sqlalchemy.exc import SAWarning

from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME, autograded_notebook, feedback_page
from coursekit.engine.unit import TeamOutcome
from coursekit.nbgrader_plugins.gradebook_lookups import PrefetchingGradebook
from coursekit.nbgrader_plugins.keep_reviews import (answer_fingerprint, fingerprints_path, read_fingerprints,
                                                     write_atomically)


def write_files(*, course_root: Path, outcome: TeamOutcome) -> None:
    """The team's autograded and feedback folders hold exactly this outcome's files afterwards."""
    team = outcome.team_id
    for path, content in ((autograded_notebook(course_root, team), outcome.autograded_notebook),
                          (feedback_page(course_root, team), outcome.feedback_page)):
        # The team's folder (<step>/<team>), not only the assignment's: nothing stale stays.
        shutil.rmtree(path.parent.parent, ignore_errors=True)
        if content is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)


def answer_fingerprints(notebook: bytes | None) -> dict[str, str]:
    """grade_id -> fingerprint of each graded answer cell of an autograded notebook."""
    if notebook is None:
        return {}
    try:
        cells = json.loads(notebook).get("cells", [])
    except (ValueError, AttributeError):
        return {}
    answers = {}
    for cell in cells if isinstance(cells, list) else []:
        nbgrader = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell, dict) else {}
        if isinstance(nbgrader, dict) and nbgrader.get("solution") and nbgrader.get("grade"):
            source = cell.get("source", "")
            answers[str(nbgrader.get("grade_id"))] = answer_fingerprint(
                "".join(source) if isinstance(source, list) else str(source))
    return answers


def write_grades(*, course_root: Path, gradebook: Gradebook, outcome: TeamOutcome) -> None:
    if not outcome.grades:
        return
    team = outcome.team_id
    timestamp = datetime.fromisoformat(outcome.timestamp) if outcome.timestamp else None
    try:
        gradebook.find_student(team)
    except MissingEntry:
        gradebook.add_student(team)
    # nbgrader's own API warns about its lazy relationships when it creates a submission.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        gradebook.update_or_create_submission(ASSIGNMENT_ID, team, timestamp=timestamp)
    answers = answer_fingerprints(outcome.autograded_notebook)
    reviewed_before = read_fingerprints(fingerprints_path(course_root, team)).get(NOTEBOOK_NAME, {})
    rows = PrefetchingGradebook(gradebook)  # the team's rows in one query per kind, not one per cell
    for row in outcome.grades:
        grade = rows.find_grade(row.name, NOTEBOOK_NAME, ASSIGNMENT_ID, team)
        # As SaveAutoGradesKeepingReviews does for plain `nbgrader autograde`: a free-text answer a
        # TA graded stays graded while its text is the one the TA saw.
        reviewed = grade.manual_score is not None and not grade.needs_manual_grade
        unchanged = row.name in answers and reviewed_before.get(row.name) == answers[row.name]
        grade.auto_score = row.auto_score
        grade.needs_manual_grade = row.needs_manual_grade and not (reviewed and unchanged)
    for row in outcome.comments:
        rows.find_comment(row.name, NOTEBOOK_NAME, ASSIGNMENT_ID, team).auto_comment = row.auto_comment
    gradebook.find_submission_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID, team).late_submission_penalty = outcome.late_penalty
    gradebook.db.commit()
    # What the answers are now, for the next run (record_graded_answers adds what TAs grade).
    path = fingerprints_path(course_root, team)
    recorded = read_fingerprints(path)
    recorded[NOTEBOOK_NAME] = {**recorded.get(NOTEBOOK_NAME, {}), **answers}
    write_atomically(path, json.dumps(recorded, indent=1, sort_keys=True))


def merge_outcome(*, course_root: Path, gradebook: Gradebook, outcome: TeamOutcome) -> None:
    write_files(course_root=course_root, outcome=outcome)
    write_grades(course_root=course_root, gradebook=gradebook, outcome=outcome)
