"""nbgrader preprocessors that look up a notebook's cells in the gradebook with one query each, not one per cell.

nbgrader's OverwriteCells, SaveAutoGrades and GetGrades call `find_source_cell`,
`find_graded_cell`, `find_grade` and `find_comment` once per graded cell, each a
six-table join through SQLAlchemy's ORM: ~0.7 ms apiece, ~0.25 CPU-s per
submission of this exercise across autograde and feedback, more than the
notebook's own code takes to run. Here the preprocessor's gradebook answers
those lookups from dictionaries filled by one query per kind of cell, with the
same ORM objects in the same session, so what the preprocessor reads, changes
and commits is what nbgrader's lookups would have given it. Each kind is
queried in the order nbgrader's lookup tries it (a grade cell before a task
cell of the same name); a name not found goes to nbgrader's own lookup, which
raises its own MissingEntry.

Enabled in nbgrader_config.py in place of nbgrader's classes, for plain
`nbgrader autograde`/`generate_feedback` and `coursekit grade` alike.
"""
from __future__ import annotations

from typing import Any

from nbgrader.api import (Assignment, Comment, Grade, Gradebook, GradeCell, Notebook, SolutionCell, SourceCell,
                          Student, SubmittedAssignment, SubmittedNotebook, TaskCell)
from nbgrader.preprocessors import GetGrades, OverwriteCells
from sqlalchemy.orm import undefer


class PrefetchingGradebook:
    """A nbgrader Gradebook whose per-cell lookups of one notebook come from one query per kind of cell."""

    def __init__(self, gradebook: Gradebook) -> None:
        self._gradebook = gradebook
        self._found: dict[tuple, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gradebook, name)

    def __enter__(self) -> "PrefetchingGradebook":
        self._gradebook.__enter__()
        return self

    def __exit__(self, *exception: Any) -> None:
        self._found.clear()
        self._gradebook.__exit__(*exception)

    def _submitted(self, row, cell_class, notebook: str, assignment: str, student: str) -> dict[str, Any]:
        key = (row, cell_class, notebook, assignment, student)
        if key not in self._found:
            query = (self._gradebook.db.query(cell_class.name, row)
                     .join(cell_class, cell_class.id == row.cell_id)
                     .join(SubmittedNotebook, SubmittedNotebook.id == row.notebook_id)
                     .join(Notebook, Notebook.id == SubmittedNotebook.notebook_id)
                     .join(SubmittedAssignment, SubmittedAssignment.id == SubmittedNotebook.assignment_id)
                     .join(Assignment, Assignment.id == SubmittedAssignment.assignment_id)
                     .join(Student, Student.id == SubmittedAssignment.student_id)
                     .filter(Notebook.name == notebook, Assignment.name == assignment, Student.id == student))
            if row is Grade:  # read with the grade by GetGrades, else a query per grade
                query = query.options(undefer(Grade.max_score))
            self._found[key] = dict(query.all())
        return self._found[key]

    def _source(self, cell_class, notebook: str, assignment: str) -> dict[str, Any]:
        key = (cell_class, notebook, assignment)
        if key not in self._found:
            query = (self._gradebook.db.query(cell_class.name, cell_class)
                     .join(Notebook, Notebook.id == cell_class.notebook_id)
                     .join(Assignment, Assignment.id == Notebook.assignment_id)
                     .filter(Notebook.name == notebook, Assignment.name == assignment))
            self._found[key] = dict(query.all())
        return self._found[key]

    def find_grade(self, grade_cell: str, notebook: str, assignment: str, student: str) -> Grade:
        for cell_class in (GradeCell, TaskCell):
            if grade_cell in (found := self._submitted(Grade, cell_class, notebook, assignment, student)):
                return found[grade_cell]
        return self._gradebook.find_grade(grade_cell, notebook, assignment, student)

    def find_comment(self, solution_cell: str, notebook: str, assignment: str, student: str) -> Comment:
        for cell_class in (SolutionCell, TaskCell):
            if solution_cell in (found := self._submitted(Comment, cell_class, notebook, assignment, student)):
                return found[solution_cell]
        return self._gradebook.find_comment(solution_cell, notebook, assignment, student)

    def find_source_cell(self, name: str, notebook: str, assignment: str) -> SourceCell:
        if name in (found := self._source(SourceCell, notebook, assignment)):
            return found[name]
        return self._gradebook.find_source_cell(name, notebook, assignment)

    def find_graded_cell(self, name: str, notebook: str, assignment: str) -> GradeCell | TaskCell:
        for cell_class in (GradeCell, TaskCell):
            if name in (found := self._source(cell_class, notebook, assignment)):
                return found[name]
        return self._gradebook.find_graded_cell(name, notebook, assignment)


class LookupsInOneQuery:
    """Mixin for a preprocessor that sets `self.gradebook = Gradebook(...)` and looks cells up in it."""

    @property
    def gradebook(self) -> PrefetchingGradebook:
        return self._prefetching_gradebook

    @gradebook.setter
    def gradebook(self, gradebook: Gradebook) -> None:
        self._prefetching_gradebook = gradebook if isinstance(gradebook, PrefetchingGradebook) \
            else PrefetchingGradebook(gradebook)


class OverwriteCellsInOneQuery(LookupsInOneQuery, OverwriteCells):
    """nbgrader's OverwriteCells, its source and graded cells looked up with one query each."""


class GetGradesInOneQuery(LookupsInOneQuery, GetGrades):
    """nbgrader's GetGrades, its grades and comments looked up with one query each."""
