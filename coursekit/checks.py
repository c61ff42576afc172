"""The hidden tests of ex2, one checker per autograded answer cell.

A hidden test cell calls ``grade(<grade_id>, globals(), points=<cell points>)``
as its last line. The checker inspects the student's names, prints one line per
part (what passed, what failed and why, never the expected value) and returns
the points earned, which nbgrader reads as partial credit.

Design rules, each learned from wrong grades:
- Test behaviour, not appearance: models get fresh random weights from the test
  and are compared with an independent reference on fresh inputs; layers are
  located by what they compute (parameter shapes), not by attribute names.
- Nothing depends on the global random state or on how often a cell ran: the
  test draws from its own generator and never advances the student's one.
- Tolerances are tight (a rounded copy of printed output fails) and values the
  student could copy from the sheet must carry autograd provenance.
- Only exact, known types are trusted, so objects that fake ``==`` gain nothing.
- Student code called by a test may print anything, to stdout or stderr:
  it is captured, because nbgrader zeroes a test cell that writes to stderr.
"""
from __future__ import annotations

import ast
import contextlib
import io
import math
import numbers
import os
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

# The seed the locked cell above `squeeze_target` uses for `x_start`.
X_START_SEED = 0
# The hardened grader (coursekit.execution) hands each test cell a fresh secret
# in this variable and accepts only a score published with it under PROOF_KEY.
NONCE_NAME = "__coursekit_nonce__"
PROOF_KEY = "coursekit_proof"
TENSOR_TYPES = (torch.Tensor, nn.Parameter)


class WrongAnswer(Exception):
    """One part of an answer is wrong; the message tells the student why."""


@dataclass(frozen=True)
class Part:
    description: str
    weight: float
    check: Callable[[dict], None]


@dataclass(frozen=True)
class PartResult:
    description: str
    weight: float
    passed: bool
    reason: str


# ---------------------------------------------------------------- helpers


@contextlib.contextmanager
def quiet_student_code() -> Iterator[None]:
    """Swallow whatever student code prints or warns while a test calls it."""
    sink = io.StringIO()
    saved_fds = []
    try:
        for fd in (1, 2):
            try:
                sys.stdout.flush() if fd == 1 else sys.stderr.flush()
                saved_fds.append((fd, os.dup(fd)))
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, fd)
                os.close(devnull)
            except OSError:
                pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                yield
    finally:
        for fd, saved in saved_fds:
            os.dup2(saved, fd)
            os.close(saved)


def private_generator(seed: int = 1234) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def require_name(namespace: dict, name: str) -> Any:
    if name not in namespace:
        raise WrongAnswer(f"`{name}` is not defined; run your answer cell and check the spelling.")
    return namespace[name]


def require_tensor(namespace: dict, name: str, shape: tuple | None = None) -> torch.Tensor:
    value = require_name(namespace, name)
    if type(value) not in TENSOR_TYPES:
        raise WrongAnswer(f"`{name}` should be a torch.Tensor, found {type(value).__name__}.")
    if shape is not None and tuple(value.shape) != shape:
        raise WrongAnswer(f"`{name}` has shape {tuple(value.shape)}, which is not the shape asked for.")
    return value


def require_provenance(name: str, tensor: torch.Tensor) -> None:
    """Values the student could copy by hand must come out of a computation."""
    if tensor.grad_fn is None:
        raise WrongAnswer(
            f"`{name}` holds the right kind of numbers but was not computed from the given "
            "tensors (it has no computation history); compute it with torch operations."
        )


def same_values(found: torch.Tensor, expected: torch.Tensor, *, relative: float = 1e-6) -> bool:
    if tuple(found.shape) != tuple(expected.shape):
        return False
    found64 = found.detach().to(torch.float64)
    expected64 = expected.detach().to(torch.float64)
    if not bool(torch.isfinite(found64).all()):
        return False
    scale = max(1.0, float(expected64.abs().max())) if expected64.numel() else 1.0
    return bool(torch.allclose(found64, expected64, rtol=0.0, atol=relative * scale))


def as_real_number(name: str, value: Any) -> float:
    """A Python, NumPy or one-element torch number; anything else is refused."""
    if type(value) in TENSOR_TYPES:
        if value.numel() != 1:
            raise WrongAnswer(f"`{name}` should be a single number, found a tensor of shape {tuple(value.shape)}.")
        return float(value.detach().reshape(()).to(torch.float64))
    if type(value) in (float, int) or type(value).__module__ == "numpy" and isinstance(value, numbers.Real):
        return float(value)
    raise WrongAnswer(f"`{name}` should be a number, found {type(value).__name__}.")


def as_exact_int(name: str, value: Any) -> int:
    if type(value) is bool:
        raise WrongAnswer(f"`{name}` should be an int, found bool.")
    if type(value) is int:
        return value
    if type(value).__module__ == "numpy" and isinstance(value, numbers.Integral):
        return int(value)
    if type(value) in TENSOR_TYPES and value.numel() == 1 and not value.is_floating_point():
        return int(value.reshape(()).item())
    raise WrongAnswer(f"`{name}` should be an int, found {type(value).__name__}.")


def call_student(description: str, function: Callable, *args: Any) -> Any:
    try:
        with quiet_student_code():
            return function(*args)
    except BaseException as error:  # also SystemExit & co: student code must not cut a test short
        raise WrongAnswer(f"{description} raised {type(error).__name__}: {error}") from None


# ---------------------------------------------------------------- Task 1.1


def original_x_start() -> torch.Tensor:
    return torch.randn(3, 1, 4, 1, generator=private_generator(X_START_SEED))


def check_squeeze_shape(namespace: dict) -> None:
    require_tensor(namespace, "x", (1, 3, 4, 1, 1))


def check_squeeze_values(namespace: dict) -> None:
    x = require_tensor(namespace, "x")
    if not torch.equal(x.detach().reshape(-1), original_x_start().reshape(-1)):
        raise WrongAnswer(
            "`x` does not hold exactly the values of `x_start` in their original order; "
            "build it from `x_start` instead of creating or typing a new tensor."
        )


def latest_cell_assigning(namespace: dict, name: str) -> str | None:
    """The source of the most recent executed cell that assigns `name` (IPython only)."""
    history = namespace.get("In")
    if not isinstance(history, list):
        return None
    for source in reversed(history[:-1]):
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, TypeError):
            continue
        for node in ast.walk(tree):
            targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets if t is not None):
                return source
    return None


def check_squeeze_method(namespace: dict) -> None:
    check_squeeze_shape(namespace)
    check_squeeze_values(namespace)
    source = latest_cell_assigning(namespace, "x")
    if source is not None and "squeeze" not in source:
        raise WrongAnswer("the task asks for `squeeze`/`unsqueeze`; your cell reaches the shape another way.")


# ---------------------------------------------------------------- Task 1.2


def bmm_product(namespace: dict) -> torch.Tensor:
    a = require_tensor(namespace, "a", (64, 128, 256))
    b = require_tensor(namespace, "b", (64, 256, 512))
    x = require_tensor(namespace, "x", (64, 128, 512))
    if not same_values(x, torch.bmm(a, b), relative=1e-5):
        raise WrongAnswer("`x` no longer holds `torch.bmm(a, b)`; do not overwrite the given `x`.")
    return x


def check_x_shape(namespace: dict) -> None:
    value = require_name(namespace, "x_shape")
    if type(value) not in (tuple, list, torch.Size):
        raise WrongAnswer(f"`x_shape` should be a tuple, list or torch.Size, found {type(value).__name__}.")
    entries = [as_exact_int("each entry of x_shape", entry) for entry in value]
    if entries != [64, 128, 512]:
        raise WrongAnswer(f"`x_shape` is {tuple(entries)}, which is not the shape of `x = torch.bmm(a, b)`.")


def check_d(namespace: dict) -> None:
    d = require_tensor(namespace, "d", (64, 512, 9))
    if d.dtype != torch.float32:
        raise WrongAnswer(f"`d` has dtype {d.dtype}; `torch.bmm(x, d)` needs the dtype of `x`.")


def check_y(namespace: dict) -> None:
    x = bmm_product(namespace)
    d = require_tensor(namespace, "d", (64, 512, 9))
    y = require_tensor(namespace, "y", (64, 128, 9))
    if not same_values(y, torch.bmm(x.detach(), d.detach()), relative=1e-5):
        raise WrongAnswer("`y` is not `torch.bmm(x, d)` for your `d`.")


# ---------------------------------------------------------------- Task 1.3


def check_embedding_sizes(namespace: dict) -> None:
    vocab_size = as_exact_int("vocab_size", require_name(namespace, "vocab_size"))
    embedding_dim = as_exact_int("embedding_dim", require_name(namespace, "embedding_dim"))
    if (vocab_size, embedding_dim) != (10, 5):
        raise WrongAnswer("`vocab_size` or `embedding_dim` does not match the description in the comment.")


def embedding_layer_of(namespace: dict) -> nn.Embedding:
    layer = require_name(namespace, "embedding_layer")
    if not isinstance(layer, nn.Embedding) or type(layer).forward is not nn.Embedding.forward:
        raise WrongAnswer(f"`embedding_layer` should be an nn.Embedding, found {type(layer).__name__}.")
    if (layer.num_embeddings, layer.embedding_dim) != (10, 5):
        raise WrongAnswer("`embedding_layer` was not built as nn.Embedding(vocab_size, embedding_dim).")
    return layer


def check_embedding_layer(namespace: dict) -> None:
    embedding_layer_of(namespace)


def check_tokens(namespace: dict) -> None:
    tokens = require_tensor(namespace, "tokens", (5,))
    if tokens.dtype != torch.int64 or tokens.tolist() != [1, 3, 5, 7, 9]:
        raise WrongAnswer("`tokens` should be the LongTensor of the token ids 1, 3, 5, 7, 9.")


def check_embedded_x(namespace: dict) -> None:
    layer = embedding_layer_of(namespace)
    tokens = require_tensor(namespace, "tokens")
    embedded_x = require_tensor(namespace, "embedded_x", (5, 5))
    if tokens.dtype != torch.int64 or not same_values(embedded_x, F.embedding(tokens, layer.weight.detach())):
        raise WrongAnswer("`embedded_x` is not `embedding_layer(tokens)`.")


# ---------------------------------------------------------------- Task 2


def check_param_count(namespace: dict) -> None:
    n_params = as_exact_int("n_params", require_name(namespace, "n_params"))
    if n_params != 236 * 472 + 472 * 472 + 472 * 10:
        raise WrongAnswer(
            "`n_params` is not the number of weights: count one weight per connection between "
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


def build_net(namespace: dict) -> nn.Module:
    net_class = require_name(namespace, "Net")
    if not (isinstance(net_class, type) and issubclass(net_class, nn.Module)):
        raise WrongAnswer("`Net` should be a class derived from nn.Module.")
    with torch.random.fork_rng(devices=[]):
        model = call_student("`Net()`", net_class)
    if not isinstance(model, nn.Module):
        raise WrongAnswer("`Net()` did not return an nn.Module.")
    return model


def net_parameters_by_role(model: nn.Module) -> dict[str, nn.Parameter]:
    by_role: dict[str, nn.Parameter] = {}
    unexpected = []
    for name, parameter in model.named_parameters():
        role = next((r for r, shapes in NET_ROLES.items() if tuple(parameter.shape) in shapes), None)
        if role is None or role in by_role:
            unexpected.append(f"{name} {tuple(parameter.shape)}")
        else:
            by_role[role] = parameter
    missing = [role for role in NET_ROLES if role not in by_role]
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if unexpected:
        problems.append("not part of the model equations: " + ", ".join(unexpected))
    if problems:
        raise WrongAnswer("the parameters of `Net()` do not match the model (" + "; ".join(problems) + ").")
    return by_role


def check_net_structure(namespace: dict) -> None:
    net_parameters_by_role(build_net(namespace))


def apply_matrix(parameter: torch.Tensor, inputs: torch.Tensor, in_features: int) -> torch.Tensor:
    """Multiply by a parameter whichever way round it is stored."""
    return inputs @ (parameter if parameter.shape[0] == in_features else parameter.T)


def reference_logits(roles: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    embedding = roles["embedding E (8 x 6)"]
    table = embedding if tuple(embedding.shape) == (8, 6) else embedding.T
    e = table[tokens]
    h = torch.relu(apply_matrix(roles["weight of W (6 -> 10)"], e, 6) + roles["bias b_W (10)"])
    return apply_matrix(roles["weight of U (10 -> 4)"], h, 10) + roles["bias b_U (4)"]


def check_net_forward_on(namespace: dict, token_shape: tuple[int, ...]) -> None:
    model = build_net(namespace)
    try:
        roles = net_parameters_by_role(model)
    except WrongAnswer:
        raise WrongAnswer("not checked until the layers of `Net` match the model.") from None
    generator = private_generator(len(token_shape))
    fresh = {role: torch.randn(p.shape, generator=generator, dtype=p.dtype) for role, p in roles.items()}
    with torch.no_grad():
        for role, parameter in roles.items():
            parameter.copy_(fresh[role])
    tokens = torch.randint(0, 8, token_shape, generator=generator)
    found = call_student(f"`Net()(tokens)` for tokens of shape {token_shape}", model, tokens)
    if type(found) not in TENSOR_TYPES:
        raise WrongAnswer(f"`Net()(tokens)` should return a tensor, found {type(found).__name__}.")
    expected = reference_logits(fresh, tokens)
    if tuple(found.shape) != tuple(expected.shape):
        raise WrongAnswer(
            f"for tokens of shape {token_shape}, `Net()(tokens)` has shape {tuple(found.shape)}; "
            "expected one row of 4 logits per token."
        )
    if not same_values(found, expected, relative=1e-5):
        raise WrongAnswer(
            f"with weights set by the test, `Net()(tokens)` for tokens of shape {token_shape} does not "
            "compute z = U ReLU(W E x + b_W) + b_U (check the order of layers, the activation, and "
            "that the output is raw logits)."
        )


def check_net_forward(namespace: dict) -> None:
    check_net_forward_on(namespace, (4,))


def check_net_forward_batched(namespace: dict) -> None:
    check_net_forward_on(namespace, (3, 5))


GIVEN_X = [1, 2, 3, 7]
GIVEN_Y = [1, 0, 1, 3]


def check_model_output(namespace: dict) -> None:
    net_class = require_name(namespace, "Net")
    model = require_name(namespace, "model")
    if not (isinstance(net_class, type) and isinstance(model, net_class)):
        raise WrongAnswer("`model` should be an instance of your `Net`.")
    X = require_tensor(namespace, "X")
    output = require_tensor(namespace, "output", (4, 4))
    if X.tolist() != GIVEN_X:
        raise WrongAnswer("the given `X` was changed; do not overwrite it.")
    with torch.random.fork_rng(devices=[]):
        first = call_student("`model(X)`", model, X.detach().clone())
        second = call_student("`model(X)`", model, X.detach().clone())
    if type(first) not in TENSOR_TYPES or type(second) not in TENSOR_TYPES:
        raise WrongAnswer("`model(X)` does not return a tensor.")
    if not same_values(first, second, relative=1e-5):
        # Net itself is wrong (graded in Task 3.1); what is left to check here is
        # that `output` came out of the model.
        require_provenance("output", output)
        return
    if not same_values(output, first, relative=1e-5):
        raise WrongAnswer("`output` is not `model(X)`.")


def check_loss_function(namespace: dict) -> None:
    loss_function = require_name(namespace, "loss_function")
    if not callable(loss_function):
        raise WrongAnswer("`loss_function` should be callable, like a loss module from torch.nn.")
    generator = private_generator(7)
    logits = torch.randn(6, 4, generator=generator) * 3
    targets = torch.randint(0, 4, (6,), generator=generator)
    found = call_student("`loss_function(logits, targets)`", loss_function, logits, targets)
    if type(found) not in TENSOR_TYPES or found.numel() != 1 or not same_values(
        found.reshape(()), F.cross_entropy(logits, targets)
    ):
        raise WrongAnswer("`loss_function` does not compute the (mean) cross-entropy of raw logits and class labels.")


def check_loss(namespace: dict) -> None:
    output = require_tensor(namespace, "output", (4, 4))
    y = require_tensor(namespace, "y")
    loss = require_tensor(namespace, "loss")
    if y.tolist() != GIVEN_Y:
        raise WrongAnswer("the given `y` was changed; do not overwrite it.")
    if loss.numel() != 1 or loss.dim() != 0:
        raise WrongAnswer(f"`loss` should be a scalar tensor, found shape {tuple(loss.shape)}.")
    require_provenance("loss", loss)
    if not same_values(loss, F.cross_entropy(output.detach(), y)):
        raise WrongAnswer("`loss` is not the cross-entropy of `output` against `y` (apply it to the raw logits).")


# ---------------------------------------------------------------- Task 4

GIVEN_WQ = [[0.5, 2.0], [3.0, 1.5]]
GIVEN_WK = [[1.0, 0.4], [0.6, 1.2]]
GIVEN_WORDS = [[1.0, 2.0], [2.0, 1.0], [1.5, 1.5]]


def attention_inputs(namespace: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    given = {"x_words": GIVEN_WORDS, "Wq": GIVEN_WQ, "Wk": GIVEN_WK}
    for name, values in given.items():
        tensor = require_tensor(namespace, name)
        if tuple(tensor.shape) != tuple(torch.tensor(values).shape) or not torch.equal(
            tensor.detach(), torch.tensor(values)
        ):
            raise WrongAnswer(f"the given `{name}` was changed; do not overwrite it.")
    return tuple(torch.tensor(given[name]) for name in ("x_words", "Wq", "Wk"))


def check_projection(namespace: dict, name: str, weight_index: int) -> None:
    inputs = attention_inputs(namespace)
    found = require_tensor(namespace, name, (3, 2))
    require_provenance(name, found)
    if not same_values(found, inputs[0] @ inputs[weight_index]):
        raise WrongAnswer(f"`{name}` is not the projection of `x_words` asked for (check which weight matrix and the order of the product).")


def check_query(namespace: dict) -> None:
    check_projection(namespace, "Q", 1)


def check_key(namespace: dict) -> None:
    check_projection(namespace, "K", 2)


def check_d_k(namespace: dict) -> None:
    if as_real_number("d_k", require_name(namespace, "d_k")) != 2:
        raise WrongAnswer("`d_k` is not the key dimension (the number of columns of K).")


def check_scores(namespace: dict) -> None:
    Q = require_tensor(namespace, "Q", (3, 2))
    K = require_tensor(namespace, "K", (3, 2))
    scores = require_tensor(namespace, "scores", (3, 3))
    require_provenance("scores", scores)
    if not same_values(scores, Q.detach() @ K.detach().T):
        raise WrongAnswer("`scores` is not Q Kᵀ (one row per query, one column per key).")


def check_scores_scaled(namespace: dict) -> None:
    scores = require_tensor(namespace, "scores", (3, 3))
    scores_scaled = require_tensor(namespace, "scores_scaled", (3, 3))
    require_provenance("scores_scaled", scores_scaled)
    if not same_values(scores_scaled, scores.detach() / math.sqrt(2)):
        raise WrongAnswer("`scores_scaled` is not `scores` scaled as in scaled dot-product attention.")


def check_variance_of(namespace: dict, name: str, source_name: str) -> None:
    source = require_tensor(namespace, source_name, (3, 3)).detach().to(torch.float64)
    found = as_real_number(name, require_name(namespace, name))
    for unbiased in (True, False):
        expected = float(source.var(unbiased=unbiased))
        if abs(found - expected) <= 1e-6 * max(1.0, abs(expected)):
            return
    raise WrongAnswer(f"`{name}` is not the variance of all entries of `{source_name}`.")


def check_var_scores(namespace: dict) -> None:
    check_variance_of(namespace, "var_scores", "scores")


def check_var_scores_scaled(namespace: dict) -> None:
    check_variance_of(namespace, "var_scores_scaled", "scores_scaled")


def check_weights(namespace: dict) -> None:
    scores_scaled = require_tensor(namespace, "scores_scaled", (3, 3))
    weights = require_tensor(namespace, "weights", (3, 3))
    require_provenance("weights", weights)
    if not same_values(weights, torch.softmax(scores_scaled.detach().to(torch.float64), dim=1)):
        raise WrongAnswer("`weights` is not the softmax of `scores_scaled` over each row (each query's weights sum to 1).")


# ---------------------------------------------------------------- Task 5.1

OPTIMIZER_SYNONYMS = {
    "GD": {"gd", "gradient descent", "batch gd", "batch gradient descent", "full batch gd",
           "full batch gradient descent", "vanilla gradient descent", "vanilla gd"},
    "SGD": {"sgd", "stochastic gradient descent", "stochastic gd", "online gradient descent",
            "online sgd", "online gd"},
    "mini-batch GD": {"mini batch gd", "mini batch gradient descent", "mini batch sgd",
                      "mini batch stochastic gradient descent", "mbgd", "mini batch"},
}


def normalize_optimizer(text: str) -> str | None:
    words = re.sub(r"[\s_\-./]+", " ", text.strip().lower()).strip()
    words = re.sub(r"\bminibatch\b", "mini batch", words)
    for method, spellings in OPTIMIZER_SYNONYMS.items():
        if words in spellings:
            return method
    return None


def check_scenario(namespace: dict, name: str, expected: str) -> None:
    value = require_name(namespace, name)
    if type(value) is not str:
        raise WrongAnswer(f"`{name}` should be a string, found {type(value).__name__}.")
    method = normalize_optimizer(value)
    if method is None:
        raise WrongAnswer(f"`{name}` = {value!r} is not one of \"GD\", \"SGD\", \"mini-batch GD\".")
    if method != expected:
        raise WrongAnswer(f"`{name}` = {value!r} is not the best fit for this scenario.")


def check_scenario_a(namespace: dict) -> None:
    check_scenario(namespace, "scenario_a", "mini-batch GD")


def check_scenario_b(namespace: dict) -> None:
    check_scenario(namespace, "scenario_b", "SGD")


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


# ---------------------------------------------------------------- repairs
#
# When an answer is wrong, the names it should have defined are set right
# after its test cell, so that later cells that build on them are graded on
# their own merit (error carried forward), not failed a second time.


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


def ipython_shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def repair_after_cell(shell: Any, grade_id: str, namespace: dict) -> None:
    """Repair once the whole test cell has run, so its visible checks still see the student's values."""

    def repair(*_: Any) -> None:
        shell.events.unregister("post_run_cell", repair)
        try:
            REPAIRS[grade_id](namespace)
        except Exception:  # a repair that cannot run leaves the student's state as it was
            pass

    shell.events.register("post_run_cell", repair)


def run_parts(grade_id: str, namespace: dict) -> list[PartResult]:
    results = []
    for part in CHECKERS[grade_id]:
        try:
            part.check(namespace)
        except WrongAnswer as wrong:
            results.append(PartResult(part.description, part.weight, False, str(wrong)))
        except Exception as error:  # a bug exposed by an odd answer must not crash the cell
            reason = f"could not be checked ({type(error).__name__}: {error})"
            results.append(PartResult(part.description, part.weight, False, reason))
        else:
            results.append(PartResult(part.description, part.weight, True, ""))
    return results


def grade(grade_id: str, namespace: dict, *, points: float) -> float | None:
    """Print one line per part and publish the points earned as nbgrader's partial credit.

    The hidden tests run first in their cell, so the score is published at once
    as the cell's result (nbgrader reads the first result or error of a test
    cell): a visible check failing later in the cell then costs nothing extra.
    Outside IPython the score is returned instead.
    """
    nonce = namespace.pop(NONCE_NAME, None)
    shell = ipython_shell()
    # Taken before any student code runs in this cell, while the kernel is pristine.
    restore_kernel = getattr(getattr(shell, "kernel", None), "restore_pristine_state", None)
    results = run_parts(grade_id, namespace)
    if restore_kernel is not None:
        restore_kernel()  # undo whatever the student code the checks called has patched
    total_weight = sum(result.weight for result in results)
    earned_weight = sum(result.weight for result in results if result.passed)
    for result in results:
        mark = "passed" if result.passed else "FAILED"
        line = f"[{mark}] {result.description}"
        print(line if result.passed else f"{line}: {result.reason}")
    score = round(points * earned_weight / total_weight, 4)
    if shell is None:
        return score
    if earned_weight < total_weight and grade_id in REPAIRS:
        repair_after_cell(shell, grade_id, namespace)
    if nonce is None:
        shell.displayhook(score)
    else:
        from IPython.display import publish_display_data

        publish_display_data({"text/plain": f"score: {score:g} of {points:g}"},
                             metadata={PROOF_KEY: {"nonce": nonce, "score": score}})
    return None
