"""The grader's own given values: drawn per team and submission, reproducible, never the sheet's."""
import hashlib
import math
import os
import stat

import pytest
import torch
import torch.nn.functional as F

from coursekit.errors import CourseKitError
from coursekit.exercise.checks import grade_namespace
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


# ---------------------------------------------------------------- judging on drawn values (attack branch)
# Right answers stay right and wrong ones wrong on every draw, not only on the sheet's values. Each draw is what
# some team of some course gets (fixed secrets: repeatable); the answers are computed as the kernel does (float32).

DRAWS = [given.draw(secret=hashlib.sha256(f"course-{number}".encode()).digest(), team=f"team-{number}",
              submission="unchanged") for number in range(400)]


def attention_answers(given, weights_of):
    """The master solution of Task 4 on `given`, with `weights_of(scores, scores_scaled)` for the weights."""
    Wq = torch.tensor(given.Wq, requires_grad=True)
    Wk = torch.tensor(given.Wk, requires_grad=True)
    x_words = torch.tensor(given.x_words)
    Q, K = x_words @ Wq, x_words @ Wk
    d_k = K.shape[1]
    scores = Q @ K.T
    scores_scaled = scores / math.sqrt(d_k)
    return {"Q": Q, "K": K, "d_k": d_k, "scores": scores, "scores_scaled": scores_scaled,
            "var_scores": torch.var(scores), "var_scores_scaled": torch.var(scores_scaled),
            "weights": weights_of(scores, scores_scaled)}


def misgraded(cell, weights_of, *, right):
    wrong = [given for given in DRAWS
             if grade_namespace(cell, attention_answers(given, weights_of), points=2, given=given).full_marks != right]
    return len(wrong)


def test_the_master_solution_gets_full_marks_on_every_draw():
    # On 2,000 random draws: the variances fail on ~0.7 %, the softmax on ~3.6 % (float32 error of scores
    # in the hundreds against an absolute tolerance of 1e-6).
    softmax = lambda scores, scaled: F.softmax(scaled, dim=1)  # noqa: E731
    assert (misgraded("attention_variance", softmax, right=True), misgraded("attention_softmax", softmax, right=True)) \
        == (0, 0)


def test_a_softmax_written_out_gets_full_marks_on_every_draw():
    # Corpus variant "softmax written out with exp and a row sum": right, and right on the sheet's
    # values; exp overflows float32 past 88, and drawn scaled scores reach 246 (sheet: 20): ~29 % fail.
    written_out = lambda scores, scaled: torch.exp(scaled) / torch.exp(scaled).sum(dim=1, keepdim=True)  # noqa: E731
    assert misgraded("attention_softmax", written_out, right=True) == 0


@pytest.mark.parametrize("name, weights_of", [
    ("softmax of the unscaled scores", lambda scores, scaled: F.softmax(scores, dim=1)),
    ("softmax over the wrong dimension", lambda scores, scaled: F.softmax(scaled, dim=0)),
])
def test_wrong_weights_are_caught_on_every_draw(name, weights_of):
    # ~43 % of draws make every row of the weights one-hot (> 0.999): the unscaled softmax then equals
    # the scaled one and gets full marks on ~14 % of draws.
    assert misgraded("attention_softmax", weights_of, right=False) == 0
