"""What the judge reads of a kernel's answer record: plain values, every field checked.

The kernel runs the student's code and the given code only. A hidden test cell
asks it to record the values the checks need (coursekit.recorder.collect); they
leave the kernel in the wire format (coursekit.recorder.wire): JSON plus one
safetensors blob, formats that cannot run code when loaded. Here every field is
checked against hard limits before it is used, and turned into the frozen
values below. The judge (coursekit.exercise.checks) then decides the points in
the grading process, which never runs student code.

Whatever a student's code does, it can only change the data it sends, and the
judge compares that data with references it computes itself from the given
values and from a challenge the kernel learns only when the test cell starts.

This module imports no torch: the grader's side needs only numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy

from coursekit.recorder.wire import (
    FORMAT_VERSION, MAX_DEPTH, MAX_DIMENSIONS, MAX_ITEMS, MAX_NAMES, MAX_STRING, MAX_TENSOR_ELEMENTS, TRAVEL_DTYPES,
    MalformedRecord, unpack_tensors,
)


# ---------------------------------------------------------------- what the judge sees


@dataclass(frozen=True)
class Missing:
    """The name was not defined in the student's notebook."""


@dataclass(frozen=True)
class Failed:
    """Calling the student's code raised; `message` says what."""

    message: str


@dataclass(frozen=True)
class Other:
    """A value of a type the checks do not accept; only its type name travels."""

    type_name: str


@dataclass(frozen=True)
class Number:
    """A number: Python's int, float or bool, or a NumPy scalar (`numpy` set)."""

    value: int | float | bool
    type_name: str
    numpy: bool = False


@dataclass(frozen=True)
class Text:
    value: str


@dataclass(frozen=True)
class Sequence:
    type_name: str  # tuple, list or Size
    items: tuple


@dataclass(frozen=True)
class TensorAnswer:
    """A torch tensor as the kernel described it; `values` is None when it was too large to send."""

    values: numpy.ndarray | None
    dtype: str
    shape: tuple[int, ...]
    requires_grad: bool
    is_parameter: bool


@dataclass(frozen=True)
class AnswerRecord:
    grade_id: str
    values: dict[str, Any]

    def get(self, name: str) -> Any:
        return self.values.get(name, Missing())


# ---------------------------------------------------------------- grader side: decoding


def decode(payload: Any) -> AnswerRecord:
    """Check every field of a payload against the limits and turn it into plain values."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise MalformedRecord("the answer record has an unknown format")
    grade_id, values, blob = payload.get("grade_id"), payload.get("values"), payload.get("tensors", "")
    if not isinstance(grade_id, str) or not isinstance(values, dict) or not isinstance(blob, str):
        raise MalformedRecord("the answer record is incomplete")
    if len(values) > MAX_NAMES:
        raise MalformedRecord("the answer record names too many values")
    tensors = unpack_tensors(blob)
    decoded = {}
    for name, description in values.items():
        if not isinstance(name, str) or len(name) > 200:
            raise MalformedRecord("the answer record has a malformed name")
        decoded[name] = _decode_value(description, tensors, depth=0)
    return AnswerRecord(grade_id=grade_id, values=decoded)


def _decode_value(description: Any, tensors: dict[str, numpy.ndarray], *, depth: int) -> Any:
    if depth > MAX_DEPTH or not isinstance(description, dict):
        raise MalformedRecord("a value of the answer record is malformed")
    kind = description.get("kind")
    if kind == "missing":
        return Missing()
    if kind == "failed":
        return Failed(_bounded_text(description.get("message")))
    if kind == "other":
        return Other(_bounded_text(description.get("type")))
    if kind == "text":
        return Text(_bounded_text(description.get("value")))
    if kind == "number":
        return _decode_number(description)
    if kind == "sequence":
        items = description.get("items")
        if not isinstance(items, list) or len(items) > MAX_ITEMS:
            raise MalformedRecord("a sequence in the answer record is malformed")
        return Sequence(_bounded_text(description.get("type")),
                        tuple(_decode_value(item, tensors, depth=depth + 1) for item in items))
    if kind == "tensor":
        return _decode_tensor(description, tensors)
    raise MalformedRecord("a value of the answer record has an unknown kind")


def _decode_number(description: dict) -> Number:
    type_name = _bounded_text(description.get("type"))
    raw = description.get("value")
    numpy_scalar = description.get("numpy") is True
    if type(raw) is bool:
        return Number(raw, type_name, numpy_scalar)
    if type(raw) is int and abs(raw) < 1 << 62:
        return Number(raw, type_name, numpy_scalar)
    if type(raw) is str and len(raw) < 64:
        try:
            value = float(raw)
        except ValueError:
            raise MalformedRecord("a number in the answer record is malformed") from None
        return Number(value, type_name, numpy_scalar)
    raise MalformedRecord("a number in the answer record is malformed")


def _decode_tensor(description: dict, tensors: dict[str, numpy.ndarray]) -> TensorAnswer:
    dtype, shape = description.get("dtype"), description.get("shape")
    if dtype not in TRAVEL_DTYPES and not (isinstance(dtype, str) and len(dtype) < 40):
        raise MalformedRecord("a tensor in the answer record has a malformed dtype")
    if (not isinstance(shape, list) or len(shape) > MAX_DIMENSIONS
            or not all(type(size) is int and 0 <= size < 1 << 40 for size in shape)):
        raise MalformedRecord("a tensor in the answer record has a malformed shape")
    flags = [description.get(flag) for flag in ("requires_grad", "is_parameter")]
    if not all(type(flag) is bool for flag in flags):
        raise MalformedRecord("a tensor in the answer record has malformed flags")
    values = None
    key = description.get("key")
    if key is not None:
        array = tensors.get(key) if isinstance(key, str) else None
        travel = TRAVEL_DTYPES.get(dtype)
        if array is None or travel is None or str(array.dtype) != travel or list(array.shape) != shape:
            raise MalformedRecord("a tensor in the answer record does not match its description")
        if array.size > MAX_TENSOR_ELEMENTS:
            raise MalformedRecord("a tensor in the answer record is too large")
        values = array
    return TensorAnswer(values, dtype, tuple(shape), *flags)


def _bounded_text(value: Any) -> str:
    if not isinstance(value, str):
        raise MalformedRecord("a text in the answer record is malformed")
    return value[:MAX_STRING]
