"""The grader draws the given values of each run: nbgrader's autograde step, before execution.

DrawGivenValues rewrites the locked cells that give values (coursekit.exercise.given)
with values drawn for this team and this submission, before any cell runs, and
hands them, and how to derive each test cell's challenge, to the execution step
(SandboxedExecute) through nbgrader's resources, never through the notebook: a
student's notebook can put anything into its metadata. The notebook records them too, and says at the top that it
was graded on them, for the student and the TA reading it.

Named in nbgrader_config.py, so `coursekit grade`, plain `nbgrader autograde`
and the formgrader's autograde button all draw alike.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbconvert.exporters.exporter import ResourcesDict
from nbformat import NotebookNode

from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor

from coursekit.exercise.given import (
    GIVEN_CELLS, GivenValues, course_secret, draw, submission_fingerprint, submission_key,
)
from coursekit.nbgrader_plugins.rebuild import STATUS_KEY, grade_id_of

RESOURCES_KEY = "coursekit_given_values"
CHALLENGES_KEY = "coursekit_challenges"
NOTICE_CELL_ID = "coursekit-given-values"
NOTICE = ("**Graded on the grader's own values.** The autograder ran this notebook with its own values for "
          "the given tensors (the seeds of `x_start`, `a` and `b`, and `X`, `y`, `Wq`, `Wk`, `x_words`), so the "
          "numbers printed below differ from your own run; every verdict compares your answers with what is "
          "right for these values.")


def given_values_of(resources: dict | None) -> GivenValues | None:
    """The values DrawGivenValues drew for this run, or None when nothing was drawn."""
    value = (resources or {}).get(RESOURCES_KEY)
    return value if isinstance(value, GivenValues) else None


def challenge_key_of(resources: dict | None) -> bytes | None:
    """The key this submission's test-cell challenges come from (given.cell_challenge), or None."""
    value = (resources or {}).get(CHALLENGES_KEY)
    return value if isinstance(value, bytes) else None


class DrawGivenValues(NbGraderPreprocessor):
    """Autograding, first step: the given cells get this run's values (after the sanitizing rebuild)."""

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        root = Path(CourseDirectory(config=self.config).root)
        team = str(resources.get("nbgrader", {}).get("student", ""))
        # The rebuilt cells' sources: the release's locked cells and this team's answers.
        fingerprint = submission_fingerprint([str(cell.get("source", "")) for cell in nb.cells])
        secret = course_secret(root)
        values = draw(secret=secret, team=team, submission=fingerprint)
        resources[CHALLENGES_KEY] = submission_key(secret=secret, team=team, submission=fingerprint + "\0challenges")
        for cell in nb.cells:
            write = GIVEN_CELLS.get(grade_id_of(cell) or "")
            if write is not None:
                cell.source = write(values)
        resources[RESOURCES_KEY] = values
        nb.metadata.setdefault(STATUS_KEY, {})["given_values"] = values.as_metadata()
        if not any(cell.get("id") == NOTICE_CELL_ID for cell in nb.cells):
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(NOTICE, id=NOTICE_CELL_ID))
        return nb, resources
