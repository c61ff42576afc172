"""Grading accuracy: does every right answer get full marks and every wrong one not?

The corpus is readable data (`tests/corpus/variants.toml`): each variant replaces
one answer cell of an otherwise correct submission. All variants are graded
with real nbgrader; a variant counts as graded correctly when its cell gets
full marks (right) or loses marks (wrong) *and* every other cell keeps full marks.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from coursekit.errors import CourseKitError
from coursekit.engine.grading import StudentScores
from coursekit.engine.run import grade_notebooks
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.notebooks import fill_answers, master_answers, read_notebook

BASELINE_ID = "baseline"


@dataclass(frozen=True)
class Variant:
    number: int
    cell: str
    right: bool
    reason: str
    code: str

    @property
    def student_id(self) -> str:
        return f"variant-{self.number:03d}"


@dataclass(frozen=True)
class VariantOutcome:
    variant: Variant
    score: float
    max_score: float
    other_cells_intact: bool
    # Why other cells lost marks, when they did: the cells and the notebook's grading status.
    others_lost: str = ""

    @property
    def graded_correctly(self) -> bool:
        if not self.other_cells_intact:
            return False
        return self.score == self.max_score if self.variant.right else self.score < self.max_score


def load_variants(path: Path) -> list[Variant]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CourseKitError(f"corpus file {path} does not exist; pass --corpus PATH.") from None
    except tomllib.TOMLDecodeError as error:
        raise CourseKitError(f"corpus file {path} is not valid TOML ({error}).") from None
    variants = []
    for number, entry in enumerate(data.get("variant", []), start=1):
        missing = {"cell", "right", "reason", "code"} - set(entry)
        if missing:
            raise CourseKitError(f"variant {number} in {path} lacks {', '.join(sorted(missing))}.")
        variants.append(Variant(number, entry["cell"], bool(entry["right"]), entry["reason"], entry["code"]))
    if not variants:
        raise CourseKitError(f"{path} holds no [[variant]] entries.")
    return variants


def test_cell_of(answer_cell: str) -> str:
    return f"{answer_cell}_test"


def evaluate(*, course_root: Path, corpus: Path, work_dir: Path, workers: int) -> list[VariantOutcome]:
    variants = load_variants(corpus)
    master = read_notebook(course_root / "source" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb")
    release = read_notebook(course_root / "release" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb")
    correct = master_answers(master)
    submissions = {BASELINE_ID: fill_answers(release, correct)}
    for variant in variants:
        submissions[variant.student_id] = fill_answers(release, {**correct, variant.cell: variant.code})
    scores = grade_notebooks(template_root=course_root, work_dir=work_dir, submissions=submissions, workers=workers)
    baseline = scores.get(BASELINE_ID)
    if baseline is None or any(c.score != c.max_score for c in baseline.autograded().values()):
        raise CourseKitError("the master solution itself does not get full marks; fix the notebook before measuring accuracy.")
    return [outcome_of(variant, scores.get(variant.student_id)) for variant in variants]


def outcome_of(variant: Variant, scores: StudentScores | None) -> VariantOutcome:
    if scores is None:  # nbgrader could not grade the notebook at all
        return VariantOutcome(variant, 0.0, 0.0, False, "not graded")
    cells = scores.autograded()
    target = cells[test_cell_of(variant.cell)]
    lost = [name for name, c in cells.items() if name != target.grade_id and c.score != c.max_score]
    why = f"{', '.join(lost)} (status {scores.status}{': ' + scores.reason if scores.reason else ''})" if lost else ""
    return VariantOutcome(variant, target.score, target.max_score, not lost, why)


def format_table(outcomes: list[VariantOutcome]) -> str:
    cells = sorted({o.variant.cell for o in outcomes}, key=[o.variant.cell for o in outcomes].index)
    header = f"{'cell':<20} {'right: full marks':>18} {'wrong: caught':>14}"
    lines = [header, "-" * len(header)]

    def counts(group: list[VariantOutcome]) -> tuple[str, str]:
        right = [o for o in group if o.variant.right]
        wrong = [o for o in group if not o.variant.right]
        return (f"{sum(o.graded_correctly for o in right)}/{len(right)}",
                f"{sum(o.graded_correctly for o in wrong)}/{len(wrong)}")

    for cell in cells:
        full, caught = counts([o for o in outcomes if o.variant.cell == cell])
        lines.append(f"{cell:<20} {full:>18} {caught:>14}")
    full, caught = counts(outcomes)
    lines += ["-" * len(header), f"{'total':<20} {full:>18} {caught:>14}"]
    misgraded = [o for o in outcomes if not o.graded_correctly]
    for outcome in misgraded:
        v = outcome.variant
        if not outcome.other_cells_intact:
            kind = f"other cells lost marks too: {outcome.others_lost}"
        else:
            kind = "right answer lost marks" if v.right else "wrong answer got full marks"
        lines.append(f"MISGRADED #{v.number} {v.cell} ({v.reason}): {kind}, {outcome.score}/{outcome.max_score}")
    return "\n".join(lines)
