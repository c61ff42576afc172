"""The demo's class table: autograded points out of the autograded maximum, problems printable."""
from pathlib import Path

from coursekit.demo import format_class_table
from coursekit.records import CellScore
from coursekit.olat.importing import ImportProblem
from coursekit.records import TeamResult
from coursekit.engine.workflow import RunSummary


def test_the_table_counts_only_autograded_cells_and_prints_no_control_characters():
    cells = (CellScore("bmm_d_test", 5.0, 5.0, needs_manual_grade=False),
             CellScore("net_model_test", 6.0, 12.0, needs_manual_grade=False),
             # A blank free-text answer nbgrader scored 0 itself: not waiting for a TA, still not autograded.
             CellScore("squeeze_explain", 0.0, 4.0, needs_manual_grade=False),
             CellScore("bmm_why_d", 0.0, 4.0, needs_manual_grade=True))
    result = TeamResult(team_id="anna_bob", members=("anna", "bob"), status="graded", reason="",
                        origin="download.zip/anna_bob_ml_ex2.ipynb", cells=cells, findings=())
    problem = ImportProblem("download.zip/x\x1b[2J.ipynb", "unmatched-name", "x\x1b[2J_ml_ex2.ipynb is not a team")
    table = format_class_table(RunSummary((result,), (), (problem,), ("carl",), Path("results"), 1.0))
    assert "anna_bob" in table and "11/17" in table
    assert "\x1b" not in table and "! no submission: carl" in table
