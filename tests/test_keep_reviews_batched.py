"""SaveAutoGradesKeepingReviews saves what nbgrader's SaveAutoGrades saves, in one transaction per notebook."""
import nbformat
import pytest
from nbformat.v4 import new_output
from nbgrader.api import Gradebook
from nbgrader.preprocessors import SaveAutoGrades
from traitlets.config import Config

from coursekit.nbgrader_plugins.keep_reviews import SaveAutoGradesKeepingReviews
from conftest import RELEASE_PATH, gradebook_with_submission


def autograded_notebook():
    """The release with a mix of outcomes: some test cells failed, one printed to stderr, one answer edited."""
    nb = nbformat.read(RELEASE_PATH, as_version=4)
    graded = [cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("grade")]
    code = [cell for cell in graded if cell.cell_type == "code"]
    code[0].outputs = [new_output("error", ename="AssertionError", evalue="wrong", traceback=[])]
    code[1].outputs = [new_output("stream", name="stderr", text="warning\n")]
    code[2].outputs = [new_output("execute_result", data={"text/plain": "0.5"}, execution_count=1)]
    text = next(cell for cell in graded if cell.cell_type == "markdown")
    text.source = "An answer a student wrote."
    return nb


def saved_rows(url: str) -> list[tuple]:
    with Gradebook(url) as gradebook:
        notebook = gradebook.find_submission_notebook("ml_ex2", "ex2", "anna")
        grades = sorted((g.name, g.auto_score, g.manual_score, bool(g.needs_manual_grade)) for g in notebook.grades)
        comments = sorted((c.name, c.auto_comment, c.manual_comment) for c in notebook.comments)
    return grades + comments


@pytest.mark.parametrize("manual_score_first", [False, True], ids=["fresh", "after-ta-scores"])
def test_same_rows_as_nbgrader(tmp_path, manual_score_first):
    urls = {}
    for name in ("stock", "kit"):
        folder = tmp_path / name
        folder.mkdir()
        urls[name] = gradebook_with_submission(folder)
        if manual_score_first:  # a TA scored every answer before this autograde
            with Gradebook(urls[name]) as gradebook:
                for grade in gradebook.find_submission_notebook("ml_ex2", "ex2", "anna").grades:
                    grade.manual_score = 1.0
                gradebook.db.commit()
        config = Config()
        config.CourseDirectory.root = str(folder)
        resources = {"nbgrader": {"db_url": urls[name], "assignment": "ex2", "notebook": "ml_ex2", "student": "anna"}}
        preprocessor = SaveAutoGrades(config=config) if name == "stock" else SaveAutoGradesKeepingReviews(config=config)
        preprocessor.preprocess(autograded_notebook(), resources)
    stock, kit = saved_rows(urls["stock"]), saved_rows(urls["kit"])
    assert kit == stock
    assert any(row[1] == 0 for row in stock) and any(row[1] and row[1] > 0 for row in stock)  # a real mix
