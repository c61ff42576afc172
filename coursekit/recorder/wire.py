"""The wire format between the grader and a student's kernel: data, never code.

Answers leave the kernel as one display output of type ANSWER_MIME per test
cell: JSON for numbers, strings, shapes and flags, and the tensors in one
safetensors blob. Repairs after a wrong answer travel the other way in the same
format. Both are plain data, so loading them cannot run code; the grader checks
every field against the limits below before it uses any (coursekit.protocol).

Imports numpy and safetensors only: the grading process reads records without torch.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy

ANSWER_MIME = "application/vnd.coursekit.answer+json"
# The grader puts a fresh challenge into the kernel under this name right
# before each test cell; behaviour checks draw their inputs from it.
CHALLENGE_NAME = "__coursekit_challenge__"
# Used when no grader set a challenge (running the master notebook by hand).
DEFAULT_CHALLENGE = 20241108
FORMAT_VERSION = 1

# Hard limits on one record. A correct record is ~1.6 MB (Task 1.2's `d` and `y`).
MAX_RECORD_CHARS = 4 * 1024 * 1024
MAX_TENSOR_ELEMENTS = 1 << 20
MAX_TENSORS = 64
MAX_DIMENSIONS = 8
MAX_STRING = 2000
MAX_ITEMS = 32
MAX_DEPTH = 4
MAX_NAMES = 64
# dtype name in torch -> how its values travel (bfloat16 and float16 travel as float32).
TRAVEL_DTYPES = {
    "torch.float32": "float32", "torch.float64": "float64", "torch.float16": "float32",
    "torch.bfloat16": "float32", "torch.int64": "int64", "torch.int32": "int32", "torch.int16": "int16",
    "torch.int8": "int8", "torch.uint8": "uint8", "torch.bool": "bool",
    # Sent as int64 (the recorder converts them): safetensors and the judge need no more integer types.
    "torch.uint16": "int64", "torch.uint32": "int64", "torch.uint64": "int64",
}


class MalformedRecord(ValueError):
    """The data breaks the format; the part it was for scores 0."""


def pack(values: dict[str, Any], tensors: dict[str, numpy.ndarray]) -> dict:
    """JSON-ready `values` that refer to `tensors` by key, as one payload."""
    from safetensors.numpy import save

    blob = save({key: numpy.asarray(array, order="C") for key, array in tensors.items()}) if tensors else b""
    return {"format": FORMAT_VERSION, "values": values, "tensors": base64.b64encode(blob).decode("ascii")}


def encode(grade_id: str, descriptions: dict[str, Any], tensors: dict[str, numpy.ndarray]) -> dict:
    """The payload of one answer record."""
    return {**pack(descriptions, tensors), "grade_id": grade_id}


def unpack_tensors(blob: Any) -> dict[str, numpy.ndarray]:
    """The tensors of a payload, checked against the limits before and after loading."""
    if not isinstance(blob, str):
        raise MalformedRecord("the answer record is incomplete")
    if len(blob) > MAX_RECORD_CHARS:
        raise MalformedRecord("the answer record is too large")
    if not blob:
        return {}
    from safetensors.numpy import load

    try:
        tensors = load(base64.b64decode(blob, validate=True))
    except (binascii.Error, ValueError, Exception) as error:  # safetensors raises its own error types
        raise MalformedRecord(f"the tensors of the answer record cannot be read ({type(error).__name__})") from None
    if len(tensors) > MAX_TENSORS:
        raise MalformedRecord("the answer record holds too many tensors")
    if any(array.size > MAX_TENSOR_ELEMENTS for array in tensors.values()):
        raise MalformedRecord("a tensor in the answer record is too large")
    return tensors
