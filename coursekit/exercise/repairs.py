"""Error carried forward: the right values of a wrong answer, computed by the grader, sent as data.

Later cells build on earlier answers (the scores on Q and K, the loss on Net).
When the judge withholds points for such a cell, the grader sends these values
into the kernel right after its test cell (coursekit.recorder.receive unpacks
them), so the cells after it are graded on their own merit, not failed a
second time. They are computed here, in the grading process, from the run's
given values; the kernel never holds the code that computes them.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from coursekit.exercise.given import GivenValues
from coursekit.exercise.references import tensor_of
from coursekit.recorder.wire import pack

# The model of Task 3.1 as layers (coursekit.recorder.receive builds an nn.Module class from them).
NET_LAYERS = [["Embedding", 8, 6], ["Linear", 6, 10], ["ReLU"], ["Linear", 10, 4]]


def projections(given: GivenValues) -> dict[str, torch.Tensor]:
    """Q and K as the kernel computes them: float32, from the given matrices (which track gradients)."""
    words = tensor_of(given.x_words)
    return {"Q": words @ tensor_of(given.Wq), "K": words @ tensor_of(given.Wk)}


def scores(given: GivenValues) -> dict[str, torch.Tensor]:
    values = projections(given)
    values["scores"] = values["Q"] @ values["K"].T
    values["scores_scaled"] = values["scores"] / math.sqrt(values["K"].shape[1])
    return values


def variances(given: GivenValues) -> dict[str, torch.Tensor]:
    values = scores(given)
    return {"var_scores": torch.var(values["scores"]), "var_scores_scaled": torch.var(values["scores_scaled"])}


def net_class(given: GivenValues) -> dict:
    return {"Net": {"kind": "module-class", "name": "Net", "layers": NET_LAYERS}}


def as_payload(values: dict) -> dict:
    descriptions, tensors = {}, {}
    for name, value in values.items():
        if isinstance(value, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = value.detach().contiguous().numpy()
            descriptions[name] = {"kind": "tensor", "key": key, "requires_grad": True}
        elif isinstance(value, dict):
            descriptions[name] = value
        else:
            descriptions[name] = {"kind": "number", "value": value}
    return pack(descriptions, tensors)


def with_d_k(make: Callable[[GivenValues], dict]) -> Callable[[GivenValues], dict]:
    return lambda given: {**make(given), "d_k": 2}


REPAIRS: dict[str, Callable[[GivenValues], dict]] = {
    "net_model": net_class,
    "attention_qk": projections,
    "attention_scores": with_d_k(scores),
    "attention_variance": variances,
}


def repair_code(answer_id: str, given: GivenValues) -> str | None:
    """The code the grader runs silently in the kernel after `answer_id` lost points, or None."""
    if answer_id not in REPAIRS:
        return None
    payload = as_payload(REPAIRS[answer_id](given))
    # A literal of plain strings, numbers, lists and dicts: the kernel's receive() only unpacks it.
    return f"__import__('coursekit.recorder.receive', fromlist=['receive']).receive({payload!r}, globals())"
