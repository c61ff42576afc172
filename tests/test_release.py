"""The committed release is what nbgrader makes from source/, and it leaks nothing."""
import re

from coursekit.engine.grading import run_nbgrader
from coursekit.notebooks import master_answers, read_notebook
from conftest import MASTER_PATH, RELEASE_PATH

LEAK_MARKERS = ["BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "Reference answer", "Rubric",
                "coursekit", "hidden_checks", "grader_record", "answer+json"]


def comparable(notebook):
    return [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in notebook.cells]


def test_release_is_in_sync_with_source(prototype_course, release):
    regenerated = read_notebook(prototype_course / "release" / "ex2" / "ml_ex2.ipynb")
    assert comparable(regenerated) == comparable(release), "run `make release` and commit release/"


def test_release_leaks_no_solution_hidden_test_or_rubric(master, release):
    text = RELEASE_PATH.read_text(encoding="utf-8")
    for marker in LEAK_MARKERS:
        assert marker not in text, marker
    release_sources = "\n".join(c.source for c in release.cells)
    for answer in master_answers(master).values():
        for line in answer.splitlines():
            line = line.strip()
            if len(line) > 12 and not line.startswith("#") and not re.match(r"(print|embedding_layer|tokens|embedded_x|y = torch.bmm|return|def |class |super)", line):
                assert line not in release_sources, line


def test_release_has_no_outputs(release):
    assert all(not c.get("outputs") for c in release.cells if c.cell_type == "code")


def test_nbgrader_validate_passes_on_solution_and_fails_on_release(prototype_course):
    solution = run_nbgrader(prototype_course, "validate", str(MASTER_PATH))
    assert "Success! Your notebook passes all the tests." in solution.stdout, solution.stdout[-2000:]
    blank = run_nbgrader(prototype_course, "validate", str(RELEASE_PATH))
    assert "VALIDATION FAILED" in blank.stdout, blank.stdout[-2000:]
