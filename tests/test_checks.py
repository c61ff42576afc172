"""The hidden checks called directly on namespaces: fast, no kernel."""
import math

import pytest
import torch
import torch.nn as nn

from coursekit import checks


def attention_namespace():
    Wq = torch.tensor([[0.5, 2.0], [3.0, 1.5]], requires_grad=True)
    Wk = torch.tensor([[1.0, 0.4], [0.6, 1.2]], requires_grad=True)
    x_words = torch.tensor([[1.0, 2.0], [2.0, 1.0], [1.5, 1.5]])
    Q, K = x_words @ Wq, x_words @ Wk
    scores = Q @ K.T
    return dict(Wq=Wq, Wk=Wk, x_words=x_words, Q=Q, K=K, d_k=2, scores=scores,
                scores_scaled=scores / math.sqrt(2), var_scores=scores.var(),
                var_scores_scaled=(scores / math.sqrt(2)).var())


@pytest.mark.parametrize("text, method", [
    ("GD", "GD"), ("gradient descent", "GD"), ("Batch Gradient Descent", "GD"),
    ("SGD", "SGD"), (" stochastic-gradient-descent ", "SGD"),
    ("mini-batch GD", "mini-batch GD"), ("Mini_Batch gradient descent", "mini-batch GD"),
    ("minibatch GD", "mini-batch GD"), ("mini batch sgd", "mini-batch GD"),
    ("Adam", None), ("", None), ("mini", None),
])
def test_optimizer_names_are_normalized(text, method):
    assert checks.normalize_optimizer(text) == method


def test_grade_returns_points_and_prints_one_line_per_part(capsys):
    points = checks.grade("attention_qk", attention_namespace(), points=3)
    assert points == 3.0
    assert capsys.readouterr().out.count("[passed]") == 2


def test_partial_credit_when_one_part_is_wrong(capsys):
    namespace = attention_namespace()
    namespace["K"] = namespace["x_words"] @ namespace["Wq"]
    assert checks.grade("attention_qk", namespace, points=3) == 1.5
    output = capsys.readouterr().out
    assert "[FAILED] K" in output and "[passed] Q" in output


def test_missing_names_are_reported_not_raised(capsys):
    assert checks.grade("net_model", {}, points=12) == 0.0
    assert "`Net` is not defined" in capsys.readouterr().out


class AlwaysEqual:
    def __eq__(self, other):
        return True

    def __float__(self):
        return 2.0


def test_objects_that_fake_equality_get_nothing():
    namespace = attention_namespace()
    namespace.update(d_k=AlwaysEqual(), var_scores=AlwaysEqual())
    assert checks.grade("attention_scores", namespace, points=3) == 2.0
    assert checks.grade("attention_variance", namespace, points=2) == 1.0
    assert checks.grade("param_count", {"n_params": AlwaysEqual()}, points=5) == 0.0
    assert checks.grade("bmm_x_shape", {"x_shape": [AlwaysEqual()] * 3}, points=3) == 0.0


def test_tensor_subclasses_are_refused():
    class Sneaky(torch.Tensor):
        pass

    namespace = attention_namespace()
    namespace["Q"] = namespace["Q"].as_subclass(Sneaky)
    assert checks.grade("attention_qk", namespace, points=2) == 1.0


def test_checks_do_not_touch_the_global_random_state():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.E, self.W, self.U = nn.Embedding(8, 6), nn.Linear(6, 10), nn.Linear(10, 4)

        def forward(self, tokens):
            return self.U(torch.relu(self.W(self.E(tokens))))

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    assert checks.grade("net_model", {"Net": Net}, points=12) == 12.0
    assert torch.equal(torch.rand(3), expected)


def test_student_output_during_checks_is_captured(capfd):
    import sys

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.E, self.W, self.U = nn.Embedding(8, 6), nn.Linear(6, 10), nn.Linear(10, 4)

        def forward(self, tokens):
            print("noise", file=sys.stderr)
            return self.U(torch.relu(self.W(self.E(tokens))))

    assert checks.grade("net_model", {"Net": Net}, points=12) == 12.0
    assert "noise" not in capfd.readouterr().err


def test_every_contract_cell_has_a_checker():
    contract = {"squeeze_target", "bmm_x_shape", "bmm_d", "embedding_sizes", "param_count", "net_model",
                "net_loss", "attention_qk", "attention_scores", "attention_variance", "attention_softmax",
                "optimizer_choice"}
    assert set(checks.CHECKERS) == contract
