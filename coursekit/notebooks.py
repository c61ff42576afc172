"""Reading the master notebook and writing submissions from answers.

Sample submissions, the answer corpus and the benchmarks all start from the
student release and fill in answer cells, exactly as a student would.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from coursekit.errors import CourseKitError

SOLUTION_REGION = re.compile(r"^[ \t]*### BEGIN SOLUTION\n(.*?)^[ \t]*### END SOLUTION\n?", re.S | re.M)
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"


def read_notebook(path: Path) -> NotebookNode:
    try:
        return nbformat.read(str(path), as_version=4)
    except FileNotFoundError:
        raise CourseKitError(f"{path} does not exist; check the path.") from None
    except Exception as error:
        raise CourseKitError(f"{path} is not a readable notebook ({type(error).__name__}); re-save it from Jupyter.") from None


def grade_id(cell: NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def is_answer_cell(cell: NotebookNode) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("solution"))


def master_answers(master: NotebookNode) -> dict[str, str]:
    """The solution of every answer cell, as the student would type it into the release."""
    answers = {}
    for cell in master.cells:
        if is_answer_cell(cell):
            answers[grade_id(cell)] = SOLUTION_REGION.sub(lambda match: match.group(1), cell.source)
    return answers


def release_stubs(release: NotebookNode) -> dict[str, str]:
    return {grade_id(cell): cell.source for cell in release.cells if is_answer_cell(cell)}


def fill_answers(release: NotebookNode, answers: dict[str, str]) -> NotebookNode:
    """A copy of the release with the given answer cells replaced; unknown ids are an error."""
    filled = copy.deepcopy(release)
    known = {grade_id(cell) for cell in filled.cells if is_answer_cell(cell)}
    unknown = sorted(set(answers) - known)
    if unknown:
        raise CourseKitError(f"no answer cell with grade_id {', '.join(unknown)}; valid ids: {', '.join(sorted(known))}.")
    for cell in filled.cells:
        if is_answer_cell(cell) and grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return filled


def write_notebook(notebook: NotebookNode, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))
