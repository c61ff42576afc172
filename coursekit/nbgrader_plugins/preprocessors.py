"""nbgrader preprocessors that harden grading; enabled in nbgrader_config.py.

They live here, not in the kit's CLI, so that plain `nbgrader autograde` and the
formgrader's buttons run them too. Each does one thing.
"""
from __future__ import annotations

import functools
import re
import traceback

import jsonschema
from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode

from nbgrader import utils
from nbgrader.nbgraderformat import SchemaTooNewError, SchemaTooOldError, ValidationError
from nbgrader.nbgraderformat.common import BaseMetadataValidator
from nbgrader.nbgraderformat.v3 import MetadataValidatorV3
from nbgrader.preprocessors import CheckCellMetadata, NbGraderPreprocessor

from coursekit.reports.html_safety import clean_html, clean_markdown, clean_svg


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


# Output data a browser shows without running anything, and what each needs first.
# Anything else is dropped: application/javascript, text/javascript, widget views,
# Bokeh, Plotly and other application/vnd.* payloads, and types this list does not know.
RASTER_IMAGE_TYPES = frozenset({"image/png", "image/jpeg"})
BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*\Z")
PASSED_THROUGH_TYPES = frozenset({"text/plain", "text/latex", "application/json"})  # always escaped when shown
SANITIZED_TYPES = {"text/html": clean_html, "image/svg+xml": clean_svg, "text/markdown": clean_markdown}
UNSHOWABLE_ANSWER = "*(coursekit: this answer could not be made safe to show; read it in the submitted notebook.)*"
DISPLAY_OUTPUTS = frozenset({"display_data", "execute_result"})
# HTML, SVG and markdown outputs are sanitized, rendered and parsed again by every page that shows them:
# a notebook's outputs may bring at most this much of them; beyond it they show as their plain text.
RICH_OUTPUT_BUDGET = 500_000
RICH_OUTPUT_DROPPED = "[coursekit: an HTML, SVG or markdown output past the notebook's {:,} characters of them is not shown]"
TEXT_OUTPUTS = frozenset({"stream", "error"})  # always escaped when shown


class SanitizeStudentContent(NbGraderPreprocessor):
    """Make everything a student controls safe to show in a browser.

    The formgrader shows the autograded notebook to TAs on the Jupyter server's
    origin, with their session; feedback pages go to students. Student markdown
    (answer and added cells) and every output a student's code produced are
    sanitized, so no page built from the notebook runs what a student wrote.
    Locked cells are the instructor's and stay as they are.
    """

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        # Widget state makes nbconvert's pages load the widget manager's scripts.
        nb.metadata.pop("widgets", None)
        self.rich_output_left = [RICH_OUTPUT_BUDGET]
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, index: int):
        if cell.cell_type == "code":
            budget = getattr(self, "rich_output_left", [RICH_OUTPUT_BUDGET])
            cell.outputs = [safe for output in cell.get("outputs", [])
                            if (safe := safe_output(output, rich_budget=budget)) is not None]
        elif not is_locked(cell):
            if cell.cell_type == "markdown":
                try:
                    cell.source = clean_markdown(cell.source)
                except Exception:  # noqa: BLE001 - never stop grading; show nothing rather than something unsafe
                    cell.source = UNSHOWABLE_ANSWER
                if "attachments" in cell:
                    cell.attachments = {name: images for name, bundle in cell.attachments.items()
                                        if (images := safe_images(bundle))}
            elif cell.cell_type == "raw":
                cell.source = clean_html(cell.source)
        return cell, resources


def is_locked(cell: NotebookNode) -> bool:
    nbgrader = cell.get("metadata", {}).get("nbgrader")
    return isinstance(nbgrader, dict) and nbgrader.get("locked") is True


def safe_output(output: NotebookNode, *, rich_budget: list[int] | None = None) -> NotebookNode | None:
    """The output with only safe, sanitized data, or None when nothing of it is safe to show.

    `rich_budget`: what is left of the notebook's RICH_OUTPUT_BUDGET (a one-item list, spent here).
    """
    output_type = output.get("output_type")
    if output_type in TEXT_OUTPUTS:
        return output
    if output_type not in DISPLAY_OUTPUTS:
        return None
    data = {}
    for mime_type, value in output.get("data", {}).items():
        text = "".join(value) if isinstance(value, list) else value
        if not isinstance(text, str):
            continue  # application/json may be a dict; nothing shows it, so it goes too
        if mime_type in PASSED_THROUGH_TYPES:
            data[mime_type] = text
        elif mime_type in SANITIZED_TYPES:
            if rich_budget is not None:
                if len(text) > rich_budget[0]:
                    rich_budget[0] = 0
                    data.setdefault("text/plain", RICH_OUTPUT_DROPPED.format(RICH_OUTPUT_BUDGET))
                    continue
                rich_budget[0] -= len(text)
            try:
                data[mime_type] = SANITIZED_TYPES[mime_type](text)
            except Exception:  # noqa: BLE001 - what cannot be sanitized is not shown; grading goes on
                continue
        elif mime_type in RASTER_IMAGE_TYPES and BASE64.match(text):
            data[mime_type] = text
    if not data:
        return None
    output.data = data
    # nbconvert writes an image's width and height unquoted into the <img> tag,
    # so only numbers may stay; other keys (e.g. "isolated") change how output is embedded.
    output.metadata = {mime_type: sizes for mime_type in RASTER_IMAGE_TYPES & set(data)
                       if (sizes := numeric_sizes(output.get("metadata", {}).get(mime_type)))}
    return output


def numeric_sizes(metadata) -> dict:
    if not isinstance(metadata, dict):
        return {}
    return {key: metadata[key] for key in ("width", "height")
            if isinstance(metadata.get(key), (int, float)) and not isinstance(metadata.get(key), bool)}


def safe_images(data) -> dict:
    """A markdown attachment's data, raster images only."""
    if not isinstance(data, dict):
        return {}
    return {mime_type: value for mime_type, value in data.items()
            if mime_type in RASTER_IMAGE_TYPES and isinstance(value, str) and BASE64.match(value)}


class _PrecompiledSchemaValidator(BaseMetadataValidator):
    """BaseMetadataValidator.validate_cell with the JSON schema checked and compiled once.

    jsonschema.validate(instance, schema) checks the schema against its
    metaschema and builds a new validator at every call; nbgrader calls it for
    every cell of every notebook, twice per autograde. Same checks, same errors
    (the best match of the schema's errors), same order.
    """

    def validate_cell(self, cell: NotebookNode) -> None:
        if "nbgrader" not in cell.metadata:
            return
        schema = cell.metadata["nbgrader"].get("schema_version", 0)
        if schema < self.schema_version:
            raise SchemaTooOldError(f"Outdated schema version: {schema} (expected {self.schema_version})",
                                    schema, self.schema_version)
        if schema > self.schema_version:
            raise SchemaTooNewError(f"Schema version is too new: {schema} (expected {self.schema_version})",
                                    schema, self.schema_version)
        error = jsonschema.exceptions.best_match(self._compiled_schema.iter_errors(cell.metadata["nbgrader"]))
        if error is not None:
            raise error


class _MetadataValidatorCompiledOnce(MetadataValidatorV3, _PrecompiledSchemaValidator):
    """nbgrader's current metadata validator (v3); its schema check goes through the compiled schema above."""

    def __init__(self) -> None:
        super().__init__()
        validator_class = jsonschema.validators.validator_for(self.schema)
        validator_class.check_schema(self.schema)
        self._compiled_schema = validator_class(self.schema)


@functools.cache
def _metadata_validator() -> _MetadataValidatorCompiledOnce:
    return _MetadataValidatorCompiledOnce()


class CheckCellMetadataCompiledOnce(CheckCellMetadata):
    """nbgrader's CheckCellMetadata, validating against a schema compiled once per process.

    Stock CheckCellMetadata builds a MetadataValidator (reading three schema
    files) per notebook and has jsonschema check and compile the schema per
    cell: ~0.1 CPU-s per notebook for this one's 75 cells. Upstream: nbgrader's
    BaseMetadataValidator.validate_cell calls `jsonschema.validate` per cell
    (nbgrader/nbgraderformat/common.py; see jupyter/nbgrader#611, which added
    the schema). Same checks, same errors and log lines.
    """

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        try:
            _metadata_validator().validate_nb(nb)
        except ValidationError:
            self.log.error(traceback.format_exc())
            msg = "Notebook failed to validate; the nbgrader metadata may be corrupted."
            self.log.error(msg)
            raise ValidationError(msg)
        return nb, resources
