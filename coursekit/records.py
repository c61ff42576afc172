"""Records that several steps share: one team's grading result and how tasks are scored."""
from __future__ import annotations

from dataclasses import dataclass

from coursekit.reports.integrity import Finding
from coursekit.statuses import GradingStatus

# Which graded cells (grade_ids in the gradebook) make up each task's points.
TASK_CELLS: dict[str, tuple[str, ...]] = {
    "Task 1.1": ("squeeze_explain", "squeeze_target_test"),
    "Task 1.2": ("bmm_x_shape_test", "bmm_d_test", "bmm_why_d", "bmm_context"),
    "Task 1.3": ("embedding_sizes_test", "embedding_purpose", "embedding_args", "embedding_out_of_range"),
    "Task 2": ("param_count_test", "params_vs_hyperparams"),
    "Task 3.1": ("net_model_test", "net_loss_test"),
    "Task 3.2": ("net_task_type", "net_no_output_activation", "net_vocab_size", "net_labels"),
    "Task 4": ("attention_qk_test", "attention_scores_test", "attention_variance_test", "attention_softmax_test",
               "attention_ratio_meaning", "attention_rows", "attention_likes"),
    "Task 5": ("optimizer_choice_test", "learning_rate_issues"),
}


@dataclass(frozen=True)
class CellScore:
    """One graded cell of a team's notebook, as the gradebook has it."""

    grade_id: str
    score: float
    max_score: float
    needs_manual_grade: bool      # a TA still has to grade it (coursekit.course.waits_for_ta)


@dataclass(frozen=True)
class TeamResult:
    """Everything known about one graded team, for grades.csv, feedback and the report."""

    team_id: str                      # nbgrader student id of the team, e.g. "anna.muster_jdoe"
    members: tuple[str, ...]          # OLAT user names
    status: GradingStatus
    reason: str                       # why, when the status is not "graded"
    origin: str                       # where the submitted file came from in the download
    cells: tuple[CellScore, ...]      # every graded cell, autograded and manual
    findings: tuple[Finding, ...]     # integrity findings (never change the grade)
    written_members: str = ""         # what the team wrote in its team-members cell

    @property
    def total(self) -> float:
        return sum(cell.score for cell in self.cells)

    @property
    def max_total(self) -> float:
        return sum(cell.max_score for cell in self.cells)

    @property
    def needs_manual_grading(self) -> bool:
        return any(cell.needs_manual_grade for cell in self.cells)

    def task_points(self) -> dict[str, float]:
        by_id = {cell.grade_id: cell.score for cell in self.cells}
        return {task: sum(by_id.get(cell_id, 0.0) for cell_id in cell_ids) for task, cell_ids in TASK_CELLS.items()}
