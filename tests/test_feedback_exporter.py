"""Feedback pages from FeedbackHTMLExporter are byte for byte nbconvert's HTMLExporter's.

One small class (full marks, partly right with tracebacks, blank) is autograded
once with real nbgrader and the course's configuration; its feedback is then
generated with nbconvert's exporter and with the kit's, and compared.
"""
import shutil

from coursekit import demo
from coursekit.engine import grading
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME

from conftest import REPOSITORY

SAMPLES = ("all_correct", "partly_right", "blank")


def feedback_pages(course):
    return {path.relative_to(course / "feedback"): path.read_bytes()
            for path in sorted((course / "feedback").glob(f"*/{ASSIGNMENT_ID}/{NOTEBOOK_NAME}.html"))}


def test_kit_exporter_writes_the_same_pages_as_nbconvert(course):
    samples = demo.sample_notebooks(REPOSITORY)
    for name in SAMPLES:
        path = grading.submission_path(course, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(samples[name])
    assert grading.autograde(course_root=course).returncode == 0

    stock = grading.run_nbgrader(course, "generate_feedback", ASSIGNMENT_ID, "--force",
                                 "--GenerateFeedback.exporter_class=nbconvert.exporters.HTMLExporter")
    assert stock.returncode == 0, stock.stderr
    expected = feedback_pages(course)
    shutil.rmtree(course / "feedback")
    kit = grading.run_nbgrader(course, "generate_feedback", ASSIGNMENT_ID, "--force")  # nbgrader_config.py's
    assert kit.returncode == 0, kit.stderr
    assert len(expected) == len(SAMPLES)
    assert feedback_pages(course) == expected
    assert any(b"Traceback" in page or b"Error" in page for page in expected.values())


def test_code_too_long_to_highlight_is_shown_as_escaped_text():
    """Highlighting costs about a millisecond per token: a cell of megabytes is shown as plain text."""
    import nbformat

    from coursekit.reports.feedback_exporter import HIGHLIGHT_LIMIT, FeedbackHTMLExporter

    long_code = "x = (" + "1 + " * (HIGHLIGHT_LIMIT // 2) + "1)  # <script>alert(1)</script>"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(long_code),
                                               nbformat.v4.new_code_cell("y = 2")])
    page, _ = FeedbackHTMLExporter().from_notebook_node(notebook)
    assert "1 + 1 + 1" in page and "&lt;script&gt;alert(1)" in page and "<script>alert(1)" not in page
    assert '<span class="n">y</span>' in page  # short cells are still highlighted
