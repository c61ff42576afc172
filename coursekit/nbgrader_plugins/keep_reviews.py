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
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor, SaveAutoGrades

from coursekit.nbgrader_plugins.gradebook_lookups import LookupsInOneQuery

FINGERPRINTS_FOLDER = Path(".coursekit") / "answers"


def answer_fingerprint(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def fingerprints_path(course_root: Path, student_id: str) -> Path:
    return course_root / FINGERPRINTS_FOLDER / f"{student_id}.json"


class SaveAutoGradesKeepingReviews(LookupsInOneQuery, SaveAutoGrades):
    """SaveAutoGrades that leaves a TA's grade of an unchanged free-text answer graded (its grades and
    comments looked up with one query each, see coursekit.nbgrader_plugins.gradebook_lookups)."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        self.fingerprints_file = fingerprints_path(Path(CourseDirectory(config=self.config).root), info["student"])
        recorded = read_fingerprints(self.fingerprints_file)
        self.previous = recorded.get(info["notebook"], {})
        self.current: dict[str, str] = {}
        nb, resources = self.save_grades(nb, resources)
        recorded[info["notebook"]] = self.current
        write_atomically(self.fingerprints_file, json.dumps(recorded, indent=1, sort_keys=True))
        return nb, resources

    def save_grades(self, nb, resources):
        """SaveAutoGrades.preprocess with one commit per notebook instead of one per grade and comment.

        nbgrader commits after every cell it scores or comments (~50 SQLite
        transactions per notebook of this exercise, each a disk sync). The same
        rows get the same values, in one transaction; if the notebook's grades
        cannot all be saved, none are (nbgrader leaves the ones before the error).
        """
        info = resources["nbgrader"]
        self.notebook_id, self.assignment_id = info["notebook"], info["assignment"]
        self.student_id, self.db_url = info["student"], info["db_url"]
        self.gradebook = Gradebook(self.db_url)
        with self.gradebook:
            nb, resources = NbGraderPreprocessor.preprocess(self, nb, resources)  # per cell: preprocess_cell
            self.gradebook.db.commit()
        return nb, resources

    def _add_score(self, cell, resources) -> None:
        # SaveAutoGrades._add_score without its commit (see save_grades).
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        grade = self.gradebook.find_grade(grade_id, self.notebook_id, self.assignment_id, self.student_id)
        reviewed = grade.manual_score is not None and not grade.needs_manual_grade
        auto_score, _ = utils.determine_grade(cell, self.log)
        grade.auto_score = auto_score
        # A TA's earlier score, or no automatic one, means a TA has to look (again).
        grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
        if not (utils.is_solution(cell) and utils.is_grade(cell)):
            return
        fingerprint = answer_fingerprint(cell.source)
        self.current[grade_id] = fingerprint
        if reviewed and self.previous.get(grade_id) == fingerprint:
            grade.needs_manual_grade = False

    def _add_comment(self, cell, resources) -> None:
        # SaveAutoGrades._add_comment without its commit (see save_grades).
        comment = self.gradebook.find_comment(cell.metadata["nbgrader"]["grade_id"], self.notebook_id,
                                              self.assignment_id, self.student_id)
        if cell.metadata.nbgrader.get("checksum", None) == utils.compute_checksum(cell) and not utils.is_task(cell):
            comment.auto_comment = "No response."
        else:
            comment.auto_comment = None


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
