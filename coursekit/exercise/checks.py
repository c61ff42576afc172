"""The judge of ex2: one checker per autograded answer cell, run in the grading process.

The student's kernel only records answers as data (coursekit.recorder.collect);
the judge gets that record, never the student's objects, and never runs
student code. Every reference is computed here (coursekit.exercise.references)
from the values the grader chose for this run's given cells
(coursekit.exercise.given) and from the challenge the grader chose for the
cell, so nothing the kernel sends can move the goalposts: wrong data only earns
what wrong answers earn, and a value copied from the sheet or a printout is
wrong on the grader's values.

Design rules, each learned from wrong grades:
- Grade what was computed, not how: any computation from the given values
  counts (detached, under no_grad, in float64, as a view); where it came from
  is never asked, since the grader's values make copies wrong by themselves.
- Test behaviour, not appearance: the model's parameters get values drawn from
  the challenge, its outputs on challenge tokens are compared with a reference
  computed here; layers are located by parameter shapes, not by names.
- One rule for forms (coursekit.exercise.forms): a record is turned back into
  the Python, NumPy or torch value it described and judged by the same
  functions the notebook's visible checks use.
- Tolerances are tight; only exact types count: tensor subclasses and objects
  that fake `==` are recorded by type name only, so they earn nothing.
"""
from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy
import torch
import torch.nn.functional as F

from coursekit.course import ON_GRADERS_VALUES
from coursekit.exercise import forms, references
from coursekit.exercise.given import SHEET, GivenValues
from coursekit.protocol import (
    AnswerRecord, Failed, MalformedRecord, Missing, Number, Other, Sequence, TensorAnswer, Text, decode,
)
from coursekit.recorder import challenges
from coursekit.safe_text import one_line

FLOAT_DTYPES = {"torch.float32": torch.float32, "torch.float64": torch.float64,
                "torch.float16": torch.float16, "torch.bfloat16": torch.bfloat16}
TORCH_DTYPES = {**FLOAT_DTYPES, "torch.int64": torch.int64, "torch.int32": torch.int32, "torch.int16": torch.int16,
                "torch.int8": torch.int8, "torch.uint8": torch.uint8, "torch.bool": torch.bool,
                "torch.uint16": torch.int64, "torch.uint32": torch.int64, "torch.uint64": torch.int64}
NO_RECORD = "the hidden tests of this cell did not run to the end (no answers reached the grader), so it scores 0"
# Student code the judge parses (to see how `x` was made) is bounded: a cell over this is not parsed.
MAX_PARSED_CELL = 20_000


class WrongAnswer(Exception):
    """One part of an answer is wrong; the message tells the student why."""


@dataclass(frozen=True)
class Situation:
    """What the judge knows besides the record: its challenge, the given values of the run and the code
    that ran before the test."""

    challenge: int
    sources: tuple[str, ...] = ()
    given: GivenValues = SHEET


@dataclass(frozen=True)
class Part:
    description: str
    weight: float
    check: Callable[[AnswerRecord, Situation], None]


@dataclass(frozen=True)
class PartResult:
    description: str
    weight: float
    passed: bool
    reason: str


@dataclass(frozen=True)
class Verdict:
    grade_id: str
    score: float
    max_points: float
    parts: tuple[PartResult, ...]

    @property
    def full_marks(self) -> bool:
        return self.score >= self.max_points

    def lines(self) -> list[str]:
        """One line per part; reasons quote student data (names, messages), so they are made printable."""
        return [f"[passed] {part.description}" if part.passed
                else f"[FAILED] {part.description}: {one_line(part.reason, limit=600)}" for part in self.parts]


# ---------------------------------------------------------------- reading the record


def require(record: AnswerRecord, name: str, label: str | None = None) -> Any:
    value = record.get(label or name)
    if isinstance(value, Missing):
        raise WrongAnswer(f"`{name}` is not defined; run your answer cell and check the spelling.")
    if isinstance(value, Failed):
        raise WrongAnswer(value.message)
    return value


def require_tensor(record: AnswerRecord, name: str, shape: tuple | None = None, *, label: str | None = None) -> torch.Tensor:
    value = require(record, name, label)
    if not isinstance(value, TensorAnswer):
        raise WrongAnswer(f"`{name}` should be a torch.Tensor, found {type_name(value)}.")
    if shape is not None and value.shape != shape:
        raise WrongAnswer(f"`{name}` has shape {value.shape}, expected {shape}.")
    if value.values is None:
        raise WrongAnswer(f"`{name}` (shape {value.shape}, {value.dtype}) is too large or too unusual to check.")
    return torch.from_numpy(numpy.array(value.values, copy=True))


def tensor_answer(record: AnswerRecord, name: str) -> TensorAnswer:
    value = require(record, name)
    if not isinstance(value, TensorAnswer):
        raise WrongAnswer(f"`{name}` should be a torch.Tensor, found {type_name(value)}.")
    return value


def type_name(value: Any) -> str:
    if isinstance(value, Other):
        return value.type_name
    if isinstance(value, Number):
        return value.type_name
    if isinstance(value, Text):
        return "str"
    if isinstance(value, Sequence):
        return value.type_name
    if isinstance(value, TensorAnswer):
        return "Tensor"
    return type(value).__name__


def live(value: Any) -> Any:
    """The Python, NumPy or torch value a record describes, for the rules of coursekit.exercise.forms.

    What the record cannot describe exactly (other types, tensors too large to
    send) becomes None, which no rule accepts.
    """
    if isinstance(value, Text):
        return value.value
    if isinstance(value, Number):
        if value.numpy:
            kind = getattr(numpy, value.type_name, None)
            return kind(value.value) if isinstance(kind, type) and issubclass(kind, numpy.generic) else None
        return value.value if type(value.value).__name__ == value.type_name else None
    if isinstance(value, Sequence):
        items = [live(item) for item in value.items]
        if value.type_name == "Size":
            return torch.Size(items) if all(type(item) is int for item in items) else tuple(items)
        return {"tuple": tuple, "list": list}.get(value.type_name, lambda _: None)(items)
    if isinstance(value, TensorAnswer) and value.values is not None and value.dtype in TORCH_DTYPES:
        return torch.from_numpy(numpy.array(value.values, copy=True)).to(TORCH_DTYPES[value.dtype])
    return None


def is_true(record: AnswerRecord, label: str) -> bool:
    value = record.get(label)
    return isinstance(value, Number) and value.type_name == "bool" and value.value is True


def same_values(found: torch.Tensor, expected: torch.Tensor, *, relative: float = 1e-6) -> bool:
    return forms.check_close(found, expected, relative)


def shown(tensor: torch.Tensor) -> str:
    """A small tensor's values as the verdict shows them (expected/found on the grader's values)."""
    values = tensor.detach().to(torch.float64)
    if values.numel() > 16:
        return f"a tensor of shape {tuple(values.shape)}"
    return str(numpy.array2string(values.numpy(), precision=4, suppress_small=True, separator=", ")).replace("\n", "")


def as_real_number(record: AnswerRecord, name: str) -> float:
    """A Python, NumPy or one-element torch number (forms.check_real_number); anything else is refused."""
    value = require(record, name)
    number = forms.check_real_number(live(value))
    if number is None:
        if isinstance(value, TensorAnswer):
            raise WrongAnswer(f"`{name}` should be a single number, found a tensor of shape {value.shape}.")
        raise WrongAnswer(f"`{name}` should be a number, found {type_name(value)}.")
    return number


def as_exact_int(name: str, value: Any) -> int:
    number = forms.check_whole_number(live(value))
    if number is None:
        raise WrongAnswer(f"`{name}` should be an int, found {type_name(value)}.")
    return number


def given_tensor_unchanged(record: AnswerRecord, name: str, values: tuple[int, ...]) -> None:
    found = require_tensor(record, name)
    if found.tolist() != list(values):
        raise WrongAnswer(f"the given `{name}` was changed; do not overwrite it.")


# ---------------------------------------------------------------- Task 1.1


def check_squeeze_shape(record: AnswerRecord, situation: Situation) -> None:
    tensor_shape = tensor_answer(record, "x").shape
    if tensor_shape != (1, 3, 4, 1, 1):
        raise WrongAnswer(f"`x` has shape {tensor_shape}, expected (1, 3, 4, 1, 1).")


def check_squeeze_values(record: AnswerRecord, situation: Situation) -> None:
    x = require_tensor(record, "x")
    found = x.reshape(-1).to(torch.float64)
    expected = references.x_start(situation.given.x_start_seed).reshape(-1).to(torch.float64)
    if tuple(found.shape) != (12,) or not torch.equal(found, expected):
        raise WrongAnswer(
            "`x` does not hold exactly the values of `x_start` in their original order (the grader ran the "
            "notebook with its own `x_start`); build it from `x_start` instead of creating or typing a new tensor."
        )


def parsed(source: str) -> ast.AST | None:
    """The syntax tree of a cell of student code, or None; cells over MAX_PARSED_CELL are not parsed."""
    if len(source) > MAX_PARSED_CELL:
        return None
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return None


def latest_cell_assigning(sources: tuple[str, ...], name: str) -> str | None:
    for source in reversed(sources):
        tree = parsed(source)
        if tree is None:
            continue
        for node in ast.walk(tree):
            targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets if t is not None):
                return source
    return None


def functions_defined(sources: tuple[str, ...]) -> dict[str, str]:
    """Function name -> its source, for the functions (def, or a lambda assigned to a name) the cells define."""
    defined = {}
    for source in sources:
        tree = parsed(source)
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defined[node.name] = ast.get_source_segment(source, node) or ""
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        defined[target.id] = ast.get_source_segment(source, node) or ""
    return defined


def uses_squeeze(source: str, functions: dict[str, str], depth: int = 0) -> bool:
    """`source` calls squeeze/unsqueeze, itself or through functions the cells define (a helper cell)."""
    if "squeeze" in source:
        return True
    tree = parsed(source)
    if tree is None or depth > 3:
        return False
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    return any(uses_squeeze(functions[name], functions, depth + 1) for name in called if name in functions)


def check_squeeze_method(record: AnswerRecord, situation: Situation) -> None:
    check_squeeze_shape(record, situation)
    check_squeeze_values(record, situation)
    source = latest_cell_assigning(situation.sources, "x")
    if source is not None and not uses_squeeze(source, functions_defined(situation.sources)):
        raise WrongAnswer("the task asks for `squeeze`/`unsqueeze`; your cell reaches the shape another way.")


# ---------------------------------------------------------------- Task 1.2


def check_x_shape(record: AnswerRecord, situation: Situation) -> None:
    value = require(record, "x_shape")
    shape = forms.check_shape(live(value))
    if shape is None:
        raise WrongAnswer(f"`x_shape` should be a tuple, list or torch.Size of whole numbers, found {type_name(value)}.")
    if shape != (64, 128, 512):
        raise WrongAnswer(f"`x_shape` is {shape}, which is not the shape of `x = torch.bmm(a, b)`.")


def check_d(record: AnswerRecord, situation: Situation) -> None:
    d = tensor_answer(record, "d")
    if d.shape != (64, 512, 9):
        raise WrongAnswer(f"`d` has shape {d.shape}, which is not a shape that makes `torch.bmm(x, d)` (64, 128, 9).")
    if d.dtype != "torch.float32":
        raise WrongAnswer(f"`d` has dtype {d.dtype}; `torch.bmm(x, d)` needs the dtype of `x`.")


def check_y(record: AnswerRecord, situation: Situation) -> None:
    d = require_tensor(record, "d", (64, 512, 9))
    y = require_tensor(record, "y", (64, 128, 9))
    if not same_values(y, references.bmm_of_given_x(situation.given.bmm_seed, d), relative=1e-5):
        raise WrongAnswer("`y` is not `torch.bmm(x, d)` for the given `x` and your `d`; do not overwrite the given `x`.")


# ---------------------------------------------------------------- Task 1.3


def check_embedding_sizes(record: AnswerRecord, situation: Situation) -> None:
    vocab_size = as_exact_int("vocab_size", require(record, "vocab_size"))
    embedding_dim = as_exact_int("embedding_dim", require(record, "embedding_dim"))
    if (vocab_size, embedding_dim) != (10, 5):
        raise WrongAnswer("`vocab_size` or `embedding_dim` does not match the description in the comment.")


def embedding_weight(record: AnswerRecord) -> torch.Tensor:
    layer = require(record, "embedding_layer")
    if not is_true(record, "embedding_layer is an nn.Embedding"):
        raise WrongAnswer(f"`embedding_layer` should be an nn.Embedding, found {type_name(layer)}.")
    sizes = [as_exact_int("embedding_layer", record.get(f"embedding_layer.{size}")) for size in ("num_embeddings", "embedding_dim")]
    if sizes != [10, 5]:
        raise WrongAnswer("`embedding_layer` was not built as nn.Embedding(vocab_size, embedding_dim).")
    return require_tensor(record, "embedding_layer.weight", (10, 5))


def check_embedding_layer(record: AnswerRecord, situation: Situation) -> None:
    embedding_weight(record)


def check_tokens(record: AnswerRecord, situation: Situation) -> None:
    tokens = require_tensor(record, "tokens", (5,))
    if tensor_answer(record, "tokens").dtype != "torch.int64" or tokens.tolist() != [1, 3, 5, 7, 9]:
        raise WrongAnswer("`tokens` should be the LongTensor of the token ids 1, 3, 5, 7, 9.")


def check_embedded_x(record: AnswerRecord, situation: Situation) -> None:
    weight = embedding_weight(record)
    embedded_x = require_tensor(record, "embedded_x", (5, 5))
    if not same_values(embedded_x, weight[torch.tensor([1, 3, 5, 7, 9])]):
        raise WrongAnswer("`embedded_x` is not `embedding_layer(tokens)`.")


# ---------------------------------------------------------------- Task 2


def check_param_count(record: AnswerRecord, situation: Situation) -> None:
    n_params = as_exact_int("n_params", require(record, "n_params"))
    if n_params != 236 * 472 + 472 * 472 + 472 * 10:
        raise WrongAnswer(
            f"`n_params` = {n_params} is not the number of weights: count one weight per connection between "
            "consecutive layers (input, two hidden layers, output) and no biases."
        )


# ---------------------------------------------------------------- Task 3.1

# Shapes of the parameters of Net, by role. Each role admits the storage a layer
# may use (nn.Linear keeps (out, in), a hand-made matrix may keep (in, out));
# all shapes are distinct, so a parameter's shape tells its role.
NET_ROLES = {
    "embedding E (8 x 6)": ((8, 6), (6, 8)),
    "weight of W (6 -> 10)": ((10, 6), (6, 10)),
    "bias b_W (10)": ((10,),),
    "weight of U (10 -> 4)": ((4, 10), (10, 4)),
    "bias b_U (4)": ((4,),),
}


@dataclass(frozen=True)
class NetParameter:
    name: str
    shape: tuple[int, ...]
    dtype: str


def listed_parameters(record: AnswerRecord, label: str, name: str) -> list[NetParameter]:
    """The parameters the recorder listed for the module recorded under `label` ("Net()" or "model")."""
    listed = require(record, name, f"{label}.parameters")
    count = as_exact_int(f"the number of parameters of {name}", require(record, name, f"{label} parameter count"))
    if not isinstance(listed, Sequence) or len(listed.items) != count:
        raise WrongAnswer(f"the parameters of `{name}` could not be read.")
    parameters = []
    for entry in listed.items:
        fields = entry.items if isinstance(entry, Sequence) else ()
        if len(fields) != 3 or not isinstance(fields[0], Text) or not isinstance(fields[1], Sequence) \
                or not isinstance(fields[2], Text):
            raise WrongAnswer(f"the parameters of `{name}` could not be read.")
        shape = tuple(as_exact_int("a parameter shape", size) for size in fields[1].items)
        parameters.append(NetParameter(fields[0].value, shape, fields[2].value))
    return parameters


def net_parameters(record: AnswerRecord) -> list[NetParameter]:
    require(record, "Net")
    if not is_true(record, "Net is an nn.Module class"):
        raise WrongAnswer("`Net` should be a class derived from nn.Module.")
    require(record, "Net", "Net()")
    if isinstance(record.get("Net().parameters"), Missing):
        raise WrongAnswer("`Net()` did not return an nn.Module.")
    return listed_parameters(record, "Net()", "Net")


def roles_of(parameters: list[NetParameter]) -> dict[str, int]:
    """The index of each role's parameter; a mismatch says what is missing or extra."""
    by_role: dict[str, int] = {}
    unexpected = []
    for index, parameter in enumerate(parameters):
        role = next((r for r, shapes in NET_ROLES.items() if parameter.shape in shapes), None)
        if role is None or role in by_role:
            unexpected.append(f"{parameter.name} {parameter.shape}")
        else:
            by_role[role] = index
    missing = [role for role in NET_ROLES if role not in by_role]
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if unexpected:
        problems.append("not part of the model equations: " + ", ".join(unexpected))
    if problems:
        raise WrongAnswer("the parameters of `Net()` do not match the model (" + "; ".join(problems) + ").")
    return by_role


def check_net_structure(record: AnswerRecord, situation: Situation) -> None:
    roles_of(net_parameters(record))


def apply_matrix(parameter: torch.Tensor, inputs: torch.Tensor, in_features: int) -> torch.Tensor:
    """Multiply by a parameter whichever way round it is stored."""
    return inputs @ (parameter if parameter.shape[0] == in_features else parameter.T)


def reference_logits(roles: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    roles = {role: tensor.to(torch.float64) for role, tensor in roles.items()}
    embedding = roles["embedding E (8 x 6)"]
    table = embedding if tuple(embedding.shape) == (8, 6) else embedding.T
    e = table[tokens]
    h = torch.relu(apply_matrix(roles["weight of W (6 -> 10)"], e, 6) + roles["bias b_W (10)"])
    return apply_matrix(roles["weight of U (10 -> 4)"], h, 10) + roles["bias b_U (4)"]


def check_net_forward_on(record: AnswerRecord, situation: Situation, which: int) -> None:
    parameters = net_parameters(record)
    try:
        roles = roles_of(parameters)
    except WrongAnswer:
        raise WrongAnswer("not checked until the layers of `Net` match the model.") from None
    if any(parameter.dtype not in FLOAT_DTYPES for parameter in parameters):
        raise WrongAnswer("the parameters of `Net` should hold floating-point numbers.")
    fresh = challenges.fresh_parameters(situation.challenge, [(p.shape, FLOAT_DTYPES[p.dtype]) for p in parameters])
    for index, expected in enumerate(fresh):
        found = require_tensor(record, "Net", label=f"Net() parameter {index}")
        if not torch.equal(found.to(torch.float64), expected.to(torch.float64)):
            raise WrongAnswer("the test could not set the parameters of `Net()`; keep them as nn.Parameter attributes.")
    tokens = challenges.net_tokens(situation.challenge)[which]
    label = f"Net()(tokens of shape {tuple(tokens.shape)})"
    output = require(record, "Net", label)
    if not isinstance(output, TensorAnswer):
        raise WrongAnswer(f"`Net()(tokens)` should return a tensor, found {type_name(output)}.")
    expected = reference_logits({role: fresh[index] for role, index in roles.items()}, tokens)
    if output.shape != tuple(expected.shape):
        raise WrongAnswer(
            f"for tokens of shape {tuple(tokens.shape)}, `Net()(tokens)` has shape {output.shape}; "
            "expected one row of 4 logits per token."
        )
    if not same_values(require_tensor(record, "Net", label=label), expected, relative=1e-5):
        raise WrongAnswer(
            f"with weights set by the test, `Net()(tokens)` for tokens of shape {tuple(tokens.shape)} does not "
            "compute z = U ReLU(W E x + b_W) + b_U (check the order of layers, the activation, and "
            "that the output is raw logits)."
        )


def check_net_forward(record: AnswerRecord, situation: Situation) -> None:
    check_net_forward_on(record, situation, 0)


def check_net_forward_batched(record: AnswerRecord, situation: Situation) -> None:
    check_net_forward_on(record, situation, 1)


def model_output_on_X(record: AnswerRecord, situation: Situation) -> torch.Tensor:
    """What `model(X)` gives, once it is clear the model answers from its input alone.

    The recorder calls the model twice on the given X; the two answers must
    agree, and where the model's layers are the model's (any model built from
    Net, the repaired one included), they must be what those layers compute,
    judged from the recorded parameters. Everything that depends on `output`
    is judged only on such a model.
    """
    require(record, "model")
    if not is_true(record, "model is a Net"):
        raise WrongAnswer("`model` should be an instance of your `Net`.")
    given_tensor_unchanged(record, "X", situation.given.X)
    first = require(record, "model(X)", "model(X) first call")
    second = require(record, "model(X)", "model(X) second call")
    if not isinstance(first, TensorAnswer) or not isinstance(second, TensorAnswer):
        raise WrongAnswer("`model(X)` does not return a tensor.")
    first_values = require_tensor(record, "model(X)", label="model(X) first call")
    if not same_values(first_values, require_tensor(record, "model(X)", label="model(X) second call"), relative=0):
        raise WrongAnswer("`model(X)` gives a different output each time it is called on the same `X`; "
                          "the model must compute its output from its input alone.")
    try:
        parameters = listed_parameters(record, "model", "model")
        roles = roles_of(parameters)
    except WrongAnswer:
        return first_values  # not the model's layers: Net itself is graded in Task 3.1
    weights = {role: require_tensor(record, "model", label=f"model parameter {index}") for role, index in roles.items()}
    expected = reference_logits(weights, references.tokens(situation.given))
    if not same_values(first_values, expected, relative=1e-5):
        raise WrongAnswer("`model(X)` is not what the layers of `model` compute on `X`.")
    return first_values


def check_model_output(record: AnswerRecord, situation: Situation) -> None:
    produced = model_output_on_X(record, situation)
    output = require_tensor(record, "output", (4, 4))
    if not same_values(output, produced, relative=1e-5):
        raise WrongAnswer("`output` is not `model(X)` for the given `X`.")


def check_loss_function(record: AnswerRecord, situation: Situation) -> None:
    require(record, "loss_function")
    if not is_true(record, "loss_function is callable"):
        raise WrongAnswer("`loss_function` should be callable, like a loss module from torch.nn.")
    found = require(record, "loss_function", "loss_function(logits, targets)")
    logits, targets = challenges.loss_inputs(situation.challenge)
    if not isinstance(found, TensorAnswer) or math.prod(found.shape) != 1 or not same_values(
        require_tensor(record, "loss_function", label="loss_function(logits, targets)").reshape(()),
        F.cross_entropy(logits, targets),
    ):
        raise WrongAnswer("`loss_function` does not compute the (mean) cross-entropy of raw logits and class labels.")


def check_loss(record: AnswerRecord, situation: Situation) -> None:
    try:
        model_output_on_X(record, situation)
    except WrongAnswer as wrong:
        raise WrongAnswer(f"not checked, since it depends on `model(X)`: {wrong}") from None
    output = require_tensor(record, "output", (4, 4))
    loss = require_tensor(record, "loss")
    given_tensor_unchanged(record, "y", situation.given.y)
    if loss.numel() != 1 or loss.dim() != 0:
        raise WrongAnswer(f"`loss` should be a scalar tensor, found shape {tuple(loss.shape)}.")
    expected = references.cross_entropy(output, situation.given)
    if not same_values(loss, expected):
        raise WrongAnswer("`loss` is not the cross-entropy of `output` against `y` (apply it to the raw logits). "
                          f"{ON_GRADERS_VALUES} expected {float(expected):.6g}, found {float(loss):.6g}.")


# ---------------------------------------------------------------- Task 4


def near_attention_reference(found: torch.Tensor, situation: Situation, name: str) -> bool:
    """Within the relative tolerance plus ten times the float32 rounding of this step (references.attention_rounding)."""
    expected = references.attention(situation.given)[name]
    if not forms.check_is_tensor(found) or tuple(found.shape) != tuple(expected.shape):
        return False
    found64 = found.detach().to(torch.float64)
    slack = 1e-6 * max(1.0, float(expected.abs().max())) + 10 * references.attention_rounding(situation.given)[name]
    return bool(torch.isfinite(found64).all()) and bool((found64 - expected).abs().max() <= slack)


def check_against_attention_reference(record: AnswerRecord, situation: Situation, name: str, message: str) -> None:
    expected = references.attention(situation.given)[name]
    found = require_tensor(record, name, tuple(expected.shape))
    if not near_attention_reference(found, situation, name):
        raise WrongAnswer(f"{message} {ON_GRADERS_VALUES} expected {shown(expected)}, found {shown(found)}.")


def check_query(record: AnswerRecord, situation: Situation) -> None:
    check_against_attention_reference(record, situation, "Q", "`Q` is not the projection of `x_words` asked for "
                                      "(check which weight matrix and the order of the product).")


def check_key(record: AnswerRecord, situation: Situation) -> None:
    check_against_attention_reference(record, situation, "K", "`K` is not the projection of `x_words` asked for "
                                      "(check which weight matrix and the order of the product).")


def check_d_k(record: AnswerRecord, situation: Situation) -> None:
    expected = references.attention(situation.given)["d_k"]
    found = as_real_number(record, "d_k")
    if found != expected:
        raise WrongAnswer(f"`d_k` is {found:g}, which is not the key dimension (the number of columns of K).")


def check_scores(record: AnswerRecord, situation: Situation) -> None:
    check_against_attention_reference(record, situation, "scores",
                                      "`scores` is not Q Kᵀ (one row per query, one column per key).")


def check_scores_scaled(record: AnswerRecord, situation: Situation) -> None:
    check_against_attention_reference(record, situation, "scores_scaled",
                                      "`scores_scaled` is not `scores` scaled as in scaled dot-product attention.")


def check_variance_of(record: AnswerRecord, situation: Situation, name: str, source_name: str) -> None:
    found = as_real_number(record, name)
    candidates = [float(references.attention(situation.given)[key]) for key in (name, f"{name} population")]
    if not any(near_attention_reference(torch.tensor(found, dtype=torch.float64), situation, key)
               for key in (name, f"{name} population")):
        raise WrongAnswer(f"`{name}` is not the variance of all entries of `{source_name}`. {ON_GRADERS_VALUES} "
                          f"expected {candidates[0]:.6g} (or {candidates[1]:.6g} for the population variance), "
                          f"found {found:.6g}.")


def check_var_scores(record: AnswerRecord, situation: Situation) -> None:
    check_variance_of(record, situation, "var_scores", "scores")


def check_var_scores_scaled(record: AnswerRecord, situation: Situation) -> None:
    check_variance_of(record, situation, "var_scores_scaled", "scores_scaled")


def check_weights(record: AnswerRecord, situation: Situation) -> None:
    check_against_attention_reference(
        record, situation, "weights",
        "`weights` is not the softmax of `scores_scaled` over each row (each query's weights sum to 1).")


# ---------------------------------------------------------------- Task 5.1


def check_scenario(record: AnswerRecord, name: str, expected: str) -> None:
    value = require(record, name)
    if not isinstance(value, Text):
        raise WrongAnswer(f"`{name}` should be a string, found {type_name(value)}.")
    method = forms.check_method_name(value.value)
    if method is None:
        raise WrongAnswer(f"`{name}` = {value.value[:80]!r} does not name exactly one of \"GD\", \"SGD\", \"mini-batch GD\".")
    if method != expected:
        raise WrongAnswer(f"`{name}` = {value.value[:80]!r} is not the best fit for this scenario.")


def check_scenario_a(record: AnswerRecord, situation: Situation) -> None:
    check_scenario(record, "scenario_a", "mini-batch GD")


def check_scenario_b(record: AnswerRecord, situation: Situation) -> None:
    check_scenario(record, "scenario_b", "SGD")


# ---------------------------------------------------------------- registry

CHECKERS: dict[str, list[Part]] = {
    "squeeze_target": [
        Part("x has the target shape", 2, check_squeeze_shape),
        Part("x holds the values of x_start", 3, check_squeeze_values),
        Part("x is obtained with squeeze/unsqueeze", 1, check_squeeze_method),
    ],
    "bmm_x_shape": [Part("x_shape is the shape of x", 1, check_x_shape)],
    "bmm_d": [
        Part("d has the right shape for torch.bmm(x, d)", 3, check_d),
        Part("y = torch.bmm(x, d) has the target shape", 2, check_y),
    ],
    "embedding_sizes": [
        Part("vocab_size and embedding_dim", 2, check_embedding_sizes),
        Part("embedding_layer", 1, check_embedding_layer),
        Part("tokens", 1, check_tokens),
        Part("embedded_x = embedding_layer(tokens)", 1, check_embedded_x),
    ],
    "param_count": [Part("n_params", 1, check_param_count)],
    "net_model": [
        Part("Net has the layers of the model", 4, check_net_structure),
        Part("Net computes the model on a sequence of tokens", 6, check_net_forward),
        Part("Net works on a batch of token sequences", 2, check_net_forward_batched),
    ],
    "net_loss": [
        Part("model and output", 2, check_model_output),
        Part("loss_function", 2, check_loss_function),
        Part("loss", 2, check_loss),
    ],
    "attention_qk": [
        Part("Q", 1, check_query),
        Part("K", 1, check_key),
    ],
    "attention_scores": [
        Part("d_k", 1, check_d_k),
        Part("scores", 1, check_scores),
        Part("scores_scaled", 1, check_scores_scaled),
    ],
    "attention_variance": [
        Part("var_scores", 1, check_var_scores),
        Part("var_scores_scaled", 1, check_var_scores_scaled),
    ],
    "attention_softmax": [Part("weights", 1, check_weights)],
    "optimizer_choice": [
        Part("scenario a", 1, check_scenario_a),
        Part("scenario b", 1, check_scenario_b),
    ],
}


# ---------------------------------------------------------------- judging


def judge_record(grade_id: str, record: AnswerRecord, *, points: float, situation: Situation) -> Verdict:
    results = []
    for part in CHECKERS[grade_id]:
        try:
            part.check(record, situation)
        except WrongAnswer as wrong:
            results.append(PartResult(part.description, part.weight, False, str(wrong)))
        except Exception as error:  # an odd record must not crash grading: it earns nothing
            reason = f"could not be checked ({type(error).__name__})"
            results.append(PartResult(part.description, part.weight, False, reason))
        else:
            results.append(PartResult(part.description, part.weight, True, ""))
    total = sum(result.weight for result in results)
    earned = sum(result.weight for result in results if result.passed)
    return Verdict(grade_id, round(points * earned / total, 4), float(points), tuple(results))


def failed_verdict(grade_id: str, *, points: float, reason: str) -> Verdict:
    parts = tuple(PartResult(part.description, part.weight, False, reason) for part in CHECKERS[grade_id])
    return Verdict(grade_id, 0.0, float(points), parts)


def judge(grade_id: str, payloads: list[Any], *, points: float, situation: Situation) -> Verdict:
    """The verdict on a test cell from the answer records its run sent.

    A test cell's own recorder sends exactly one. Any other number means code
    other than the recorder sent records (or kept it from sending its own): the
    cell scores 0 with that reason, whatever the records hold, so extra records
    can never displace or outvote the real one.
    """
    if not payloads:
        return failed_verdict(grade_id, points=points, reason=NO_RECORD)
    if len(payloads) > 1:
        return failed_verdict(grade_id, points=points, reason=several_records(len(payloads)))
    # Grading runs one worker per core: torch's own threads would only fight
    # over the same cores (ten times slower under load, measured).
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    try:
        record = decode(payloads[0])
        if record.grade_id != grade_id:
            raise MalformedRecord("the answer record belongs to another cell")
    except (Exception, RecursionError, MemoryError) as error:  # whatever a forged record holds, it earns 0
        reason = str(error) if isinstance(error, MalformedRecord) else "the answer record cannot be read"
        return failed_verdict(grade_id, points=points, reason=f"{reason}, so it scores 0")
    return judge_record(grade_id, record, points=points, situation=situation)


def several_records(count: int) -> str:
    return (f"the cell sent {count} answer records, but its hidden test sends exactly one: code other than "
            "the test sent answers for the grader, so the cell scores 0")


def grade_namespace(grade_id: str, namespace: dict, *, points: float, challenge: int = 7,
                    given: GivenValues = SHEET) -> Verdict:
    """Record a namespace the way the kernel does and judge it: the fast path for tests."""
    from coursekit.recorder.collect import record

    payload = record(grade_id, dict(namespace), challenge=challenge)
    return judge(grade_id, [payload], points=points, situation=Situation(challenge=challenge, given=given))
