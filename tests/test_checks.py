"""The judge on answers recorded the way the kernel records them: fast, no kernel.

`checks.grade_namespace` runs the kernel's recorder (coursekit.recorder.collect) on a
namespace, sends the record through the wire format and judges it, exactly
as the grading process does with a record from a kernel.
"""
import math

import numpy
import pytest
import torch
import torch.nn as nn

from coursekit.exercise import checks
from coursekit.exercise.given import SHEET, draw
from coursekit.protocol import decode
from coursekit.recorder import collect
from coursekit.recorder.wire import MAX_RECORD_CHARS, encode


def attention_namespace():
    Wq = torch.tensor([[0.5, 2.0], [3.0, 1.5]], requires_grad=True)
    Wk = torch.tensor([[1.0, 0.4], [0.6, 1.2]], requires_grad=True)
    x_words = torch.tensor([[1.0, 2.0], [2.0, 1.0], [1.5, 1.5]])
    Q, K = x_words @ Wq, x_words @ Wk
    scores = Q @ K.T
    return dict(Wq=Wq, Wk=Wk, x_words=x_words, Q=Q, K=K, d_k=2, scores=scores,
                scores_scaled=scores / math.sqrt(2), var_scores=scores.var(),
                var_scores_scaled=(scores / math.sqrt(2)).var())


class RightNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.E, self.W, self.U = nn.Embedding(8, 6), nn.Linear(6, 10), nn.Linear(10, 4)

    def forward(self, tokens):
        return self.U(torch.relu(self.W(self.E(tokens))))


def score(grade_id, namespace, points, challenge=7):
    return checks.grade_namespace(grade_id, namespace, points=points, challenge=challenge).score


@pytest.mark.parametrize("text, method", [
    ("GD", "GD"), ("gradient descent", "GD"), ("Batch Gradient Descent", "GD"), ("G.D.", "GD"),
    ("SGD", "SGD"), (" stochastic-gradient-descent ", "SGD"), ("SGD.", "SGD"), ("S.G.D.", "SGD"),
    ("the SGD", "SGD"), ("a stochastic gradient descent.", "SGD"), ("Stochastic Gradient Descent (SGD)", "SGD"),
    ("mini-batch GD", "mini-batch GD"), ("Mini_Batch gradient descent", "mini-batch GD"),
    ("minibatch GD", "mini-batch GD"), ("mini batch sgd", "mini-batch GD"), ("'Mini-batch GD'", "mini-batch GD"),
    ("the mini-batch G.D.", "mini-batch GD"), ("Mini-batch gradient descent (mini-batch GD).", "mini-batch GD"),
    ("Adam", None), ("", None), ("mini", None), ("SGD or mini-batch GD", None), ("GD, SGD", None),
    ("not GD", None), ("SGD (mini-batch GD)", None), ("SGD (online learning)", "SGD"),
    ("SGD, because each point is processed as it arrives", "SGD"), ("mini-batch GD, not SGD", None),
    ("Full-batch", "GD"), ("stochastic mini-batch gradient descent", "mini-batch GD"), ("batch", None),
])
def test_method_names_are_normalized(text, method):
    assert checks.forms.check_method_name(text) == method


def test_verdict_has_points_and_one_line_per_part():
    verdict = checks.grade_namespace("attention_qk", attention_namespace(), points=3)
    assert verdict.score == 3.0 and verdict.full_marks
    assert verdict.lines() == ["[passed] Q", "[passed] K"]


def test_partial_credit_when_one_part_is_wrong():
    namespace = attention_namespace()
    namespace["K"] = namespace["x_words"] @ namespace["Wq"]
    verdict = checks.grade_namespace("attention_qk", namespace, points=3)
    assert verdict.score == 1.5
    assert verdict.lines()[0] == "[passed] Q" and verdict.lines()[1].startswith("[FAILED] K: ")


def test_missing_names_are_reported_not_raised():
    verdict = checks.grade_namespace("net_model", {}, points=12)
    assert verdict.score == 0.0
    assert "`Net` is not defined" in verdict.lines()[0]


class AlwaysEqual:
    def __eq__(self, other):
        return True

    def __float__(self):
        return 2.0

    def __index__(self):
        return 64


def test_objects_that_fake_equality_get_nothing():
    namespace = attention_namespace()
    namespace.update(d_k=AlwaysEqual(), var_scores=AlwaysEqual())
    assert score("attention_scores", namespace, 3) == 2.0
    assert score("attention_variance", namespace, 2) == 1.0
    assert score("param_count", {"n_params": AlwaysEqual()}, 5) == 0.0
    assert score("bmm_x_shape", {"x_shape": [AlwaysEqual()] * 3}, 3) == 0.0


def test_tensor_subclasses_are_refused():
    class Sneaky(torch.Tensor):
        pass

    namespace = attention_namespace()
    namespace["Q"] = namespace["Q"].as_subclass(Sneaky)
    assert score("attention_qk", namespace, 2) == 1.0


def test_references_come_from_the_given_values_not_from_the_record():
    # A consistent set of wrong values (Q and K of zeros, scores from them) earns
    # nothing: the judge recomputes Q Kᵀ from the given matrices.
    zeros = torch.zeros(3, 2, requires_grad=True) * 1
    namespace = dict(Q=zeros, K=zeros, d_k=2, scores=zeros @ zeros.T, scores_scaled=(zeros @ zeros.T) / math.sqrt(2))
    assert score("attention_qk", namespace, 2) == 0.0
    assert score("attention_scores", namespace, 3) == 1.0  # only d_k
    assert score("attention_softmax", {"weights": torch.softmax(namespace["scores_scaled"], dim=1)}, 2) == 0.0


def test_computed_values_count_however_they_were_computed():
    """Detached, under no_grad or inference_mode, in float64: computed from the given values is right."""
    namespace = attention_namespace()
    with torch.no_grad():
        Q = namespace["x_words"] @ namespace["Wq"]
    with torch.inference_mode():
        K = namespace["x_words"] @ namespace["Wk"]
    assert score("attention_qk", {"Q": Q, "K": K.clone()}, 2) == 2.0
    assert score("attention_qk", {"Q": namespace["Q"].detach().double(), "K": namespace["K"].detach()}, 2) == 2.0
    assert score("attention_variance", {"var_scores": namespace["var_scores"].item(),
                                        "var_scores_scaled": numpy.float64(namespace["var_scores_scaled"].item())}, 2) == 2.0


def test_values_copied_from_the_sheet_are_wrong_on_the_graders_values():
    """On drawn values, the sheet's numbers (pasted at full precision) earn nothing; computing from the given does."""
    drawn = draw(secret=b"s" * 32, team="alice", submission="first upload")
    sheet = attention_namespace()
    Wq, Wk, words = (torch.tensor(v, requires_grad=grad) for v, grad in
                     ((drawn.Wq, True), (drawn.Wk, True), (drawn.x_words, False)))
    computed = {"Q": words @ Wq, "K": words @ Wk}
    pasted = {"Q": torch.tensor(sheet["Q"].tolist()), "K": torch.tensor(sheet["K"].tolist())}
    assert checks.grade_namespace("attention_qk", computed, points=2, given=drawn).score == 2.0
    assert checks.grade_namespace("attention_qk", pasted, points=2, given=drawn).score == 0.0
    assert checks.grade_namespace("attention_qk", pasted, points=2, given=SHEET).score == 2.0
    scores = computed["Q"] @ computed["K"].T
    variances = {"var_scores": scores.var().item(), "var_scores_scaled": (scores / math.sqrt(2)).var().item()}
    assert checks.grade_namespace("attention_variance", variances, points=2, given=drawn).score == 2.0
    pasted_variances = {"var_scores": sheet["var_scores"].item(), "var_scores_scaled": sheet["var_scores_scaled"].item()}
    assert checks.grade_namespace("attention_variance", pasted_variances, points=2, given=drawn).score == 0.0


def test_net_is_judged_on_the_challenge_and_any_form_passes():
    class Sequential(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleDict({"emb": nn.Embedding(8, 6), "hidden": nn.Sequential(nn.Linear(6, 10), nn.ReLU()),
                                         "out": nn.Linear(10, 4)})

        def forward(self, tokens):
            return self.layers["out"](self.layers["hidden"](self.layers["emb"](tokens)))

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.E = nn.Parameter(torch.randn(8, 6))
            self.W, self.b_W = nn.Parameter(torch.randn(6, 10)), nn.Parameter(torch.zeros(10))
            self.U, self.b_U = nn.Parameter(torch.randn(10, 4)), nn.Parameter(torch.zeros(4))

        def forward(self, tokens):
            return torch.nn.functional.relu(self.E[tokens] @ self.W + self.b_W) @ self.U + self.b_U

    for challenge in (1, 2, 99):
        for net in (RightNet, Sequential, Functional):
            assert score("net_model", {"Net": net}, 12, challenge) == 12.0, (net.__name__, challenge)


def test_a_net_without_relu_or_with_softmax_output_is_caught():
    class NoRelu(RightNet):
        def forward(self, tokens):
            return self.U(self.W(self.E(tokens)))

    class Softmaxed(RightNet):
        def forward(self, tokens):
            return torch.softmax(super().forward(tokens), dim=-1)

    assert score("net_model", {"Net": NoRelu}, 12) == 4.0
    assert score("net_model", {"Net": Softmaxed}, 12) == 4.0


def test_outputs_prepared_for_another_challenge_fail():
    """A record whose Net outputs were computed for one challenge is judged against another."""
    payload = collect.record("net_model", {"Net": RightNet}, challenge=1)
    verdict = checks.judge("net_model", [payload], points=12, situation=checks.Situation(challenge=2))
    assert verdict.score == 4.0  # the layers are right, the outputs are not this challenge's


def test_checks_do_not_touch_the_global_random_state():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    assert score("net_model", {"Net": RightNet}, 12) == 12.0
    assert torch.equal(torch.rand(3), expected)


def test_student_output_during_recording_is_captured(capfd):
    import sys

    class Noisy(RightNet):
        def forward(self, tokens):
            print("noise", file=sys.stderr)
            return super().forward(tokens)

    assert score("net_model", {"Net": Noisy}, 12) == 12.0
    assert "noise" not in capfd.readouterr().err


def test_squeeze_values_must_be_exactly_x_start():
    torch.manual_seed(0)
    x_start = torch.randn(3, 1, 4, 1)
    right = x_start.squeeze(1).unsqueeze(0).unsqueeze(-1)
    assert score("squeeze_target", {"x": right}, 6) == 6.0
    assert score("squeeze_target", {"x": right.permute(0, 1, 2, 4, 3)}, 6) == 6.0  # a non-contiguous view
    assert score("squeeze_target", {"x": torch.round(right * 1e4) / 1e4}, 6) == 2.0
    assert score("squeeze_target", {"x": right.to(torch.float64)}, 6) == 6.0


def test_bmm_y_is_checked_against_the_given_x():
    torch.manual_seed(1)
    a, b = torch.randn(64, 128, 256), torch.randn(64, 256, 512)
    x = torch.bmm(a, b)
    d = torch.randn(64, 512, 9)
    assert score("bmm_d", {"d": d, "y": torch.bmm(x, d), "x": x}, 5) == 5.0
    fake_x = torch.zeros(64, 128, 512)
    assert score("bmm_d", {"d": d, "y": torch.bmm(fake_x, d), "x": fake_x}, 5) == 3.0


def test_loss_function_is_judged_on_the_challenge():
    namespace = {"loss_function": nn.CrossEntropyLoss()}
    verdict = checks.grade_namespace("net_loss", namespace, points=6)
    assert verdict.parts[1].passed
    namespace = {"loss_function": nn.NLLLoss()}
    assert not checks.grade_namespace("net_loss", namespace, points=6).parts[1].passed


@pytest.mark.parametrize("payload", [
    None, [], "text", {"format": 1}, {"format": 2, "grade_id": "param_count", "values": {}, "tensors": ""},
    {"format": 1, "grade_id": "param_count", "values": {"n_params": {"kind": "number", "value": "1e400x"}}, "tensors": ""},
    {"format": 1, "grade_id": "param_count", "values": {"n_params": {"kind": "tensor", "key": "t0", "dtype": "torch.float32",
     "shape": [2], "requires_grad": False, "is_parameter": False}}, "tensors": "!!notbase64"},
    {"format": 1, "grade_id": "param_count", "values": {"n_params": {"kind": "sequence", "type": "list", "items": [[[[[]]]]]}}},
    {"format": 1, "grade_id": "bmm_x_shape", "values": {"x_shape": {"kind": "number", "type": "int", "value": 5}}, "tensors": ""},
    {"format": 1, "grade_id": "param_count", "values": {"n_params": {"kind": "tensor", "dtype": [], "shape": [1],
     "requires_grad": False, "is_parameter": False}}, "tensors": ""},
    {"format": 1, "grade_id": "param_count", "values": {"n_params": {"kind": {"a": 1}}}, "tensors": ""},
])
def test_malformed_records_score_zero_and_never_crash(payload):
    verdict = checks.judge("param_count", [payload], points=5, situation=checks.Situation(challenge=1))
    assert verdict.score == 0.0 and not any(part.passed for part in verdict.parts)


def test_deeply_nested_and_oversized_records_score_zero():
    nested = {"kind": "sequence", "type": "list", "items": []}
    for _ in range(5000):
        nested = {"kind": "sequence", "type": "list", "items": [nested]}
    deep = {"format": 1, "grade_id": "param_count", "values": {"n_params": nested}, "tensors": ""}
    huge = {"format": 1, "grade_id": "param_count", "values": {}, "tensors": "A" * (MAX_RECORD_CHARS + 4)}
    for payload in (deep, huge):
        assert checks.judge("param_count", [payload], points=5, situation=checks.Situation(challenge=1)).score == 0.0


def test_a_tensor_that_disagrees_with_its_description_is_refused():
    payload = encode("attention_softmax", {"weights": {"kind": "tensor", "key": "t0", "dtype": "torch.float32",
                                                       "shape": [3, 3], "requires_grad": True,
                                                       "is_parameter": False}},
                     {"t0": numpy.zeros((2, 2), dtype=numpy.float32)})
    assert checks.judge("attention_softmax", [payload], points=2, situation=checks.Situation(challenge=1)).score == 0.0
    with pytest.raises(ValueError):
        decode(payload)


def test_a_cell_that_sent_more_than_one_record_scores_zero():
    right = collect.record("attention_qk", attention_namespace(), challenge=1)
    situation = checks.Situation(challenge=1)
    assert checks.judge("attention_qk", [right], points=2, situation=situation).score == 2.0
    for payloads in ([right, right], [right, right, right, right, right]):
        verdict = checks.judge("attention_qk", payloads, points=2, situation=situation)
        assert verdict.score == 0.0 and f"sent {len(payloads)} answer records" in verdict.parts[0].reason
    assert checks.judge("attention_qk", [], points=2, situation=situation).score == 0.0


def test_every_contract_cell_has_a_checker_and_a_recorder():
    contract = {"squeeze_target", "bmm_x_shape", "bmm_d", "embedding_sizes", "param_count", "net_model",
                "net_loss", "attention_qk", "attention_scores", "attention_variance", "attention_softmax",
                "optimizer_choice"}
    assert set(checks.CHECKERS) == contract == set(collect.RECORDERS)


@pytest.mark.parametrize("team", [f"team-{number}" for number in range(40)])
def test_float32_and_float64_right_answers_pass_on_any_draw(team):
    """A right answer computed in float32, in any order of operations, carries rounding the judge allows;
    answers that are wrong in the usual ways do not pass on the same draw."""
    drawn = draw(secret=b"r" * 32, team=team, submission="s")
    Wq, Wk = torch.tensor(drawn.Wq, requires_grad=True), torch.tensor(drawn.Wk, requires_grad=True)
    words = torch.tensor(drawn.x_words)
    for Q, K in ((words @ Wq, words @ Wk), (torch.einsum("ij,jk->ik", words, Wq).double(), torch.mm(words, Wk).double())):
        scores = Q @ K.T
        scaled = scores * (1 / 2 ** 0.5)
        shifted = torch.exp(scaled - scaled.max(dim=1, keepdim=True).values)
        namespace = dict(Q=Q, K=K, d_k=2, scores=scores, scores_scaled=scaled,
                         var_scores=numpy.var(scores.detach().numpy(), ddof=1),
                         var_scores_scaled=scaled.var(unbiased=False).item(),
                         weights=shifted / shifted.sum(dim=1, keepdim=True))
        for cell in ("attention_qk", "attention_scores", "attention_variance", "attention_softmax"):
            assert checks.grade_namespace(cell, namespace, points=1, given=drawn).full_marks, cell
    scores = (words @ Wq) @ (words @ Wk).T
    wrong = dict(weights=torch.softmax(scores / math.sqrt(2), dim=0), var_scores=scores.std().item(),
                 var_scores_scaled=(scores / 2).var().item(), Q=words @ Wk, K=words @ Wq)
    for cell in ("attention_qk", "attention_variance", "attention_softmax"):
        assert checks.grade_namespace(cell, wrong, points=1, given=drawn).score == 0, cell


def test_an_activation_that_differs_only_for_large_inputs_is_caught_on_every_challenge():
    """ReLU6 equals ReLU below 6: the challenge's weights reach far past that, whatever the challenge."""
    class Relu6(RightNet):
        def forward(self, tokens):
            return self.U(torch.nn.functional.relu6(self.W(self.E(tokens))))

    assert {score("net_model", {"Net": Relu6}, 12, challenge) for challenge in range(1, 60)} == {4.0}


def test_the_challenge_of_a_submission_is_fixed_and_differs_by_cell_and_submission():
    from coursekit.exercise.given import cell_challenge, submission_key

    key = submission_key(secret=b"k" * 32, team="alice", submission="s")
    assert cell_challenge(key=key, grade_id="net_model") == cell_challenge(key=key, grade_id="net_model")
    assert cell_challenge(key=key, grade_id="net_model") != cell_challenge(key=key, grade_id="net_loss")
    other = submission_key(secret=b"k" * 32, team="alice", submission="t")
    assert cell_challenge(key=other, grade_id="net_model") != cell_challenge(key=key, grade_id="net_model")
    assert 0 <= cell_challenge(key=key, grade_id="net_model") < 2 ** 62
