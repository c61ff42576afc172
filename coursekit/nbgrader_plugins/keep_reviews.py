"""Autograding again without undoing the TAs' work on answers that did not change.

nbgrader's SaveAutoGrades keeps a TA's score and comment when a submission is
autograded again (the formgrader's autograde button, `nbgrader autograde
--force`), but flags every answer a TA scored as needing a manual grade
again, so all free-text answers look ungraded. This replacement remembers a
fingerprint of each manually graded answer at every autograde (one small
file per student under `.coursekit/answers/` in the course) and leaves the
answer graded when the TA had scored it and its text is the same as at the
previous autograde or as when the TA graded it on the question page. Changed
answers are flagged as before.

Use it in place of nbgrader's step in nbgrader_config.py:
    "coursekit.nbgrader_plugins.keep_reviews.SaveAutoGradesKeepingReviews"
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from nbgrader import utils
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import SaveAutoGrades

FINGERPRINTS_FOLDER = Path(".coursekit") / "answers"


def answer_fingerprint(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def fingerprints_path(course_root: Path, student_id: str) -> Path:
    return course_root / FINGERPRINTS_FOLDER / f"{student_id}.json"


class SaveAutoGradesKeepingReviews(SaveAutoGrades):
    """SaveAutoGrades that leaves a TA's grade of an unchanged free-text answer graded."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        self.fingerprints_file = fingerprints_path(Path(CourseDirectory(config=self.config).root), info["student"])
        recorded = read_fingerprints(self.fingerprints_file)
        self.previous = recorded.get(info["notebook"], {})
        self.current: dict[str, str] = {}
        nb, resources = super().preprocess(nb, resources)
        recorded[info["notebook"]] = self.current
        write_atomically(self.fingerprints_file, json.dumps(recorded, indent=1, sort_keys=True))
        return nb, resources

    def _add_score(self, cell, resources) -> None:
        if not (utils.is_solution(cell) and utils.is_grade(cell)):
            return super()._add_score(cell, resources)
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        grade = self.gradebook.find_grade(grade_id, self.notebook_id, self.assignment_id, self.student_id)
        reviewed = grade.manual_score is not None and not grade.needs_manual_grade
        super()._add_score(cell, resources)
        fingerprint = answer_fingerprint(cell.source)
        self.current[grade_id] = fingerprint
        if reviewed and self.previous.get(grade_id) == fingerprint:
            grade.needs_manual_grade = False
            self.gradebook.db.commit()


def read_fingerprints(path: Path) -> dict[str, dict[str, str]]:
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def record_graded_answers(*, course_root: Path, student_id: str, notebook_id: str, answers: dict[str, str]) -> None:
    """The texts a TA just graded, so the next autograde knows whether they changed since."""
    path = fingerprints_path(course_root, student_id)
    recorded = read_fingerprints(path)
    recorded.setdefault(notebook_id, {}).update({grade_id: answer_fingerprint(text) for grade_id, text in answers.items()})
    write_atomically(path, json.dumps(recorded, indent=1, sort_keys=True))


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, path)
