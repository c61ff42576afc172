"""`coursekit grade` compares the teams it graded: a small download with one copied notebook, real nbgrader."""
import csv
import zipfile

import nbformat
import pytest

from coursekit import demo
from coursekit.engine.workflow import grade_download
from coursekit.notebooks import fill_answers, master_answers, read_notebook
from conftest import MASTER_PATH, RELEASE_PATH, REPOSITORY
from similarity_class import rename_variables

OWN_WORDS = {
    "bmm_why_d": "Our reasoning: bmm wants matching batch sizes, and the 512 columns of every x matrix have to meet "
                 "512 rows of the matching d matrix, so d is (64, 512, 9) and y becomes (64, 128, 9).",
    "learning_rate_issues": "At first the tiny steps barely moved the weights; after the increase each step jumps "
                            "across the valley of the loss, which is why it swings up and down.",
    "embedding_purpose": "A learned table that gives every token id its own dense vector, which training moves "
                         "around so related tokens end up close together.",
}
# Wrong, and unusual: the judge fails it with the same message for both teams.
WRONG_PARAM_COUNT = "layer_sizes = [236, 472, 472, 10]\nn_params = sum(a * b for a, b in zip(layer_sizes, layer_sizes[1:])) + 472\n"


def notebook(answers) -> bytes:
    return nbformat.writes(fill_answers(read_notebook(RELEASE_PATH), answers)).encode()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("similarity-grade")
    course = tmp_path / "course"
    demo.copy_course(course_root=REPOSITORY, destination=course)
    solution = master_answers(read_notebook(MASTER_PATH))
    original = {**solution, **OWN_WORDS, "param_count": WRONG_PARAM_COUNT}
    copied = {**original, "param_count": rename_variables(WRONG_PARAM_COUNT),
              "net_model": rename_variables(solution["net_model"])}
    download = tmp_path / "download.zip"
    with zipfile.ZipFile(download, "w") as archive:
        archive.writestr("Gruppe 1/anna_bob_ml_ex2.ipynb", notebook(original))
        archive.writestr("Gruppe 2/carl_ml_ex2.ipynb", notebook(copied))
        archive.writestr("Gruppe 3/dora_ml_ex2.ipynb", notebook(solution))
        archive.writestr("Gruppe 4/emil_ml_ex2.ipynb", notebook({}))
    summary = grade_download(download=download, course_root=course, output_folder=tmp_path / "results", workers=2)
    return tmp_path / "results", summary


def test_grade_flags_the_copied_notebook_and_nothing_else(graded):
    results, summary = graded
    with open(results / "similarity.csv", encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    flagged = [(row["team_a"], row["team_b"]) for row in rows if row["flagged"] == "yes"]
    assert flagged == [("anna_bob", "carl")], rows
    assert "param_count" in rows[0]["answers"].split(";") and "bmm_why_d" in rows[0]["answers"].split(";")
    assert summary.similar_pairs == 1 and any("similar:   1 pairs" in line for line in summary.lines())


def test_the_judges_verdict_and_the_pages_reach_the_report(graded):
    results, _ = graded
    page = (results / "similarity" / "pair-001.html").read_text(encoding="utf-8")
    assert "[FAILED] n_params" in page  # the real judge's failure, shared by both teams
    assert "anna_bob" in page and "carl" in page and "<mark>" in page
    report = (results / "report.html").read_text(encoding="utf-8")
    attention = report.split('id="attention"', 1)[1].split("</table>", 1)[0]
    assert "similar answers" in attention and "similarity/pair-001.html" in attention
