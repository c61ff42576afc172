import base64
import re
from html.parser import HTMLParser

import pytest

from coursekit.errors import CourseKitError
from coursekit.importing import ImportProblem
from coursekit.reporting import write_report
from test_exporting import CRASHED, MAX_POINTS, RESULTS, SINGLE, cell_scores, team

PNG = "data:image/png;base64,"
PROBLEM = ImportProblem(origin="download.zip/<img src=x onerror=alert(1)>.txt", kind="ignored-file",
                        message="not a notebook, not imported; nothing to do")
MISSING = ("fritz",)


class PageParser(HTMLParser):
    """Collects what a test needs to know about the page's structure."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attributes):
        attributes = dict(attributes)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attributes["src"])
        if "id" in attributes:
            self.ids.add(attributes["id"])
        if tag == "a":
            self.links.append(attributes["href"])


def parsed(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


def cell(page: str, label: str) -> str:
    """The value next to a label in the summary table."""
    match = re.search(rf"<th>{re.escape(label)}</th><td[^>]*>([^<]*)</td>", page)
    assert match, label
    return match.group(1)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    # Drawing the plots takes most of a second, so the tests share one page.
    output_folder = tmp_path_factory.mktemp("report") / "new" / "out"
    path = write_report(results=RESULTS, problems=(PROBLEM,), missing=MISSING, output_folder=output_folder)
    assert path == output_folder / "report.html"
    return path.read_text(encoding="utf-8")


def test_report_is_one_standalone_file_with_three_plots(page):
    structure = parsed(page)
    assert page.count(PNG) == 3
    for source in structure.images:
        assert source.startswith(PNG)
        assert base64.b64decode(source.removeprefix(PNG)).startswith(b"\x89PNG\r\n\x1a\n")
    assert "script" not in structure.tags
    assert "link" not in structure.tags


def test_summary_counts_teams_students_and_totals(page):
    assert cell(page, "Teams") == "4"
    assert cell(page, "Students in these teams") == "6"
    assert cell(page, "Roster students without a submission") == "1"
    assert (cell(page, "Graded"), cell(page, "Failed (not graded)"), cell(page, "Needing manual grading")) == (
        "3", "1", "2")
    # Graded totals 43, 89.8 and 39.
    assert cell(page, "Mean total of graded teams") == "57.27 of 100"
    assert cell(page, "Median total of graded teams") == "43 of 100"


def test_task_table_has_mean_points_and_share(page):
    # Task 1.2 is worth 16 points; the graded teams have 3, 7.3 and 3.
    assert re.search(r"<td>Task 1\.2</td><td[^>]*>4\.43</td><td[^>]*>16</td><td[^>]*>28%</td>", page)
    # Task 3.2 is free text, pending for two of the three teams: (0 + 8 + 0) / 3 of 8.
    assert re.search(r"<td>Task 3\.2</td><td[^>]*>2\.67</td><td[^>]*>8</td><td[^>]*>33%</td>", page)


def test_most_often_wrong_lists_failed_tests_worst_first(page):
    section = page[page.index("Answers most often wrong"):page.index("Needs attention")]
    names = re.findall(r"<tr><td>(\w+)</td><td[^>]*>(\d+ of \d+)</td>", section)
    assert names == [("bmm_d", "3 of 3"), ("net_model", "2 of 3"), ("attention_softmax", "1 of 3")]
    assert "_test" not in section


def test_needs_attention_lists_teams_problems_and_missing_students(page):
    section = page[page.index("<h2>Needs attention</h2>"):page.index("<h2>Integrity</h2>")]
    assert "dora_emil" in section and "kernel crashed" in section
    assert "carla" in section and "1 finding: ipython-internals" in section
    assert PROBLEM.message in section and "ignored-file" in section
    assert "fritz" in section and "no submission" in section
    assert "anna_ben" not in section  # graded, no findings


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
    assert "&lt;script&gt;alert(&#39;code&#39;)&lt;/script&gt;" in page    # finding's code
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page                      # problem's origin


def test_empty_class_gives_a_page_without_plots(tmp_path):
    page = write_report(results=[], problems=(), missing=(), output_folder=tmp_path).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert PNG not in page
    assert "no graded teams" in page
    assert "Nothing needs attention." in page
    assert cell(page, "Teams") == "0"


def test_all_teams_failed_lists_them_without_plots(tmp_path):
    timed_out = team("gus", status="timed out", reason="ran longer than 10 minutes")
    path = write_report(results=[CRASHED, timed_out], problems=(), missing=MISSING, output_folder=tmp_path)
    page = path.read_text(encoding="utf-8")
    assert PNG not in page
    assert "no graded teams" in page
    for text in ("dora_emil", "kernel crashed", "gus", "timed out", "ran longer than 10 minutes", "fritz"):
        assert text in page
    assert cell(page, "Failed (not graded)") == "2"


def test_full_marks_everywhere_leaves_out_the_wrong_answers_plot(tmp_path):
    perfect = team("hana", cells=cell_scores(scores={}, manual_pending=False))
    page = write_report(results=[perfect], problems=(), missing=(), output_folder=tmp_path).read_text(encoding="utf-8")
    assert page.count(PNG) == 2
    assert "Every graded team got full marks on every autograded test." in page
    assert cell(page, "Mean total of graded teams") == "100 of 100"


def test_only_eight_tests_are_shown(tmp_path):
    # Every test wrong for this team: 12 tests, of which the report shows the first 8 in notebook order.
    tests = [grade_id for grade_id in MAX_POINTS if grade_id.endswith("_test")]
    all_wrong = team("ida", cells=cell_scores(scores=dict.fromkeys(tests, 0), manual_pending=True))
    path = write_report(results=[all_wrong, SINGLE], problems=(), missing=(), output_folder=tmp_path)
    page = path.read_text(encoding="utf-8")
    section = page[page.index("Answers most often wrong"):page.index("Needs attention")]
    names = re.findall(r"<tr><td>(\w+)</td><td[^>]*>\d+ of \d+</td>", section)
    # bmm_d is wrong for both teams, so it leads; the rest keep notebook order.
    assert names == ["bmm_d", "squeeze_target", "bmm_x_shape", "embedding_sizes", "param_count", "net_model",
                     "net_loss", "attention_qk"]


def test_unwritable_output_folder_is_a_user_error(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    with pytest.raises(CourseKitError, match="cannot write"):
        write_report(results=RESULTS, problems=(), missing=(), output_folder=blocker)
