import dataclasses
import tomllib
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from coursekit.reports.integrity import Finding, format_report, report_html, scan_notebook

REPOSITORY = Path(__file__).resolve().parent.parent
MASTER_PATH = REPOSITORY / "source" / "ex2" / "ml_ex2.ipynb"
RELEASE_PATH = REPOSITORY / "release" / "ex2" / "ml_ex2.ipynb"
CORPUS_PATH = REPOSITORY / "tests" / "corpus" / "variants.toml"
GIVEN_IMPORTS = "import math\n\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F"


def locked_cell(source: str, grade_id: str) -> nbformat.NotebookNode:
    return new_code_cell(source, metadata={"nbgrader": {"grade_id": grade_id, "locked": True, "grade": False,
                                                        "solution": False, "schema_version": 3}})


def answer_cell(source: str, grade_id: str = "net_model") -> nbformat.NotebookNode:
    return new_code_cell(source, metadata={"nbgrader": {"grade_id": grade_id, "locked": False, "grade": False,
                                                        "solution": True, "schema_version": 3}})


def submission(*cells: nbformat.NotebookNode) -> bytes:
    """A notebook whose first cell is the course's locked imports cell, as in the release."""
    notebook = new_notebook(cells=[locked_cell(GIVEN_IMPORTS, "imports"), *cells])
    return nbformat.writes(notebook).encode()


def scan(*sources: str) -> tuple[Finding, ...]:
    return scan_notebook(content=submission(*(answer_cell(source) for source in sources)))


def categories(findings: tuple[Finding, ...]) -> set[str]:
    return {finding.category for finding in findings}


def solution_code(cell_source: str) -> str:
    markers = {"### BEGIN SOLUTION", "### END SOLUTION"}
    return "\n".join(line for line in cell_source.split("\n") if line.strip() not in markers)


# ------------------------------------------------------------ one test per category

def test_input_transformers_are_ipython_internals():
    findings = scan("x = x_start\nget_ipython().input_transformers_cleanup.append(lambda lines: [])")
    assert [(f.category, f.cell, f.line) for f in findings] == [("ipython-internals", "net_model", 2)]
    assert findings[0].code == "get_ipython().input_transformers_cleanup.append(lambda lines: [])"
    assert findings[0].explanation


def test_ipython_magics_and_history_are_ipython_internals_but_common_magics_are_not():
    findings = scan("%matplotlib inline\n%time y = 1 / 2\n%load_ext autoreload\nprint(In[3])\nimport inspect")
    assert [(f.category, f.line) for f in findings] == [
        ("ipython-internals", 3), ("ipython-internals", 4), ("ipython-internals", 5)]


def test_patching_a_library_function_is_a_monkeypatch():
    findings = scan("torch.allclose = lambda *a, **k: True")
    assert [(f.category, f.line, f.code) for f in findings] == [
        ("monkeypatch", 1, "torch.allclose = lambda *a, **k: True")]


@pytest.mark.parametrize("source, line", [
    ("class Fake:\n    def __eq__(self, other): return True", 2),
    ("setattr(torch, 'equal', lambda *a: True)", 1),
    ("import builtins\nbuiltins.isinstance = lambda *a: True", 2),
    ("from torch import Tensor\nTensor.__eq__ = lambda self, other: True", 2),
    ("T = torch.Tensor\nT.sum = lambda self: 0", 2),
    ("F.softmax = lambda x, dim: x", 1),
])
def test_other_ways_to_fake_results_are_monkeypatches(source, line):
    findings = scan(source)
    assert ("monkeypatch", line) in {(f.category, f.line) for f in findings}


@pytest.mark.parametrize("source", ["open('/etc/passwd').read()", "open('../../source/ex2/ml_ex2.ipynb')"])
def test_reading_files_outside_the_submission_is_file_access(source):
    findings = scan(source)
    assert [(f.category, f.line, f.code) for f in findings] == [("file-access", 1, source)]


def test_subprocess_is_reported_on_the_import_and_the_call():
    findings = scan("import subprocess\nsubprocess.Popen(['sleep', '100'])")
    assert [(f.category, f.line) for f in findings] == [("process", 1), ("process", 2)]


def test_shell_escapes_are_processes_and_their_paths_file_access():
    findings = scan("files = !cat /etc/passwd")
    assert [(f.category, f.line) for f in findings] == [("file-access", 1), ("process", 1)]


def test_sockets_are_network():
    findings = scan("import socket; socket.create_connection(('example.org', 80))")
    assert [(f.category, f.line) for f in findings] == [("network", 1)]


def test_asking_whether_nbgrader_runs_is_grading_detection():
    findings = scan("import os; os.environ.get('NBGRADER_EXECUTION')")
    assert {(f.category, f.line) for f in findings} == {("grading-detection", 1), ("file-access", 1)}


def test_cells_tagged_to_skip_execution_are_execution_metadata_even_when_locked():
    tagged = answer_cell("x = torch.squeeze(x_start, 1)", grade_id="squeeze_target")
    tagged.metadata["tags"] = ["skip-execution"]
    test_cell = locked_cell("assert True", "squeeze_target_test")
    test_cell.metadata["tags"] = ["raises-exception"]
    findings = scan_notebook(content=submission(tagged, test_cell))
    assert [(f.category, f.cell, f.line, f.code) for f in findings] == [
        ("execution-metadata", "squeeze_target", 0, "tags: skip-execution"),
        ("execution-metadata", "squeeze_target_test", 0, "tags: raises-exception")]


def test_an_editable_graded_cell_is_execution_metadata():
    cell = answer_cell("print('all good')", grade_id="net_model_test")
    cell.metadata["nbgrader"]["grade"] = True
    findings = scan_notebook(content=submission(cell))
    assert [(f.category, f.cell) for f in findings] == [("execution-metadata", "net_model_test")]


def test_a_cell_that_does_not_parse_is_reported_and_still_scanned_line_by_line():
    findings = scan("def f(:\n    import subprocess\n    torch.equal = None\n    open('/etc/shadow')")
    assert [(f.category, f.line) for f in findings] == [
        ("syntax-error", 1), ("process", 2), ("monkeypatch", 3), ("file-access", 4)]
    assert "could not be parsed (invalid syntax)" in findings[0].explanation


def test_a_shell_cell_magic_is_scanned_as_shell_text():
    findings = scan("%%bash\ncat ../gradebook.db")
    assert [(f.category, f.line) for f in findings] == [("process", 1), ("file-access", 2)]


# ------------------------------------------------------------ what must stay quiet

def test_ordinary_exercise_code_gives_no_findings():
    source = "\n".join([
        "import math",
        "torch.manual_seed(0)",
        "class Net(nn.Module):",
        "    def __init__(self):",
        "        super().__init__()",
        "        self.W = nn.Linear(6, 10)",
        "    def forward(self, x):",
        "        return F.relu(torch.matmul(x, self.W.weight.T))",
        "x = torch.randn(3, 6)",
        "print(x.shape)",
        "loss = Net()(x).sum()",
        "loss.backward()",
        "var_scores = torch.var(x)",
        "signal = torch.randn(5)   # a local name that is also a module's",
        "signal.mean()",
        "%matplotlib inline",
        "torch.squeeze?",
    ])
    assert scan(source) == ()


def test_the_master_solutions_give_no_findings():
    master = nbformat.read(str(MASTER_PATH), as_version=4)
    solutions = [solution_code(cell.source) for cell in master.cells
                 if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution")]
    assert len(solutions) == 12
    assert scan(*solutions) == ()


def test_the_master_notebook_gives_no_findings_because_its_hidden_tests_are_locked():
    assert "import coursekit.recorder.collect as grader_record" in MASTER_PATH.read_text()
    assert scan_notebook(content=MASTER_PATH.read_bytes()) == ()


def test_the_release_gives_no_findings():
    assert scan_notebook(content=RELEASE_PATH.read_bytes()) == ()


def test_the_labelled_answer_corpus_gives_no_findings():
    variants = tomllib.loads(CORPUS_PATH.read_text(encoding="utf-8"))["variant"]
    findings = scan(*(variant["code"] for variant in variants))
    assert len(variants) > 50
    assert findings == ()


# ------------------------------------------------------------ notebook handling

@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe\x00garbage", b"[]", b'{"cells": 3}'])
def test_unreadable_notebooks_give_one_finding(content):
    findings = scan_notebook(content=content)
    assert len(findings) == 1
    assert findings[0].category == "unreadable-notebook"
    assert findings[0].line == 0


def test_cells_are_named_by_grade_id_or_position_and_listed_in_notebook_order():
    added = new_code_cell("import subprocess")
    notebook = new_notebook(cells=[
        locked_cell("import torch", "imports"),
        new_markdown_cell("Some text the student wrote"),
        added,
        answer_cell("x = 1\ntorch.equal = None", grade_id="squeeze_target"),
        locked_cell("import subprocess", "given_data"),
    ])
    findings = scan_notebook(content=nbformat.writes(notebook).encode())
    assert [(f.cell, f.line, f.category) for f in findings] == [
        ("cell 3", 1, "process"), ("squeeze_target", 2, "monkeypatch")]


def test_findings_are_frozen_and_their_code_is_truncated():
    long_line = "torch.equal = " + "1 + " * 100 + "1"
    (finding,) = scan(long_line)
    assert finding.code == long_line[:200]
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.line = 2


# ------------------------------------------------------------ reports

def test_format_report_lists_every_team():
    findings_by_team = {"team-b": scan("torch.allclose = lambda *a, **k: True"),
                        "team-a": (), "team-c": scan("import socket")}
    report = format_report(findings_by_team=findings_by_team)
    for team in findings_by_team:
        assert team in report
    assert report.index("team-b: 1 finding") < report.index("team-c: 1 finding")
    assert "torch.allclose = lambda *a, **k: True" in report
    assert "[network]" in report
    assert report.rstrip().endswith("No findings (1): team-a")


def test_report_html_escapes_student_code_and_team_names():
    findings_by_team = {"<b>team</b> & co": scan("open('/etc/passwd')  # <script>alert(1)</script>"),
                        "quiet-team": ()}
    page = report_html(findings_by_team=findings_by_team)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;team&lt;/b&gt; &amp; co" in page
    assert "quiet-team" in page
    assert page.count("<table>") == 1


def test_a_cell_marked_locked_by_the_student_is_still_scanned():
    cell = nbformat.v4.new_code_cell("import subprocess\nsubprocess.run(['ls'])")
    cell.metadata["nbgrader"] = {"locked": True, "grade_id": "my_cell"}
    content = nbformat.writes(nbformat.v4.new_notebook(cells=[cell])).encode()
    assert scan_notebook(content=content) == ()  # trusting the flag misses it
    findings = scan_notebook(content=content, trusted_sources=frozenset({"print('given')"}))
    assert any(f.category == "process" for f in findings)


# ------------------------------------------------------------ hostile notebooks: never a crash, always a finding

def test_a_ten_thousand_deep_expression_is_a_finding_not_a_crash():
    findings = scan("x = " + "-" * 10_000 + "1\nimport socket")
    assert [(f.category, f.line) for f in findings][:1] == [("syntax-error", 0)]
    assert "too deeply nested" in findings[0].explanation
    assert "network" in categories(findings)  # still scanned line by line


@pytest.mark.parametrize("source", [
    "x = " + "(" * 5000 + "1" + ")" * 5000,
    "x = " + "[" * 5000 + "]" * 5000,
    "def f():\n" + "".join("    " * depth + "if x:\n" for depth in range(1, 120)) + "    " * 120 + "pass",
    "y = " + " + ".join(["1"] * 100_000)[:150_000],
], ids=["parentheses", "lists", "blocks", "long-line"])
def test_deep_or_long_code_never_raises(source):
    findings = scan(source)
    assert all(isinstance(finding, Finding) for finding in findings)


def test_a_huge_cell_is_reported_as_not_scanned():
    findings = scan("import socket\n" + "x = 1\n" * 50_000)
    assert [(f.category, f.cell) for f in findings] == [("not-scanned", "net_model")]
    assert "read this cell by hand" in findings[0].explanation


@pytest.mark.parametrize("content", [
    b"[" * 100_000 + b"]" * 100_000,                                   # JSON nested too deep
    b'{"cells": [' + b'{"cell_type": "code", "source": ' + b"[" * 50_000 + b"]" * 50_000 + b"}]}",
    b'{"cells": [{"cell_type": "code", "source": 7, "metadata": "x"}, "not a cell", null]}',
    bytes(range(256)) * 100,
], ids=["deep-json", "deep-source", "wrong-types", "binary"])
def test_any_notebook_content_gives_findings_not_exceptions(content):
    findings = scan_notebook(content=content)
    assert all(isinstance(finding, Finding) for finding in findings)


def test_a_notebook_larger_than_the_scan_reads_is_one_finding():
    findings = scan_notebook(content=b" " * (8 * 1024 * 1024 + 1))
    assert [(f.category, f.cell) for f in findings] == [("not-scanned", "notebook")]


def test_a_scan_that_runs_out_of_time_says_so():
    findings = scan_notebook(content=submission(answer_cell("import socket")), seconds=0)
    assert findings[-1].category == "not-scanned" and "stopped after 0 s" in findings[-1].explanation


def test_escape_sequences_and_controls_from_code_never_reach_the_text_report():
    evil = "import socket  # \x1b[2J\x1b]0;pwned\x07\u202e\x00\x08 done"
    grade_id = "net\x1b[31m_model\n"
    findings = scan_notebook(content=submission(answer_cell(evil, grade_id=grade_id)))
    report = format_report(findings_by_team={"team\x1b[5m": findings})
    assert "import socket  #" in report and "done" in report
    assert not any(character in report for character in "\x1b\x07\x00\x08\u202e")
    assert all(line.isprintable() for line in report.splitlines())
