"""nbgrader preprocessors that harden grading; enabled in nbgrader_config.py.

They live here, not in the kit's CLI, so that plain `nbgrader autograde` and the
formgrader's buttons run them too. Each does one thing.
"""
from __future__ import annotations

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode

from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor


class MoveTestStderrToStdout(NbGraderPreprocessor):
    """Keep library noise on stderr (warnings, deprecation notices) from zeroing a test cell.

    nbgrader gives zero points to a test cell with any stderr output. A failed
    test always shows as an error output, so stderr text carries no verdict:
    it is kept, on stdout, so graders still see it.
    """

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, index: int):
        if utils.is_grade(cell) and cell.cell_type == "code":
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream" and output.get("name") == "stderr":
                    output["name"] = "stdout"
        return cell, resources
