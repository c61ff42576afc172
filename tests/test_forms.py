"""One rule for which forms of an answer count: the visible checks students run and the judge agree.

The master notebook's code runs here without a kernel (its given cells with the
sheet's values); each variant replaces one answer cell. The variant's visible
check (the test cell's code after its hidden part) and the judge (on what the
recorder records from the same namespace) must both accept a right answer in any
of its forms, and both refuse a form that does not count.
"""
import copy

import nbformat
import pytest

from coursekit.exercise import checks, forms
from coursekit.notebooks import grade_id
from coursekit.recorder import collect
from conftest import MASTER_PATH, RELEASE_PATH

CHALLENGE = 11

RIGHT = {
    "squeeze_target": [
        "x = x_start.squeeze(1).unsqueeze(0).unsqueeze(-1)",
        "x = torch.unsqueeze(torch.unsqueeze(torch.squeeze(x_start, dim=1), dim=0), dim=4)",
        "x = x_start.squeeze(1).unsqueeze(0).unsqueeze(-1).double()",
        "x = x_start.clone()\nx.squeeze_(1)\nx.unsqueeze_(0)\nx.unsqueeze_(-1)",
        "x = x_start.squeeze(1).unsqueeze(0).unsqueeze(-1).permute(0, 1, 2, 4, 3)",
    ],
    "bmm_x_shape": ["x_shape = (64, 128, 512)", "x_shape = [64, 128, 512]", "x_shape = torch.Size([64, 128, 512])",
                    "x_shape = x.shape", "import numpy as np\nx_shape = tuple(np.int64(v) for v in (64, 128, 512))",
                    "x_shape = (torch.tensor(64), 128, 512)"],
    "bmm_d": ["d = torch.randn(64, 512, 9)\ny = torch.bmm(x, d)", "d = torch.ones(64, 512, 9)\ny = torch.bmm(x, d)",
              "d = torch.rand(64, 512, 9)\nwith torch.no_grad():\n    y = torch.bmm(x, d)"],
    "embedding_sizes": [
        "vocab_size = 10\nembedding_dim = 5\n",
        "import numpy as np\nvocab_size = np.int64(10)\nembedding_dim = np.int32(5)\n",
    ],
    "param_count": ["n_params = 236 * 472 + 472 * 472 + 472 * 10", "import numpy as np\nn_params = np.int64(338896)",
                    "n_params = torch.tensor(338896)", "n_params = int(338896.0)"],
    "net_loss": [
        "model = Net()\noutput = model(X)\nloss_function = nn.CrossEntropyLoss()\nloss = loss_function(output, y)",
        "model = Net()\nwith torch.no_grad():\n    output = model(X)\nloss_function = nn.CrossEntropyLoss()\n"
        "with torch.no_grad():\n    loss = loss_function(output, y)",
        "model = Net()\noutput = model(X).double()\nloss_function = lambda logits, labels: F.cross_entropy(logits, labels)\n"
        "loss = loss_function(output, y)",
    ],
    "attention_qk": ["Q = x_words @ Wq\nK = x_words @ Wk", "Q = torch.matmul(x_words, Wq).detach()\nK = torch.mm(x_words, Wk)",
                     "with torch.no_grad():\n    Q = x_words @ Wq\n    K = (x_words @ Wk).double()"],
    "attention_scores": [
        "d_k = K.shape[1]\nscores = Q @ K.T\nscores_scaled = scores / math.sqrt(d_k)",
        "d_k = 2.0\nscores = Q @ K.transpose(0, 1)\nscores_scaled = scores / d_k ** 0.5",
        "d_k = torch.tensor(2)\nscores = (Q @ K.T).detach()\nscores_scaled = scores / torch.sqrt(d_k.float())",
    ],
    "attention_variance": [
        "var_scores = torch.var(scores)\nvar_scores_scaled = torch.var(scores_scaled)",
        "var_scores = scores.var().item()\nvar_scores_scaled = scores_scaled.var(unbiased=False).item()",
        "import numpy as np\nvar_scores = np.var(scores.detach().numpy(), ddof=1)\n"
        "var_scores_scaled = np.float64(scores_scaled.detach().double().var())",
    ],
    "attention_softmax": ["weights = F.softmax(scores_scaled, dim=1)", "weights = torch.softmax(scores_scaled, dim=-1)",
                          "e = torch.exp(scores_scaled.double())\nweights = e / e.sum(dim=1, keepdim=True)"],
    "optimizer_choice": ['scenario_a = "mini-batch GD"\nscenario_b = "SGD"',
                         'scenario_a = "Mini-batch gradient descent."\nscenario_b = "S.G.D."',
                         'scenario_a = "the mini-batch G.D."\nscenario_b = "Stochastic Gradient Descent (SGD)"'],
}

WRONG_FORMS = {
    "squeeze_target": ["x = x_start.squeeze(1).unsqueeze(0).unsqueeze(-1).numpy()",
                       "x = x_start.squeeze(1).unsqueeze(0).unsqueeze(-1).tolist()"],
    "bmm_x_shape": ["import numpy as np\nx_shape = np.array([64, 128, 512])", 'x_shape = "(64, 128, 512)"',
                    "x_shape = (64.0, 128.0, 512.0)", "x_shape = {64, 128, 512}"],
    "bmm_d": ["d = torch.randn(64, 512, 9).double()\ny = torch.bmm(x.double(), d)",
              "d = torch.randn(64, 512, 9).numpy()\ny = torch.bmm(x, torch.from_numpy(d))"],
    "param_count": ["n_params = 338896.0", 'n_params = "338896"', "n_params = True",
                    "import numpy as np\nn_params = np.array([338896])"],
    "net_loss": ["model = Net()\noutput = model(X)\nloss_function = nn.CrossEntropyLoss()\n"
                 "loss = loss_function(output, y).item()"],
    "attention_qk": ["Q = (x_words @ Wq).detach().numpy()\nK = (x_words @ Wk).detach().numpy()"],
    "attention_scores": ['d_k = "2"\nscores = Q @ K.T\nscores_scaled = scores / math.sqrt(2)'],
    "attention_variance": ["var_scores = [torch.var(scores).item()]\nvar_scores_scaled = [torch.var(scores_scaled).item()]",
                           "var_scores = torch.var(scores) > 0\nvar_scores_scaled = torch.var(scores_scaled) > 0"],
    "attention_softmax": ["weights = F.softmax(scores_scaled, dim=1).detach().numpy()"],
    "optimizer_choice": ['scenario_a = ("mini-batch GD",)\nscenario_b = "SGD"',
                         'scenario_a = "mini-batch GD or SGD"\nscenario_b = "SGD"',
                         'scenario_a = "mini-batch GD"\nscenario_b = 2'],
}


@pytest.fixture(scope="module")
def notebook_run(master):
    """The master's namespace after all its cells, without the hidden tests (which only record)."""
    namespace = {"__name__": "__main__"}
    cells = {}
    for cell in master.cells:
        if cell.cell_type != "code":
            continue
        cells[grade_id(cell)] = cell.source
        if not grade_id(cell) or not grade_id(cell).endswith("_test"):
            exec(compile(cell.source, grade_id(cell) or "cell", "exec"), namespace)
    return namespace, cells


def visible_check(cells, answer):
    return cells[f"{answer}_test"].split("### END HIDDEN TESTS\n", 1)[1]


def outcomes(notebook_run, answer, code):
    base, cells = notebook_run
    namespace = copy.copy(base)
    exec(compile(code, answer, "exec"), namespace)
    try:
        exec(compile(visible_check(cells, answer), f"{answer}_test", "exec"), namespace)
        visible = True
    except Exception:
        visible = False
    payload = collect.record(answer, namespace, challenge=CHALLENGE)
    verdict = checks.judge(answer, [payload], points=1.0,
                           situation=checks.Situation(challenge=CHALLENGE, sources=(code,)))
    return visible, verdict.full_marks


@pytest.mark.parametrize("answer, code", [(answer, code) for answer, codes in RIGHT.items() for code in codes])
def test_right_answers_pass_the_visible_check_and_the_judge_in_every_form(notebook_run, answer, code):
    assert outcomes(notebook_run, answer, code) == (True, True)


@pytest.mark.parametrize("answer, code", [(answer, code) for answer, codes in WRONG_FORMS.items() for code in codes])
def test_forms_that_do_not_count_fail_both(notebook_run, answer, code):
    assert outcomes(notebook_run, answer, code) == (False, False)


def test_the_check_helpers_cell_is_the_judges_rule_verbatim(master):
    for notebook in (master, nbformat.read(str(RELEASE_PATH), as_version=4)):
        helpers = [cell for cell in notebook.cells if grade_id(cell) == "check_helpers"]
        assert len(helpers) == 1 and helpers[0].source == forms.notebook_cell_source()
        assert helpers[0].metadata.nbgrader.locked


def test_visible_checks_use_only_given_values_and_the_helpers(master):
    """No visible check compares with a number printed on the sheet: they compute from the given cells."""
    for cell in master.cells:
        if grade_id(cell) and grade_id(cell).endswith("_test"):
            visible = cell.source.split("### END HIDDEN TESTS\n", 1)[1]
            for printed in ("0.5", "2.0, 3.0", "[1, 2, 3, 7]", "[1, 0, 1, 3]", "manual_seed"):
                assert printed not in visible, (grade_id(cell), printed)
