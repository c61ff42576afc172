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
