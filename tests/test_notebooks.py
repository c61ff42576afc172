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
