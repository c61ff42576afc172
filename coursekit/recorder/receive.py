"""Error carried forward, as data: the grader sets the names of a wrong answer right in the kernel.

Later cells build on earlier answers (scores on Q and K, the loss on Net). When
the judge withholds points for such a cell, the grader computes the right
values itself and sends them into the kernel right after the test cell, in the
wire format (coursekit.recorder.wire): tensors and numbers, and for a model the
list of its layers. This module only unpacks them; it knows no right answer. A
repair only helps: student code that interferes with it hurts nobody else.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from .wire import FORMAT_VERSION, MalformedRecord, unpack_tensors

# The layers a repaired model may be built of, with the number of integer arguments each takes.
LAYERS = {"Embedding": (nn.Embedding, 2), "Linear": (nn.Linear, 2), "ReLU": (nn.ReLU, 0)}


def layered_module_class(name: str, layers: list) -> type:
    """An nn.Module class whose instances apply `layers` (e.g. [["Linear", 6, 10], ["ReLU"]]) in order."""
    built = []
    for layer in layers:
        kind, arguments = layer[0], layer[1:]
        factory, count = LAYERS[kind]
        if len(arguments) != count or not all(type(argument) is int and 0 < argument <= 4096 for argument in arguments):
            raise MalformedRecord(f"a repaired layer {kind} has malformed arguments")
        built.append((factory, tuple(arguments)))

    def __init__(self):
        nn.Module.__init__(self)
        self.layers = nn.Sequential(*(factory(*arguments) for factory, arguments in built))

    def forward(self, inputs):
        return self.layers(inputs)

    return type(name, (nn.Module,), {"__init__": __init__, "forward": forward, "__module__": "__main__"})


def value_of(description: Any, tensors: dict) -> Any:
    kind = description["kind"]
    if kind == "number":
        return description["value"]
    if kind == "tensor":
        tensor = torch.from_numpy(tensors[description["key"]].copy())
        return tensor.requires_grad_(True) if description.get("requires_grad") else tensor
    if kind == "module-class":
        return layered_module_class(description["name"], description["layers"])
    raise MalformedRecord(f"a repaired value has an unknown kind {kind!r}")


def receive(payload: dict, namespace: dict) -> None:
    """Put the repaired values of `payload` into `namespace` (the notebook's globals)."""
    try:
        if payload.get("format") != FORMAT_VERSION:
            return
        tensors = unpack_tensors(payload.get("tensors", ""))
        values = {name: value_of(description, tensors) for name, description in payload["values"].items()}
    except Exception:  # a repair that cannot be read leaves the student's state as it was
        return
    namespace.update(values)
