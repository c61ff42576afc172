"""Inputs the grader chooses for behaviour checks, derived from a per-cell challenge.

The kernel (coursekit.recorder.collect) runs the student's model and loss function on
these inputs; the judge (coursekit.exercise.checks) derives the same inputs from the
challenge it chose and computes what the answers should have been; only the
judge knows how. The
challenge is fresh for every test cell, so outputs cannot be prepared ahead.
"""
from __future__ import annotations

import torch

NET_TOKEN_SHAPES = ((4,), (3, 5))
NET_VOCABULARY = 8
# Parameters of this size push hidden units far past any bound a wrong activation might have
# (ReLU6 equals ReLU below 6): the model's equations are tested over a wide range.
PARAMETER_SCALE = 3.0


def generator(challenge: int, purpose: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(challenge) * 31 + purpose) % (1 << 62))


def fresh_parameters(challenge: int, shapes_and_dtypes: list[tuple[tuple[int, ...], torch.dtype]]) -> list[torch.Tensor]:
    """The values the student's Net gets, in the order of its named_parameters()."""
    drawn = generator(challenge, 1)
    return [torch.randn(shape, generator=drawn, dtype=dtype) * PARAMETER_SCALE for shape, dtype in shapes_and_dtypes]


def net_tokens(challenge: int) -> list[torch.Tensor]:
    drawn = generator(challenge, 2)
    return [torch.randint(0, NET_VOCABULARY, shape, generator=drawn) for shape in NET_TOKEN_SHAPES]


def loss_inputs(challenge: int) -> tuple[torch.Tensor, torch.Tensor]:
    drawn = generator(challenge, 3)
    logits = torch.randn(6, 4, generator=drawn, dtype=torch.float32) * 3  # whatever the kernel's default dtype
    return logits, torch.randint(0, 4, (6,), generator=drawn)
