"""Error carried forward: after a wrong answer, the grader sets its names right in the kernel.

Later cells build on earlier answers (scores on Q and K, the loss on Net). When
the judge withholds points for one of these cells, the grader runs
``repair(<grade_id>, globals())`` in the kernel right after its test cell, so
the cells after it are graded on their own merit, not failed a second time.
A repair only helps: student code that interferes with it hurts nobody else.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn

GIVEN_WQ = [[0.5, 2.0], [3.0, 1.5]]
GIVEN_WK = [[1.0, 0.4], [0.6, 1.2]]
GIVEN_WORDS = [[1.0, 2.0], [2.0, 1.0], [1.5, 1.5]]
TENSOR_TYPES = (torch.Tensor, nn.Parameter)


class ReferenceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(8, 6)
        self.W = nn.Linear(6, 10)
        self.U = nn.Linear(10, 4)

    def forward(self, tokens):
        return self.U(torch.relu(self.W(self.embedding(tokens))))


ReferenceNet.__name__ = ReferenceNet.__qualname__ = "Net"


def given_attention_weight(namespace: dict, name: str, values: list) -> torch.Tensor:
    tensor = namespace.get(name)
    if type(tensor) in TENSOR_TYPES and tensor.shape == (2, 2) and torch.equal(tensor.detach(), torch.tensor(values)):
        return tensor
    return torch.tensor(values, requires_grad=True)


def repair_net(namespace: dict) -> None:
    namespace["Net"] = ReferenceNet


def repair_projections(namespace: dict) -> None:
    words = torch.tensor(GIVEN_WORDS)
    namespace["Q"] = words @ given_attention_weight(namespace, "Wq", GIVEN_WQ)
    namespace["K"] = words @ given_attention_weight(namespace, "Wk", GIVEN_WK)


def repair_scores(namespace: dict) -> None:
    if not all(type(namespace.get(name)) in TENSOR_TYPES for name in ("Q", "K")):
        repair_projections(namespace)
    namespace["d_k"] = 2
    namespace["scores"] = namespace["Q"] @ namespace["K"].T
    namespace["scores_scaled"] = namespace["scores"] / math.sqrt(2)


def repair_variances(namespace: dict) -> None:
    namespace["var_scores"] = torch.var(namespace["scores"])
    namespace["var_scores_scaled"] = torch.var(namespace["scores_scaled"])


REPAIRS: dict[str, Callable[[dict], None]] = {
    "net_model": repair_net,
    "attention_qk": repair_projections,
    "attention_scores": repair_scores,
    "attention_variance": repair_variances,
}


def repair(grade_id: str, namespace: dict) -> None:
    try:
        REPAIRS[grade_id](namespace)
    except Exception:  # a repair that cannot run leaves the student's state as it was
        pass
