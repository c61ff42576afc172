"""Which forms of an answer count: one rule for the visible checks and the judge.

A number may be a Python int, a NumPy integer or a one-element integer tensor;
a shape a tuple, list or torch.Size; a method a name written in any case,
with or without hyphens, dots in the abbreviation, an article or a full stop.
The notebook's locked cell `check_helpers` is the code below the marker,
verbatim (tests/test_forms.py), so the checks students run accept exactly what
the judge accepts (the judge turns its records back into these forms first).
"""
from pathlib import Path as _Path

MARKER = "# ---- the notebook's check_helpers cell: everything below this line ----"


def notebook_cell_source() -> str:
    """The source of the notebook's check_helpers cell: this file below the marker."""
    return _Path(__file__).read_text(encoding="utf-8").split(MARKER + "\n", 1)[1].strip()


# ---- the notebook's check_helpers cell: everything below this line ----
import re as _re

import torch as _torch


def _is_numpy_scalar(value, kinds):
    kind = type(value)
    return kind.__module__ == "numpy" and kind.__name__ != "ndarray" and getattr(value, "dtype", None) is not None \
        and value.dtype.kind in kinds


def _is_tensor(value):
    kind = type(value)
    return (kind.__module__, kind.__name__) in (("torch", "Tensor"), ("torch.nn.parameter", "Parameter"))


def check_is_tensor(value):
    """True for a torch.Tensor or nn.Parameter itself; subclasses can fake comparisons, so they do not count."""
    return _is_tensor(value)


def check_close(found, expected, relative=1e-6):
    """The same values up to `relative` of the largest expected value (at least 1), compared in float64."""
    if not _is_tensor(found) or tuple(found.shape) != tuple(expected.shape):
        return False
    found, expected = found.detach().to(_torch.float64), expected.detach().to(_torch.float64)
    if not bool(_torch.isfinite(found).all()):
        return False
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    return bool(_torch.allclose(found, expected, rtol=0.0, atol=relative * scale))


def check_whole_number(value):
    """The int `value` stands for (an int, a NumPy integer, a one-element integer tensor), or None."""
    if type(value) is int:
        return value
    if _is_numpy_scalar(value, "iu"):
        return int(value)
    if _is_tensor(value) and value.numel() == 1 and not value.dtype.is_floating_point \
            and not value.dtype.is_complex and str(value.dtype) != "torch.bool":
        return int(value.item())
    return None


def check_real_number(value):
    """The float `value` stands for (a Python or NumPy int or float, a one-element tensor), or None."""
    whole = check_whole_number(value)
    if whole is not None:
        return float(whole)
    if type(value) is float or _is_numpy_scalar(value, "f"):
        return float(value)
    if _is_tensor(value) and value.numel() == 1 and value.dtype.is_floating_point:
        return float(value.item())
    return None


def check_shape(value):
    """The shape `value` stands for (a tuple, list or torch.Size of whole numbers), as a tuple, or None."""
    if (type(value) not in (tuple, list) and not (type(value).__module__, type(value).__name__) == ("torch", "Size")) \
            or len(value) > 8:
        return None
    sizes = [check_whole_number(size) for size in value]
    return None if any(size is None for size in sizes) else tuple(sizes)


_METHODS = {
    "GD": ("gd", "gradient descent", "batch gd", "batch gradient descent", "full batch gd", "full batch",
           "full batch gradient descent", "vanilla gradient descent", "vanilla gd"),
    "SGD": ("sgd", "stochastic gradient descent", "stochastic gd", "online gradient descent", "online sgd",
            "online gd"),
    "mini-batch GD": ("mini batch gd", "mini batch gradient descent", "mini batch sgd",
                      "mini batch stochastic gradient descent", "mbgd", "mini batch"),
}
_NEGATIONS = {"not", "no", "never", "nor", "neither", "without", "instead", "rather", "except", "but"}


def check_method_name(text):
    """The method ("GD", "SGD" or "mini-batch GD") a short answer names, or None.

    Case, punctuation, dots in abbreviations ("S.G.D."), articles and words around the
    name do not matter; an answer naming two methods, or a name with a negation
    ("not SGD"), names none.
    """
    if type(text) is not str or len(text) > 200:
        return None
    words = _re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    joined = []  # "s g d" (from "S.G.D.") is one word again, "sgd"
    for word in words:
        letter = len(word) == 1 and word.isalpha() and word != "a"
        if letter and joined and joined[-1][1]:
            joined[-1] = (joined[-1][0] + word, True)
        else:
            joined.append((word, letter))
    words = " ".join(word for word, _ in joined).replace("minibatch", "mini batch").replace("descend", "descent").split()
    phrases = sorted(((phrase.split(), method) for method, spellings in _METHODS.items() for phrase in spellings),
                     key=lambda item: -len(item[0]))
    found, position = set(), 0
    while position < len(words):
        for phrase, method in phrases:
            if words[position:position + len(phrase)] == phrase:
                found.add(method)
                position += len(phrase)
                break
        else:
            if words[position] in _NEGATIONS:
                return None
            position += 1
    return found.pop() if len(found) == 1 else None
