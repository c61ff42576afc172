import pytest

from coursekit.errors import CourseKitError
from coursekit.notebooks import fill_answers, master_answers, read_notebook, release_stubs


def test_master_answers_drop_the_solution_markers(master):
    answers = master_answers(master)
    assert len(answers) == 12 + 15
    assert all("BEGIN SOLUTION" not in text for text in answers.values())
    assert "class Net(nn.Module)" in answers["net_model"]


def test_release_stubs_ask_for_code_and_text(release):
    stubs = release_stubs(release)
    assert "raise NotImplementedError()" in stubs["param_count"]
    assert stubs["learning_rate_issues"].strip() == "YOUR ANSWER HERE"


def test_fill_answers_replaces_only_the_named_cells(release):
    filled = fill_answers(release, {"param_count": "n_params = 1"})
    assert release_stubs(filled)["param_count"] == "n_params = 1"
    assert release_stubs(filled)["bmm_d"] == release_stubs(release)["bmm_d"]
    assert "n_params = 1" not in release_stubs(release)["param_count"]


def test_fill_answers_refuses_unknown_cells(release):
    with pytest.raises(CourseKitError, match="no answer cell with grade_id nope"):
        fill_answers(release, {"nope": ""})


def test_unreadable_notebooks_give_a_clear_error(tmp_path):
    with pytest.raises(CourseKitError, match="does not exist"):
        read_notebook(tmp_path / "missing.ipynb")
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    with pytest.raises(CourseKitError, match="not a readable notebook"):
        read_notebook(broken)


def test_the_rebuild_takes_over_a_bounded_number_of_added_cells(release):
    """Scratch cells run where the students put them; thousands of them do not all reach the grader."""
    import copy

    import nbformat

    from coursekit.nbgrader_plugins.rebuild import MAX_ADDED_CELLS, rebuild

    submission = copy.deepcopy(release)
    submission.cells[5:5] = [nbformat.v4.new_code_cell(f"scratch = {number}") for number in range(MAX_ADDED_CELLS + 30)]
    rebuilt, notes = rebuild(submission=submission, release=release)
    assert notes.added_cells == MAX_ADDED_CELLS and notes.left_out_cells == 30
    assert len(rebuilt.cells) == len(release.cells) + MAX_ADDED_CELLS
    assert "scratch = 0" in [cell.source for cell in rebuilt.cells]
