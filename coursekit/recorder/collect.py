"""The kernel's side of a hidden test: record the answers as data for the judge.

A hidden test cell calls ``collect(<grade_id>, globals())``. It decides
nothing and knows no right answer: it describes the names the checks need
(coursekit.recorder.wire), runs the student's model and loss function on the
inputs of this cell's challenge (coursekit.recorder.challenges), and sends the
record out as one display output. The judge in the grading process decides
the points. Student code can change what is recorded, but then it has to
produce right answers itself.
"""
from __future__ import annotations

import contextlib
import io
import numbers
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn as nn

from . import challenges
from .wire import ANSWER_MIME, CHALLENGE_NAME, DEFAULT_CHALLENGE, MAX_ITEMS, MAX_STRING, MAX_TENSOR_ELEMENTS, TRAVEL_DTYPES, encode

TENSOR_TYPES = (torch.Tensor, nn.Parameter)


class Recorder:
    """Builds one record: JSON-ready descriptions and the tensors they refer to."""

    def __init__(self) -> None:
        self.descriptions: dict[str, Any] = {}
        self.tensors: dict[str, Any] = {}

    def name(self, namespace: dict, name: str) -> None:
        self.descriptions[name] = self.describe(namespace[name]) if name in namespace else {"kind": "missing"}

    def value(self, label: str, value: Any) -> None:
        self.descriptions[label] = self.describe(value)

    def failure(self, label: str, message: str) -> None:
        self.descriptions[label] = {"kind": "failed", "message": message[:MAX_STRING]}

    def describe(self, value: Any, depth: int = 0) -> dict:
        kind = type(value)
        if kind in TENSOR_TYPES:
            return self.describe_tensor(value)
        if kind in (bool, int, float):
            return describe_number(value, numpy_scalar=False)
        if kind.__module__ == "numpy" and isinstance(value, (numbers.Number, bool)):
            return describe_number(plain_number(value), numpy_scalar=True, type_name=kind.__name__)
        if kind is str:
            return {"kind": "text", "value": value[:MAX_STRING]}
        if kind in (tuple, list, torch.Size) and depth < 3:
            if len(value) > MAX_ITEMS:
                return {"kind": "other", "type": f"{kind.__name__} of {len(value)} items"}
            return {"kind": "sequence", "type": kind.__name__, "items": [self.describe(item, depth + 1) for item in value]}
        return {"kind": "other", "type": kind.__name__[:100]}

    def describe_tensor(self, tensor: torch.Tensor) -> dict:
        dtype = str(tensor.dtype)
        description = {"kind": "tensor", "dtype": dtype, "shape": list(tensor.shape),
                       "requires_grad": bool(tensor.requires_grad), "is_parameter": type(tensor) is nn.Parameter}
        travel = TRAVEL_DTYPES.get(dtype)
        if travel is None or tensor.numel() > MAX_TENSOR_ELEMENTS or tensor.layout is not torch.strided:
            return description  # described, but too large or too odd to send
        key = f"t{len(self.tensors)}"
        values = tensor.detach().cpu()
        if values.dtype in (torch.float16, torch.bfloat16):
            values = values.float()
        elif travel == "int64" and values.dtype != torch.int64:
            values = values.to(torch.int64)
        self.tensors[key] = values.contiguous().numpy()
        description["key"] = key
        return description


def plain_number(value: Any) -> Any:
    """A NumPy scalar as Python's bool, int or float (longdouble's own item() keeps it a NumPy number)."""
    kind = getattr(getattr(value, "dtype", None), "kind", "")
    if kind == "b":
        return bool(value)
    if kind in "iu":
        return int(value)
    if kind == "f":
        return float(value)
    return value.item()


def describe_number(value: Any, *, numpy_scalar: bool, type_name: str | None = None) -> dict:
    name = type_name or type(value).__name__
    if type(value) is float:
        return {"kind": "number", "type": name, "value": repr(value), "numpy": numpy_scalar}
    if type(value) is int and abs(value) >= 1 << 62:
        return {"kind": "other", "type": "int (too large)"}
    return {"kind": "number", "type": name, "value": value, "numpy": numpy_scalar}


@contextlib.contextmanager
def quiet_student_code() -> Iterator[None]:
    """Swallow what student code prints or warns while the record is taken.

    nbgrader zeroes a test cell that writes to stderr, also at the level of
    file descriptors, so both are redirected while student code runs.
    """
    sink = io.StringIO()
    saved_fds = []
    try:
        for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
            try:
                stream.flush()
                saved_fds.append((fd, os.dup(fd)))
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, fd)
                os.close(devnull)
            except (OSError, ValueError, AttributeError):
                pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                yield
    finally:
        for fd, saved in saved_fds:
            os.dup2(saved, fd)
            os.close(saved)


def call_student(recorder: Recorder, label: str, function: Callable, *args: Any) -> Any:
    """Call student code; on failure record why, so the judge can say it."""
    try:
        # No gradients are needed, and a model built under torch.inference_mode() can only run so.
        with quiet_student_code(), torch.random.fork_rng(devices=[]), torch.no_grad():
            result = function(*args)
    except BaseException as error:  # also SystemExit & co: the record must still be sent
        recorder.failure(label, f"{label} raised {type(error).__name__}: {str(error)[:300]}")
        return None
    recorder.value(label, result)
    return result


# ---------------------------------------------------------------- what each cell records


def record_names(*names: str) -> Callable[[dict, Recorder, int], None]:
    def record(namespace: dict, recorder: Recorder, challenge: int) -> None:
        for name in names:
            recorder.name(namespace, name)
    return record


def record_embedding(namespace: dict, recorder: Recorder, challenge: int) -> None:
    record_names("vocab_size", "embedding_dim", "tokens", "embedded_x")(namespace, recorder, challenge)
    layer = namespace.get("embedding_layer")
    if "embedding_layer" not in namespace:
        recorder.name(namespace, "embedding_layer")
        return
    is_embedding = isinstance(layer, nn.Embedding) and type(layer).forward is nn.Embedding.forward
    recorder.value("embedding_layer is an nn.Embedding", is_embedding)
    recorder.value("embedding_layer", layer)
    if is_embedding:
        recorder.value("embedding_layer.num_embeddings", layer.num_embeddings)
        recorder.value("embedding_layer.embedding_dim", layer.embedding_dim)
        recorder.value("embedding_layer.weight", layer.weight)


def record_net(namespace: dict, recorder: Recorder, challenge: int) -> None:
    if "Net" not in namespace:
        recorder.name(namespace, "Net")
        return
    net_class = namespace["Net"]
    recorder.name(namespace, "Net")
    recorder.value("Net is an nn.Module class", isinstance(net_class, type) and issubclass(net_class, nn.Module))
    model = call_student(recorder, "Net()", net_class) if callable(net_class) else None
    if not isinstance(model, nn.Module):
        return
    if any(isinstance(parameter, nn.parameter.UninitializedParameter) for parameter in model.parameters()):
        # Lazy layers (nn.LazyLinear) get their parameters at the first call.
        call_student(Recorder(), "Net() first call", model, challenges.net_tokens(challenge)[0])
    try:
        parameters = list(model.named_parameters())
        fresh = challenges.fresh_parameters(challenge, [(tuple(p.shape), p.dtype) for _, p in parameters[:MAX_ITEMS]])
        with torch.no_grad():
            for (_, parameter), values in zip(parameters, fresh):
                parameter.copy_(values)
        record_parameters(recorder, "Net()", model)
    except BaseException as error:
        recorder.failure("Net().parameters", f"the parameters of Net() could not be set ({type(error).__name__}: {error})")
        return
    for tokens in challenges.net_tokens(challenge):
        call_student(recorder, f"Net()(tokens of shape {tuple(tokens.shape)})", model, tokens)


def record_parameters(recorder: Recorder, label: str, model: nn.Module) -> list:
    """The model's parameters as they are (names, shapes, dtypes, then each one's values)."""
    parameters = list(model.named_parameters())
    recorder.value(f"{label} parameter count", len(parameters))
    recorder.value(f"{label}.modules", [[name, type(module).__name__] for name, module in model.named_modules()][:MAX_ITEMS])
    recorder.value(f"{label}.parameters", [[name, list(p.shape), str(p.dtype)] for name, p in parameters][:MAX_ITEMS])
    for index, (_, parameter) in enumerate(parameters[:MAX_ITEMS]):
        recorder.value(f"{label} parameter {index}", parameter)
    return parameters


def record_net_loss(namespace: dict, recorder: Recorder, challenge: int) -> None:
    record_names("X", "y", "output", "loss")(namespace, recorder, challenge)
    recorder.name(namespace, "model")
    recorder.name(namespace, "loss_function")
    net_class, model = namespace.get("Net"), namespace.get("model")
    recorder.value("model is a Net", isinstance(net_class, type) and isinstance(model, net_class))
    if isinstance(model, nn.Module):
        try:
            record_parameters(recorder, "model", model)
        except BaseException as error:
            recorder.failure("model.parameters", f"the parameters of `model` could not be read ({type(error).__name__})")
    X = namespace.get("X")
    if callable(model) and type(X) in TENSOR_TYPES:
        call_student(recorder, "model(X) first call", model, X.detach().clone())
        call_student(recorder, "model(X) second call", model, X.detach().clone())
    loss_function = namespace.get("loss_function")
    recorder.value("loss_function is callable", callable(loss_function))
    if callable(loss_function):
        logits, targets = challenges.loss_inputs(challenge)
        call_student(recorder, "loss_function(logits, targets)", loss_function, logits, targets)


RECORDERS: dict[str, Callable[[dict, Recorder, int], None]] = {
    "squeeze_target": record_names("x"),
    "bmm_x_shape": record_names("x_shape"),
    "bmm_d": record_names("d", "y"),
    "embedding_sizes": record_embedding,
    "param_count": record_names("n_params"),
    "net_model": record_net,
    "net_loss": record_net_loss,
    "attention_qk": record_names("Q", "K"),
    "attention_scores": record_names("d_k", "scores", "scores_scaled"),
    "attention_variance": record_names("var_scores", "var_scores_scaled"),
    "attention_softmax": record_names("weights"),
    "optimizer_choice": record_names("scenario_a", "scenario_b"),
}


def record(grade_id: str, namespace: dict, *, challenge: int) -> dict:
    """The payload for one test cell (also used directly by the fast tests)."""
    recorder = Recorder()
    RECORDERS[grade_id](namespace, recorder, challenge)
    return encode(grade_id, recorder.descriptions, recorder.tensors)


def collect(grade_id: str, namespace: dict) -> dict | None:
    """Record the answers of one cell and send them to the grader as a display output."""
    challenge = namespace.pop(CHALLENGE_NAME, DEFAULT_CHALLENGE)
    payload = record(grade_id, namespace, challenge=challenge if type(challenge) is int else DEFAULT_CHALLENGE)
    try:
        from IPython import get_ipython
        from IPython.display import publish_display_data
    except ImportError:
        return payload
    if get_ipython() is None:
        return payload
    publish_display_data({ANSWER_MIME: payload, "text/plain": f"(answers of {grade_id} recorded for the grader)"})
    return None
