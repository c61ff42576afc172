"""The grader's own given values: drawn per team and submission, reproducible, never the sheet's."""
import os
import stat

import pytest

from coursekit.errors import CourseKitError
from coursekit.exercise import given
from coursekit.notebooks import grade_id


def test_the_sheets_values_write_the_release_cells_exactly(release):
    cells = {grade_id(cell): cell.source for cell in release.cells if grade_id(cell) in given.GIVEN_CELLS}
    assert set(cells) == set(given.GIVEN_CELLS)
    for cell_id, write in given.GIVEN_CELLS.items():
        assert write(given.SHEET) == cells[cell_id], cell_id


def test_a_draw_is_reproducible_and_differs_between_teams_and_submissions():
    secret = b"k" * 32
    first = given.draw(secret=secret, team="alice_bob", submission="abc")
    assert given.draw(secret=secret, team="alice_bob", submission="abc") == first
    others = [given.draw(secret=secret, team="carl", submission="abc"),
              given.draw(secret=secret, team="alice_bob", submission="abd"),
              given.draw(secret=b"j" * 32, team="alice_bob", submission="abc")]
    for other in others:
        assert other != first
        assert other.x_start_seed != first.x_start_seed and other.Wq != first.Wq


@pytest.mark.parametrize("team", [f"team{number}" for number in range(12)])
def test_a_draw_is_never_the_sheet_and_always_valid(team):
    values = given.draw(secret=b"s" * 32, team=team, submission="x")
    sheet = given.SHEET
    assert values.x_start_seed != sheet.x_start_seed and values.bmm_seed != sheet.bmm_seed
    assert values.X != sheet.X and values.y != sheet.y
    assert all(0 <= token < 8 for token in values.X) and all(0 <= label < 4 for label in values.y)
    assert values.Wq != sheet.Wq and values.Wk != sheet.Wk and values.x_words != sheet.x_words
    assert [len(row) for row in values.Wq] == [2, 2] and [len(row) for row in values.x_words] == [2, 2, 2]
    assert given.GivenValues.from_metadata(values.as_metadata()) == values
    namespace = {}
    cells = [write(values) for cell_id, write in given.GIVEN_CELLS.items() if cell_id != "given_bmm"]  # 1 GFLOP spared
    exec("import torch\n" + "\n".join(cells), namespace)
    assert given.given_bmm(values).startswith(f"torch.manual_seed({values.bmm_seed})\n")
    assert namespace["Wq"].requires_grad and namespace["Wk"].requires_grad and not namespace["x_words"].requires_grad
    assert namespace["X"].dtype == namespace["y"].dtype == __import__("torch").long
    assert tuple(namespace["x_start"].shape) == (3, 1, 4, 1)


def test_the_course_secret_is_made_once_private_and_checked(tmp_path):
    secret = given.course_secret(tmp_path)
    path = tmp_path / given.SECRET_FILE
    assert len(secret) == given.SECRET_BYTES and given.course_secret(tmp_path) == secret
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.write_bytes(b"short")
    with pytest.raises(CourseKitError, match="delete it"):
        given.course_secret(tmp_path)
