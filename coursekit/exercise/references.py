"""What the right answers are, computed from the given values of one run (coursekit.exercise.given).

Only the judge uses this, in the grading process. Tensors the locked cells make
from seeds are made here the same way (torch's CPU generator gives the same
numbers for the same seed); matrices the cells give as literals are the same
float32 values the kernel had, widened to float64 for the references.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from coursekit.exercise.given import GivenValues


@functools.lru_cache(maxsize=8)
def x_start(seed: int) -> torch.Tensor:
    return torch.randn(3, 1, 4, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)


@functools.lru_cache(maxsize=2)
def bmm_factors(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`a` and `b` as the given cell makes them, in float64."""
    drawn = torch.Generator().manual_seed(seed)
    a = torch.randn(64, 128, 256, generator=drawn, dtype=torch.float32)
    b = torch.randn(64, 256, 512, generator=drawn, dtype=torch.float32)
    return a.to(torch.float64), b.to(torch.float64)


def bmm_of_given_x(seed: int, d: torch.Tensor) -> torch.Tensor:
    """torch.bmm(x, d) for the given x = torch.bmm(a, b), as a (b d): the same product, 20 times cheaper
    than forming x (1 GFLOP), which matters now that every team has its own `a` and `b`."""
    a, b = bmm_factors(seed)
    return torch.bmm(a, torch.bmm(b, d.to(torch.float64)))


def tensor_of(values, dtype=torch.float32) -> torch.Tensor:
    """The tensor a given cell's literal makes (float32, as in the kernel)."""
    return torch.tensor(values, dtype=dtype)


def attention_in(dtype: torch.dtype, values: GivenValues) -> dict[str, torch.Tensor]:
    words = tensor_of(values.x_words).to(dtype)
    Q = words @ tensor_of(values.Wq).to(dtype)
    K = words @ tensor_of(values.Wk).to(dtype)
    scores = Q @ K.T
    scaled = scores / math.sqrt(K.shape[1])
    return {"Q": Q, "K": K, "scores": scores, "scores_scaled": scaled, "weights": torch.softmax(scaled, dim=1),
            "var_scores": scores.var(), "var_scores_scaled": scaled.var(),
            "var_scores population": scores.var(unbiased=False),
            "var_scores_scaled population": scaled.var(unbiased=False)}


@functools.lru_cache(maxsize=8)
def attention(values: GivenValues) -> dict[str, torch.Tensor]:
    """The attention steps in float64, and `d_k`."""
    return {**attention_in(torch.float64, values), "d_k": 2}


@functools.lru_cache(maxsize=8)
def attention_rounding(values: GivenValues) -> dict[str, float]:
    """How far the same steps in float32 (how the kernel computes them) land from float64, per step.

    A right answer in float32 differs from the float64 reference by rounding that grows
    through the steps (scores of ~30 carry ~1e-6 into the softmax); the judge allows ten
    times this much on top of its relative tolerance. Wrong answers differ by far more.
    """
    exact, rounded = attention(values), attention_in(torch.float32, values)
    return {name: float((rounded[name].to(torch.float64) - exact[name]).abs().max()) for name in rounded}


def labels(values: GivenValues) -> torch.Tensor:
    return torch.tensor(values.y, dtype=torch.long)


def tokens(values: GivenValues) -> torch.Tensor:
    return torch.tensor(values.X, dtype=torch.long)


def cross_entropy(logits: torch.Tensor, values: GivenValues) -> torch.Tensor:
    return F.cross_entropy(logits.to(torch.float64), labels(values))
