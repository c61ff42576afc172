"""The feedback exporter renders what nbgrader's HTMLExporter renders, compiling its templates once."""
import os

import nbformat
from nbconvert.exporters import HTMLExporter
from nbgrader.converters import GenerateFeedback

from coursekit.reports import feedback_exporter

RESOURCES = {"nbgrader": {"notebook": "ml_ex2", "score": 3, "max_score": 6, "late_penalty": 0}}


def feedback_config():
    # GenerateFeedback sets the template configuration feedback pages use.
    return GenerateFeedback(config=None).config


NOTEBOOK = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Task <b>1</b>"),
                                           nbformat.v4.new_code_cell("x = 1")])


def render(exporter_class, config):
    notebook = nbformat.from_dict(NOTEBOOK)
    return exporter_class(config=config).from_notebook_node(notebook, resources=dict(RESOURCES))[0]


def test_the_page_is_the_one_nbconvert_renders_and_templates_are_compiled_once(tmp_path):
    config = feedback_config()
    feedback_exporter.remove_shared_cache()
    feedback_exporter.share_with_forks()
    folder = feedback_exporter.template_cache().directory
    try:
        expected = render(HTMLExporter, config)
        assert render(feedback_exporter.FeedbackHTMLExporter, config) == expected
        compiled = {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in os.listdir(folder)}
        assert len(compiled) >= 5  # the feedback template and the nbconvert templates it extends
        assert render(feedback_exporter.FeedbackHTMLExporter, config) == expected
        assert {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in os.listdir(folder)} == compiled
    finally:
        feedback_exporter.remove_shared_cache()
    assert not os.path.exists(folder)
