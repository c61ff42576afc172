"""CheckCellMetadataCompiledOnce accepts and rejects exactly what nbgrader's CheckCellMetadata does."""
import copy
from pathlib import Path

import nbformat
import pytest
from nbgrader.nbgraderformat import MetadataValidator, ValidationError
from nbgrader.preprocessors import CheckCellMetadata

from coursekit.nbgrader_plugins.preprocessors import CheckCellMetadataCompiledOnce, _metadata_validator

RELEASE = Path(__file__).resolve().parent.parent / "release" / "ex2" / "ml_ex2.ipynb"


def graded_cells(nb):
    return [cell for cell in nb.cells if "nbgrader" in cell.metadata]


def corrupt(change):
    nb = nbformat.read(RELEASE, as_version=4)
    change(nb)
    return nb


def set_meta(index, key, value):
    return lambda nb: graded_cells(nb)[index].metadata.nbgrader.__setitem__(key, value)


def drop_meta(index, key):
    return lambda nb: graded_cells(nb)[index].metadata.nbgrader.pop(key)


def duplicate_id(nb):
    cells = graded_cells(nb)
    cells[2].metadata.nbgrader["grade_id"] = cells[1].metadata.nbgrader["grade_id"]


VARIANTS = {
    "valid": lambda nb: None,
    "points not a number": set_meta(3, "points", "x"),
    "grade not a bool": set_meta(1, "grade", "yes"),
    "schema too old": set_meta(0, "schema_version", 1),
    "schema too new": set_meta(0, "schema_version", 9),
    "no grade_id": drop_meta(2, "grade_id"),
    "empty grade_id": set_meta(2, "grade_id", ""),
    "duplicate grade_id": duplicate_id,
    "unknown key": set_meta(4, "surprise", 1),
    "markdown grade not solution": set_meta(5, "solution", False),
}


def outcome(validate, nb):
    try:
        validate(copy.deepcopy(nb))
    except Exception as error:  # noqa: BLE001 - the type and message are what is compared
        return type(error).__name__, str(error)
    return "ok", ""


@pytest.mark.parametrize("name", VARIANTS)
def test_same_verdict_and_message_as_nbgrader(name):
    nb = corrupt(VARIANTS[name])
    stock = outcome(MetadataValidator().validate_nb, nb)
    compiled = outcome(_metadata_validator().validate_nb, nb)
    assert compiled == stock
    if name == "valid":
        assert stock == ("ok", "")


def test_preprocessor_passes_valid_and_stops_corrupted_like_nbgrader():
    valid = corrupt(VARIANTS["valid"])
    assert CheckCellMetadataCompiledOnce().preprocess(valid, {})[0] is valid
    broken = corrupt(VARIANTS["points not a number"])
    for preprocessor in (CheckCellMetadata(), CheckCellMetadataCompiledOnce()):
        with pytest.raises(ValidationError, match="the nbgrader metadata may be corrupted"):
            preprocessor.preprocess(copy.deepcopy(broken), {})
