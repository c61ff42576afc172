"""The grading kernel's speed-ups change no output: errors, tracebacks and history read the same as in stock ipykernel.

The same cells run in a sandboxed kernel (fork server: GradingShell, warmed-up
tracebacks, in-memory history) and in a stock ipykernel without a sandbox.
"""
import os

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient

from coursekit.sandbox.fork_server import supported
from coursekit.sandbox.kernel_manager import SandboxedKernelManager

CELLS = [
    "import torch\nx = torch.zeros(2, 3)\nx.shape",
    "# YOUR CODE HERE\nraise NotImplementedError()",
    "def f(t):\n    return t @ t\n\nf(x)",
    "y = undefined_name + 1",
    "assert x.sum() == 1, 'expected a sum of one'",
    "def broken(:\n    pass",
    "hist = get_ipython().history_manager\n(hist.hist_file, sorted(hist.exceptions))",
    "print(repr(get_ipython().history_manager.exceptions[2]['ename']))",
]


def outputs(manager, tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    try:
        NotebookClient(notebook, km=manager, timeout=120, allow_errors=True).execute(cwd=str(tmp_path))
    finally:
        if manager.has_kernel:
            run_sync(manager.shutdown_kernel)(now=True)
        getattr(manager, "release_sandbox", lambda: None)()
    return [[{key: value for key, value in output.items() if key != "execution_count"} for output in cell.outputs]
            for cell in notebook.cells]


@pytest.mark.skipif(os.geteuid() != 0 or supported() is not None, reason="the fork server needs root")
def test_grading_kernel_outputs_match_stock_ipykernel(tmp_path):
    graded = outputs(SandboxedKernelManager(kernel_name="python3", fork_server=True), tmp_path)
    stock = outputs(AsyncKernelManager(kernel_name="python3"), tmp_path)
    assert graded == stock
    errors = [output for cell in graded for output in cell if output["output_type"] == "error"]
    assert [error["ename"] for error in errors] == ["NotImplementedError", "RuntimeError", "NameError",
                                                    "AssertionError", "SyntaxError"]
    assert all(error["traceback"] for error in errors)
    assert "':memory:'" in graded[6][0]["data"]["text/plain"]  # nbclient's history setting reached the kernel
