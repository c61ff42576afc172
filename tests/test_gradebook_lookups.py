"""Lookups in one query per kind of cell give what nbgrader's per-cell lookups give.

Gradebooks are built as `nbgrader generate_assignment` builds them (SaveCells on
the master notebook) with a submission; the kit's preprocessors and nbgrader's
then run on the same notebooks and must leave the same notebooks, resources and rows.
"""
import copy
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_output
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import GetGrades, OverwriteCells

from coursekit.nbgrader_plugins.gradebook_lookups import (GetGradesInOneQuery, OverwriteCellsInOneQuery,
                                                          PrefetchingGradebook)
from conftest import RELEASE_PATH, gradebook_with_submission


def gradebook_with_mixed_rows(folder: Path) -> str:
    """gradebook_with_submission, its rows a mix of scores, TA scores, extra credit and comments."""
    url = gradebook_with_submission(folder)
    with Gradebook(url) as gradebook:
        notebook = gradebook.find_submission_notebook("ml_ex2", "ex2", "anna")
        for number, grade in enumerate(notebook.grades):  # a mix of scores, TA scores and extra credit
            grade.auto_score = number % 3 or None
            grade.manual_score = 1.5 if number % 4 == 0 else None
            grade.extra_credit = 0.5 if number % 5 == 0 else None
        for number, comment in enumerate(notebook.comments):
            comment.auto_comment = f"auto {number}" if number % 2 else None
            comment.manual_comment = f"manual {number}" if number % 3 == 0 else None
        gradebook.db.commit()
    return url


def resources(url: str) -> dict:
    return {"nbgrader": {"db_url": url, "assignment": "ex2", "notebook": "ml_ex2", "student": "anna"}}


def tampered_submission() -> nbformat.NotebookNode:
    """The release as a student might return it: points, lock flags, a locked cell's source and a cell type changed."""
    nb = nbformat.read(RELEASE_PATH, as_version=4)
    graded = [cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("grade")]
    graded[0].metadata.nbgrader["points"] = 1000
    locked = [cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("locked") and cell.cell_type == "code"]
    locked[0].source = "print('edited')"
    locked[1].metadata.nbgrader["locked"] = False
    unknown = copy.deepcopy(graded[1])
    unknown.metadata.nbgrader["grade_id"] = "no_such_cell"
    nb.cells.append(unknown)
    code = next(cell for cell in graded if cell.cell_type == "code")
    code.outputs = [new_output("stream", name="stdout", text="x\n")]
    return nb


@pytest.fixture
def gradebook_url(tmp_path):
    return gradebook_with_mixed_rows(tmp_path)


def test_every_lookup_returns_what_nbgrader_returns(gradebook_url):
    with Gradebook(gradebook_url) as gradebook:
        prefetching = PrefetchingGradebook(gradebook)
        notebook = gradebook.find_notebook("ml_ex2", "ex2")
        cells = notebook.grade_cells + notebook.solution_cells + notebook.task_cells + notebook.source_cells
        names = {cell.name for cell in cells} | {"nope"}
        found = 0
        for name in sorted(names):
            for lookup, arguments in (("find_grade", (name, "ml_ex2", "ex2", "anna")),
                                      ("find_comment", (name, "ml_ex2", "ex2", "anna")),
                                      ("find_source_cell", (name, "ml_ex2", "ex2")),
                                      ("find_graded_cell", (name, "ml_ex2", "ex2"))):
                try:
                    expected = getattr(gradebook, lookup)(*arguments)
                except MissingEntry as error:
                    with pytest.raises(MissingEntry, match=str(error)):
                        getattr(prefetching, lookup)(*arguments)
                    continue
                assert getattr(prefetching, lookup)(*arguments) is expected
                found += 1
        assert found > 100  # grades, comments, source and graded cells of the exercise


def test_overwrite_cells_leaves_the_same_notebook(tmp_path):
    notebooks = {}
    for name, preprocessor in (("stock", OverwriteCells), ("kit", OverwriteCellsInOneQuery)):
        (tmp_path / name).mkdir()
        url = gradebook_with_mixed_rows(tmp_path / name)
        notebooks[name], _ = preprocessor().preprocess(tampered_submission(), resources(url))
    assert notebooks["kit"] == notebooks["stock"]
    assert notebooks["stock"] != tampered_submission()  # there was something to overwrite


def test_get_grades_reads_the_same_scores_and_comments(gradebook_url):
    results = {}
    for name, preprocessor in (("stock", GetGrades), ("kit", GetGradesInOneQuery)):
        results[name] = preprocessor().preprocess(nbformat.read(RELEASE_PATH, as_version=4), resources(gradebook_url))
    assert results["kit"] == results["stock"]
    nb, found = results["stock"]
    scores = [cell.metadata.nbgrader.get("score") for cell in nb.cells if "score" in cell.metadata.get("nbgrader", {})]
    assert len(set(scores)) > 2 and found["nbgrader"]["score"] > 0  # a real mix
