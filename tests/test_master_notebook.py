"""The master notebook runs clean, its own tests pass, and it defines every contract name."""
import copy
import json

import nbformat
import pytest
from nbclient import NotebookClient

from coursekit.exercise import checks
from coursekit.recorder.wire import ANSWER_MIME, DEFAULT_CHALLENGE
from coursekit.nbgrader_plugins.execution import judged_answer
from coursekit.notebooks import grade_id
from conftest import MASTER_PATH, REPOSITORY

# Run after the whole notebook: reports what the contract says must exist.
CONTRACT_PROBE = r'''
import json as _json
def _describe():
    import torch, torch.nn as nn
    facts = {}
    facts["x"] = [list(x_squeezed.shape), bool(torch.equal(x_squeezed.reshape(-1), x_start.reshape(-1)))]
    facts["x_shape"] = [int(v) for v in x_shape]
    facts["d"] = list(d.shape)
    facts["y"] = [list(y_bmm.shape), bool(torch.allclose(y_bmm, torch.bmm(x_bmm, d)))]
    facts["embedding"] = [type(vocab_size).__name__, vocab_size, type(embedding_dim).__name__, embedding_dim,
                          type(embedding_layer).__name__, tokens.tolist(), list(embedded_x.shape)]
    facts["n_params"] = [type(n_params).__name__, n_params]
    net = Net()
    facts["Net"] = [issubclass(Net, nn.Module), list(net(torch.tensor([[1, 2], [3, 4]])).shape),
                    sorted(list(p.shape) for p in net.parameters())]
    facts["loss"] = [isinstance(model, Net), list(output.shape), type(loss_function).__name__, loss.dim()]
    facts["attention"] = [list(Q.shape), list(K.shape), float(d_k), list(scores.shape),
                          list(scores_scaled.shape), weights.detach().sum(dim=1).tolist()]
    facts["variance"] = [var_scores.item(), var_scores_scaled.item()]
    facts["scenarios"] = [scenario_a, scenario_b]
    return facts
print("CONTRACT" + _json.dumps(_describe()))
'''


def execute(notebook):
    client = NotebookClient(notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(REPOSITORY)}})
    return client.execute()


@pytest.fixture(scope="module")
def executed_twice():
    master = nbformat.read(str(MASTER_PATH), as_version=4)
    probe_notebook = copy.deepcopy(master)
    # The contract reuses `x` (Tasks 1.1, 1.2) and `y` (Tasks 1.2, 3.1): keep Task 1.2's for the probe.
    position = next(i for i, cell in enumerate(probe_notebook.cells) if grade_id(cell) == "bmm_d_test")
    probe_notebook.cells.insert(position + 1, nbformat.v4.new_code_cell("x_bmm, y_bmm = x, y"))
    position = next(i for i, cell in enumerate(probe_notebook.cells) if grade_id(cell) == "squeeze_target_test")
    probe_notebook.cells.insert(position + 1, nbformat.v4.new_code_cell("x_squeezed = x"))
    probe_notebook.cells.append(nbformat.v4.new_code_cell(CONTRACT_PROBE))
    return execute(probe_notebook), execute(copy.deepcopy(probe_notebook))


def outputs_of(notebook):
    """Every cell's outputs, with stream chunks joined (the kernel splits them at random)."""
    result = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            for output in cell.outputs:
                item = [grade_id(cell), output.get("output_type"), output.get("name"),
                        output.get("text") or json.dumps(output.get("data", {}).get("text/plain"))]
                if result and item[1] == "stream" and result[-1][:3] == item[:3]:
                    result[-1][3] += item[3]
                else:
                    result.append(item)
    return result


def test_master_runs_without_errors_or_stderr(executed_twice):
    for cell_id, output_type, stream, _ in outputs_of(executed_twice[0]):
        assert output_type != "error", f"cell {cell_id} raised"
        assert stream != "stderr", f"cell {cell_id} wrote to stderr"


def test_every_hidden_test_gives_full_points(executed_twice):
    """Each hidden test sends one answer record; the judge gives the master's answers full marks."""
    notebook = executed_twice[0]
    test_cells = [i for i, c in enumerate(notebook.cells) if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
    assert len(test_cells) == 12
    for index in test_cells:
        cell = notebook.cells[index]
        records = [o["data"][ANSWER_MIME] for o in cell.outputs if ANSWER_MIME in o.get("data", {})]
        assert len(records) == 1, f"{grade_id(cell)} sent {len(records)} answer records"
        sources = tuple(c.source for c in notebook.cells[:index] if c.cell_type == "code")
        verdict = checks.judge(grade_id(cell).removesuffix("_test"), records, points=cell.metadata.nbgrader.points,
                               situation=checks.Situation(challenge=DEFAULT_CHALLENGE, sources=sources))
        assert verdict.full_marks, (grade_id(cell), verdict.lines())


def test_every_test_cell_is_judged_outside_the_kernel(master):
    test_cells = [c for c in master.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
    assert test_cells and all(judged_answer(cell) for cell in test_cells)


def test_master_gives_the_same_results_every_run(executed_twice):
    first, second = executed_twice
    assert outputs_of(first) == outputs_of(second)


def test_master_defines_every_contract_name(executed_twice):
    probe = executed_twice[0].cells[-1].outputs[0]["text"]
    facts = json.loads(probe.split("CONTRACT", 1)[1])
    assert facts["x"] == [[1, 3, 4, 1, 1], True]
    assert facts["x_shape"] == [64, 128, 512]
    assert facts["d"] == [64, 512, 9]
    assert facts["y"] == [[64, 128, 9], True]
    assert facts["embedding"] == ["int", 10, "int", 5, "Embedding", [1, 3, 5, 7, 9], [5, 5]]
    assert facts["n_params"] == ["int", 236 * 472 + 472 * 472 + 472 * 10]
    assert facts["Net"] == [True, [2, 2, 4], sorted([[8, 6], [10, 6], [10], [4, 10], [4]])]
    assert facts["loss"] == [True, [4, 4], "CrossEntropyLoss", 0]
    assert facts["attention"][:5] == [[3, 2], [3, 2], 2.0, [3, 3], [3, 3]]
    assert facts["attention"][5] == pytest.approx([1.0, 1.0, 1.0])
    assert facts["variance"][0] / facts["variance"][1] == pytest.approx(2.0)
    assert facts["scenarios"] == ["mini-batch GD", "SGD"]


def test_points_total_100_and_at_least_half_autograded(master):
    graded = [c for c in master.cells if c.metadata.get("nbgrader", {}).get("grade")]
    total = sum(c.metadata.nbgrader.points for c in graded)
    autograded = sum(c.metadata.nbgrader.points for c in graded if c.cell_type == "code")
    assert total == 100
    assert autograded >= 50


def test_contract_grade_ids_are_answer_cells(master):
    answers = {grade_id(c): c for c in master.cells if c.metadata.get("nbgrader", {}).get("solution")}
    autograded = ["squeeze_target", "bmm_x_shape", "bmm_d", "embedding_sizes", "param_count", "net_model",
                  "net_loss", "attention_qk", "attention_scores", "attention_variance", "attention_softmax",
                  "optimizer_choice"]
    manual = ["squeeze_explain", "bmm_why_d", "bmm_context", "embedding_purpose", "embedding_args",
              "embedding_out_of_range", "params_vs_hyperparams", "net_no_output_activation", "net_labels",
              "attention_ratio_meaning", "attention_rows", "attention_likes", "learning_rate_issues"]
    for name in autograded:
        assert answers[name].cell_type == "code" and not answers[name].metadata.nbgrader.grade
    for name in manual:
        cell = answers[name]
        assert cell.cell_type == "markdown" and cell.metadata.nbgrader.grade
        assert "Reference answer" in cell.source and "Rubric" in cell.source and "BEGIN SOLUTION" in cell.source


def test_sheet_mistakes_are_fixed(master):
    text = "\n".join(c.source for c in master.cells)
    assert "2014" not in text and "8 November 2024" in text
    assert r"\mathbf{b}_W" in text and r"\mathbf{b}_U" in text
