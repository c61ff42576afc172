import base64
import dataclasses
from html.parser import HTMLParser

import pytest
from nbgrader.api import Gradebook

from coursekit.errors import CourseKitError
from coursekit.engine.grading import read_scores
from coursekit.olat.importing import ImportProblem
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.records import TeamResult
from coursekit.reports.reporting import write_report
from test_exporting import CRASHED, MAX_POINTS, PAIR, RESULTS, SINGLE, cell_scores, team

PNG = "data:image/png;base64,"
PROBLEM = ImportProblem(origin="download.zip/<img src=x onerror=alert(1)>.txt", kind="ignored-file",
                        message="not a notebook, not imported; nothing to do")
TWO_TEAMS = ImportProblem(origin="download.zip/anna_ben_ml_ex2.ipynb, download.zip/anna_ml_ex2.ipynb",
                          kind="student-in-two-teams", message="anna is in two teams; grades.csv has a row for each")
MISSING = ("fritz",)
# A TA has graded three of zoe's free-text answers: squeeze_explain 3 of 4, bmm_why_d 4 of 4, net_labels 0 of 2.
TA_GRADED = {"squeeze_explain": 3.0, "bmm_why_d": 4.0, "net_labels": 0.0}
PARTLY_GRADED = team("zoe", cells=tuple(
    dataclasses.replace(cell, score=TA_GRADED[cell.grade_id], needs_manual_grade=False)
    if cell.grade_id in TA_GRADED else cell
    for cell in cell_scores(scores={"bmm_d_test": 0, "net_model_test": 0}, manual_pending=True)))
# The kernel was killed in Task 3: the tests before it kept their points, the ones after it have none.
LATER_TESTS = ("net_model_test", "net_loss_test", "attention_qk_test", "attention_scores_test",
               "attention_variance_test", "attention_softmax_test", "optimizer_choice_test")
TIMED_OUT = team("gus", status="timed out", reason="the notebook exceeded its time limit",
                 cells=cell_scores(scores=dict.fromkeys(LATER_TESTS, 0), manual_pending=True))
BLANK = team("hugo", cells=cell_scores(scores={grade_id: 0 for grade_id in MAX_POINTS if grade_id.endswith("_test")},
                                       manual_pending=True))
CLASS = [PAIR, SINGLE, CRASHED, PARTLY_GRADED, TIMED_OUT, BLANK]


class PageParser(HTMLParser):
    """Collects the page's structure and the text of every table, by the table's id."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.headings: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attributes):
        attributes = dict(attributes)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attributes["src"])
        if "id" in attributes:
            self.ids.add(attributes["id"])
        if tag == "a":
            self.links.append(attributes["href"])
        if tag == "table":
            self._table = self.tables.setdefault(attributes.get("id", f"table-{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "h2":
            self._heading = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._table is not None:
            self._table[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "h2":
            self.headings.append("".join(self._heading))
            self._heading = None

    def handle_data(self, data):
        for part in (self._cell, self._heading):
            if part is not None:
                part.append(data)


def parsed(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


def rows(page: str, table_id: str) -> list[list[str]]:
    """A table's body rows as text, without its header row."""
    return parsed(page).tables[table_id][1:]


def summary(page: str) -> dict[str, str]:
    return dict(parsed(page).tables["summary"])


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    # Drawing the plots takes most of a second, so the tests share one page.
    output_folder = tmp_path_factory.mktemp("report") / "new" / "out"
    path = write_report(results=CLASS, problems=(PROBLEM, TWO_TEAMS), missing=MISSING, output_folder=output_folder)
    assert path == output_folder / "report.html"
    return path.read_text(encoding="utf-8")


def test_report_is_one_standalone_file_with_four_plots(page):
    structure = parsed(page)
    # Autograded points, totals of completely graded teams, task shares, tests most often wrong.
    assert page.count(PNG) == 4
    for source in structure.images:
        assert source.startswith(PNG)
        assert base64.b64decode(source.removeprefix(PNG)).startswith(b"\x89PNG\r\n\x1a\n")
    assert "script" not in structure.tags
    assert "link" not in structure.tags


def test_needs_attention_comes_first(page):
    assert parsed(page).headings[:4] == ["Needs attention", "Teams", "TA progress", "Summary"]


def test_needs_attention_lists_stopped_blank_and_import_problems_worst_first(page):
    issues = [(who, issue) for who, issue, _ in rows(page, "attention")]
    assert issues == [
        ("dora_emil", "kernel crashed"),
        ("gus", "timed out (partly graded)"),
        ("hugo", "blank or near-blank"),
        (TWO_TEAMS.origin, "student-in-two-teams"),
        (PROBLEM.origin, "ignored-file"),
        ("fritz", "no submission"),
        ("carla", "integrity findings"),
    ]
    details = {who: text for who, _, text in rows(page, "attention")}
    assert "the 24 autograded points earned before it stopped count" in details["gus"]
    assert details["hugo"].startswith("0 of 56 autograded points")
    assert details["carla"] == "1 finding: ipython-internals; see the integrity section"


def test_team_table_has_points_status_and_ta_progress(page):
    assert rows(page, "teams") == [
        ["anna_ben", "anna, ben", "43 of 56", "15 pending", "43 of 56 graded so far", "graded", "0 of 15"],
        ["carla", "carla", "51 of 56", "38.8 of 44", "89.8 of 100", "graded", "15 of 15"],
        ["dora_emil", "dora, emil", "–", "–", "–", "kernel crashed", "–"],
        ["gus", "gus", "24 of 56", "15 pending", "24 of 56 graded so far",
         "timed out: partly graded, the points earned before it stopped count", "0 of 15"],
        ["hugo", "hugo", "0 of 56", "15 pending", "0 of 56 graded so far", "graded", "0 of 15"],
        ["zoe", "zoe", "39 of 56", "7 of 10 (12 pending)", "46 of 66 graded so far", "graded", "3 of 15"],
    ]


def test_ta_progress_counts_graded_answers_per_question(page):
    progress = {question: graded for _, question, graded in rows(page, "ta-progress")}
    assert len(progress) == 15
    # carla is graded everywhere; zoe on three questions; anna_ben, gus and hugo nowhere yet.
    assert progress["squeeze_explain"] == progress["bmm_why_d"] == progress["net_labels"] == "2 of 5"
    assert progress["learning_rate_issues"] == progress["net_task_type"] == "1 of 5"
    assert [task for task, _, _ in rows(page, "ta-progress")][:3] == ["Task 1.1", "Task 1.2", "Task 1.2"]


def test_summary_counts_partial_teams_as_partial_and_means_graded_points_only(page):
    assert summary(page) == {
        "Teams": "6",
        "Students in these teams": "8",
        "Roster students without a submission": "1",
        "Autograded": "4",
        "Partly autograded (kernel crashed or timed out)": "2",
        "Not autograded (unreadable or missing notebook)": "0",
        "Waiting for TA grading": "4",
        # Autograded points 43, 51, 24, 0 and 39 out of 56: pending free text is not a zero.
        "Mean autograded points": "31.4 of 56",
        "Median autograded points": "39 of 56",
        "Mean total of completely graded teams": "89.8 of 100 (1 team)",
    }
    assert "Failed" not in page


def test_task_table_counts_graded_cells_only(page):
    tasks = {row[0]: row[1:] for row in rows(page, "tasks")}
    # Task 3.2 is free text: only carla (8 of 8) and zoe (net_labels, 0 of 2) are graded, not five zeros.
    assert tasks["Task 3.2"] == ["4", "5", "80%", "8", "15 free-text answers pending"]
    # Task 1.2: tests 3+0 (anna_ben), 3+0 (carla), 3+5 (gus), 0+0 (hugo), 3+0 (zoe) of 8 each; carla's free
    # text 0.3 + 4 of 8 and zoe's bmm_why_d 4 of 4: 25.3 points of 52 graded, for 5 teams.
    assert tasks["Task 1.2"] == ["5.06", "10.4", "49%", "16", "7 free-text answers pending"]
    # Task 3.1 is autograded: 12, 18, 0, 0 and 6 of 18.
    assert tasks["Task 3.1"] == ["7.2", "18", "40%", "18", ""]


def test_a_task_nobody_graded_says_so_instead_of_zero(tmp_path):
    page = write_report(results=[PAIR], problems=(), missing=(), output_folder=tmp_path).read_text(encoding="utf-8")
    tasks = {row[0]: row[1:] for row in rows(page, "tasks")}
    assert tasks["Task 3.2"] == ["–", "–", "not graded yet", "8", "4 free-text answers pending"]
    assert "no histogram of totals" in page
    assert page.count(PNG) == 3


def test_most_often_wrong_lists_failed_tests_worst_first(page):
    # Over the teams the grader did not stop: anna_ben, carla, hugo, zoe.
    wrong = rows(page, "wrong")
    assert wrong[:3] == [["bmm_d", "4 of 4", "100%"], ["net_model", "3 of 4", "75%"],
                         ["attention_softmax", "2 of 4", "50%"]]
    assert all("_test" not in name for name, _, _ in wrong)


def test_integrity_links_lead_to_the_teams_section(page):
    structure = parsed(page)
    anchors = [link.removeprefix("#") for link in structure.links if link.startswith("#")]
    assert anchors and all(anchor in structure.ids for anchor in anchors)
    integrity = page[page.index("<h2>Integrity</h2>"):]
    assert f'id="{anchors[0]}">carla</h3>' in integrity
    assert "ipython-internals" in integrity and "net_model" in integrity


def test_student_text_is_escaped(page):
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; the kernel died" in page   # reason
    assert "&lt;script&gt;alert(&#39;code&#39;)&lt;/script&gt;" in page      # finding's code
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page                      # problem's origin


def test_empty_class_gives_a_page_without_plots(tmp_path):
    page = write_report(results=[], problems=(), missing=(), output_folder=tmp_path).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert PNG not in page
    assert "no graded teams" in page
    assert "Nothing needs attention." in page
    assert summary(page)["Teams"] == "0"


def test_teams_without_grades_are_listed_without_plots(tmp_path):
    unreadable = team("ida", status="unreadable", reason="not a readable notebook (JSONDecodeError)")
    path = write_report(results=[CRASHED, unreadable], problems=(), missing=MISSING, output_folder=tmp_path)
    page = path.read_text(encoding="utf-8")
    assert PNG not in page
    assert "no graded teams" in page
    for text in ("dora_emil", "kernel crashed", "ida", "unreadable", "JSONDecodeError", "fritz"):
        assert text in page
    assert summary(page)["Not autograded (unreadable or missing notebook)"] == "1"


def test_full_marks_everywhere_leaves_out_the_wrong_answers_plot(tmp_path):
    perfect = team("hana", cells=cell_scores(scores={}, manual_pending=False))
    page = write_report(results=[perfect], problems=(), missing=(), output_folder=tmp_path).read_text(encoding="utf-8")
    assert page.count(PNG) == 3
    assert "Every autograded team got full marks on every autograded test." in page
    assert summary(page)["Mean total of completely graded teams"] == "100 of 100 (1 team)"
    assert "Nothing needs attention." in page


def test_only_eight_tests_are_shown(tmp_path):
    # Every test wrong for this team: 12 tests, of which the report shows the first 8 in notebook order.
    tests = [grade_id for grade_id in MAX_POINTS if grade_id.endswith("_test")]
    all_wrong = team("ida", cells=cell_scores(scores=dict.fromkeys(tests, 0), manual_pending=True))
    path = write_report(results=[all_wrong, SINGLE], problems=(), missing=(), output_folder=tmp_path)
    names = [name for name, _, _ in rows(path.read_text(encoding="utf-8"), "wrong")]
    # bmm_d is wrong for both teams, so it leads; the rest keep notebook order.
    assert names == ["bmm_d", "squeeze_target", "bmm_x_shape", "embedding_sizes", "param_count", "net_model",
                     "net_loss", "attention_qk"]


def test_unwritable_output_folder_is_a_user_error(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    with pytest.raises(CourseKitError, match="cannot write"):
        write_report(results=RESULTS, problems=(), missing=(), output_folder=blocker)


# nbgrader's own API warns about its lazy relationships when it creates a submission.
@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")
def test_answers_a_ta_scored_in_the_gradebook_count_as_graded(course, tmp_path):
    """From a real gradebook: a free-text answer stops waiting once a TA has given it a score."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        gradebook.add_student("zoe")
        gradebook.add_submission(ASSIGNMENT_ID, "zoe")
        # What the formgrader's grade handler stores when a TA types a score.
        grade = gradebook.find_grade("squeeze_explain", NOTEBOOK_NAME, ASSIGNMENT_ID, "zoe")
        grade.manual_score, grade.needs_manual_grade = 3.0, False
        # A blank answer nbgrader scored 0 itself is decided, as in the formgrader and the feedback
        # (coursekit.course.waits_for_ta, the one definition).
        blank = gradebook.find_grade("bmm_why_d", NOTEBOOK_NAME, ASSIGNMENT_ID, "zoe")
        blank.auto_score, blank.needs_manual_grade = 0.0, False
        gradebook.db.commit()
    cells = read_scores(course_root=course, student_ids=["zoe"])["zoe"].cells
    result = TeamResult(team_id="zoe", members=("zoe",), status="graded", reason="", origin="zoe_ml_ex2.ipynb",
                        cells=cells, findings=())
    page = write_report(results=[result], problems=(), missing=(), output_folder=tmp_path).read_text(encoding="utf-8")
    progress = {question: graded for _, question, graded in rows(page, "ta-progress")}
    assert progress["squeeze_explain"] == "1 of 1"
    assert progress["bmm_why_d"] == "1 of 1"
    assert progress["learning_rate_issues"] == "0 of 1"
    # Nothing was autograded here, so the tests add 0 of 56 to the total.
    assert rows(page, "teams")[0][3:7] == ["3 of 8 (13 pending)", "3 of 64 graded so far", "graded", "2 of 15"]
