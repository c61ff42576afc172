"""The values the locked cells give, chosen by the grader for each run.

The sheet gives `x_start` and `a`, `b` through seeds, `X` and `y` as literals,
and the attention matrices as literals. When grading, the grader draws its own
values of the same shapes, dtypes and `requires_grad` (valid token ids and
labels), writes them into those cells before they run, and the judge computes
every reference from them. So an answer is right because it was computed from
what the cells give, however it was computed; a value copied from the sheet or
from a printout of the student's own run is wrong on the grader's values.

The draw is reproducible: it comes from a course secret (a file in the
course's `.coursekit/` folder, never in the sandbox), the team and the
submission's content, so grading an unchanged submission again gives the same
values and the same grade, and two teams get different ones.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

from coursekit.errors import CourseKitError

SECRET_FILE = Path(".coursekit") / "grader_secret"
SECRET_BYTES = 32

Matrix = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class GivenValues:
    x_start_seed: int
    bmm_seed: int
    net_seed: int
    X: tuple[int, ...]
    y: tuple[int, ...]
    Wq: Matrix
    Wk: Matrix
    x_words: Matrix

    def as_metadata(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_metadata(cls, data: dict) -> "GivenValues":
        def matrix(rows) -> Matrix:
            return tuple(tuple(float(value) for value in row) for row in rows)

        return cls(int(data["x_start_seed"]), int(data["bmm_seed"]), int(data["net_seed"]),
                   tuple(int(v) for v in data["X"]), tuple(int(v) for v in data["y"]),
                   matrix(data["Wq"]), matrix(data["Wk"]), matrix(data["x_words"]))


# What the sheet gives: the values of the release, and of any run without a grader (the master by hand).
SHEET = GivenValues(
    x_start_seed=0, bmm_seed=1, net_seed=42, X=(1, 2, 3, 7), y=(1, 0, 1, 3),
    Wq=((0.5, 2.0), (3.0, 1.5)), Wk=((1.0, 0.4), (0.6, 1.2)), x_words=((1.0, 2.0), (2.0, 1.0), (1.5, 1.5)),
)
VOCABULARY, CLASSES = 8, 4  # Net's embedding has 8 rows; it predicts 4 classes


def submission_key(*, secret: bytes, team: str, submission: str) -> bytes:
    return hmac.new(secret, f"{team}\0{submission}".encode(), hashlib.sha256).digest()


def cell_challenge(*, key: bytes, grade_id: str) -> int:
    """The challenge of one test cell (coursekit.recorder.challenges) from a submission's key: unpredictable
    without the secret, the same every time the same submission is graded, so a grade never changes by chance."""
    digest = hmac.new(key, f"challenge\0{grade_id}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") >> 2  # 62 bits


def draw(*, secret: bytes, team: str, submission: str) -> GivenValues:
    """The given values of one team's submission: fresh, reproducible, never the sheet's."""
    key = submission_key(secret=secret, team=team, submission=submission)
    rng = random.Random(key)

    def seed(sheet: int) -> int:
        return next(value for value in iter(lambda: rng.randrange(1, 2**31 - 1), None) if value != sheet)

    def tenths(rows: int, columns: int, low: int, high: int) -> Matrix:
        return tuple(tuple(rng.randint(low, high) / 10 for _ in range(columns)) for _ in range(rows))

    while True:
        X = tuple(rng.randrange(VOCABULARY) for _ in range(4))
        y = tuple(rng.randrange(CLASSES) for _ in range(4))
        if (X, y) != (SHEET.X, SHEET.y) and X != SHEET.X and y != SHEET.y:
            break
    while True:
        # Positive and of the sheet's sizes: scores of ~30, weights that stay a distribution worth reading.
        Wq, Wk, words = tenths(2, 2, 5, 30), tenths(2, 2, 3, 15), tenths(3, 2, 10, 20)
        if Wq != SHEET.Wq and Wk != SHEET.Wk and words != SHEET.x_words and usable_attention(Wq, Wk, words):
            break
    return GivenValues(seed(SHEET.x_start_seed), seed(SHEET.bmm_seed), seed(SHEET.net_seed), X, y, Wq, Wk, words)


def softmax_rows(matrix: list[list[float]]) -> list[list[float]]:
    rows = []
    for row in matrix:
        top = max(row)
        powers = [math.exp(value - top) for value in row]
        rows.append([power / sum(powers) for power in powers])
    return rows


def transposed(matrix: list[list[float]]) -> list[list[float]]:
    return [list(column) for column in zip(*matrix)]


def usable_attention(Wq: Matrix, Wk: Matrix, words: Matrix) -> bool:
    """Attention values the task and its judge both work on, as the sheet's do.

    Scaled scores of the sheet's size (a softmax written out with exp stays far from
    float32's overflow), weights that are a distribution worth reading (none under 1 %,
    so no row is one-hot), and the usual mistakes (no scaling, softmax over columns,
    K Qᵀ) giving weights that differ from the right ones by a whole percent.
    """
    if len(set(words)) != len(words):
        return False
    Q = [[sum(w[k] * Wq[k][j] for k in range(2)) for j in range(2)] for w in words]
    K = [[sum(w[k] * Wk[k][j] for k in range(2)) for j in range(2)] for w in words]
    scores = [[sum(q[j] * key[j] for j in range(2)) for key in K] for q in Q]
    scaled = [[value / math.sqrt(2) for value in row] for row in scores]
    weights = softmax_rows(scaled)
    if max(abs(value) for row in scaled for value in row) > 25 or min(min(row) for row in weights) < 0.01:
        return False
    mistakes = (softmax_rows(scores), transposed(softmax_rows(transposed(scaled))), softmax_rows(transposed(scaled)))
    return all(max(abs(a - b) for wrong_row, row in zip(wrong, weights) for a, b in zip(wrong_row, row)) >= 0.01
               for wrong in mistakes)


def submission_fingerprint(sources: list[str]) -> str:
    """What identifies a submission's content: the sources of its (rebuilt) cells, in order."""
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


def course_secret(course_root: Path) -> bytes:
    """The course's secret, made on first use; it never leaves the grading machines."""
    path = Path(course_root) / SECRET_FILE
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another grading process made it a moment ago
            return course_secret(course_root)
        with os.fdopen(descriptor, "wb") as file:
            file.write(os.urandom(SECRET_BYTES))
        secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        # Half-written by a process that died, or truncated by hand: a weak key would make the draw guessable.
        raise CourseKitError(f"{path} is damaged; restore it from a backup, or delete it to make a new one "
                             "(the given values, and so the printed numbers, of later runs change).")
    return secret


# ---------------------------------------------------------------- the given cells, as the grader writes them

def matrix_literal(rows: Matrix, indent: int) -> str:
    lines = [f"[{', '.join(repr(value) for value in row)}]" for row in rows]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def given_x_start(values: GivenValues) -> str:
    return (f"torch.manual_seed({values.x_start_seed})\n"
            "x_start = torch.randn(3, 1, 4, 1, dtype=torch.float32)\n"
            "x_start.shape")


def given_bmm(values: GivenValues) -> str:
    return (f"torch.manual_seed({values.bmm_seed})\n"
            "a = torch.randn(64, 128, 256, dtype=torch.float32)   # [batch_size, seq_length, embedding_dim]\n"
            "b = torch.randn(64, 256, 512, dtype=torch.float32)   # [batch_size, embedding_dim, hidden_dim]\n"
            "x = torch.bmm(a, b)                                  # first BMM operation")


def given_net_data(values: GivenValues) -> str:
    return (f"torch.manual_seed({values.net_seed})\n"
            f"X = torch.tensor({list(values.X)}, dtype=torch.long)\n"
            f"y = torch.tensor({list(values.y)}, dtype=torch.long)")


def given_attention(values: GivenValues) -> str:
    rows = [f"[{', '.join(repr(value) for value in row)}]" for row in values.x_words]
    rows = [row + ("," if index < len(rows) - 1 else "])") for index, row in enumerate(rows)]
    width = max(14, max(len(row) for row in rows) + 2)  # the comments line up, as on the sheet
    lines = [f"{row:<{width}}# {word}" for row, word in zip(rows, ('"he"', '"likes"', '"cats"'))]
    return (f"Wq = torch.tensor({matrix_literal(values.Wq, len('Wq = torch.tensor('))}, requires_grad=True)\n"
            f"Wk = torch.tensor({matrix_literal(values.Wk, len('Wk = torch.tensor('))}, requires_grad=True)\n"
            "\n"
            "x_words = torch.tensor([" + ("\n" + " " * len("x_words = torch.tensor([")).join(lines))


# grade_id of a locked cell -> its source for given values (with SHEET: exactly the release's).
GIVEN_CELLS = {
    "given_x_start": given_x_start,
    "given_bmm": given_bmm,
    "given_net_data": given_net_data,
    "given_attention": given_attention,
}
