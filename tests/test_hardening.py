"""Hostile and broken submissions graded with honest ones in one real `nbgrader autograde` run.

The fixtures are data (tests/hostile/submissions.toml); TAMPERING below holds
the notebook edits they name. Asserted: every student has a result with the
right status, attackers score no more than a blank notebook, honest students
keep full marks, nothing leaked out of the sandbox and no process lingered.
"""
import copy
import re
import tomllib
from pathlib import Path

import nbformat
import pytest

from coursekit.engine import run
from coursekit.notebooks import fill_answers, is_answer_cell, master_answers
from conftest import REPOSITORY

FIXTURES = REPOSITORY / "tests" / "hostile" / "submissions.toml"
FULL_MARKS = 56.0


def is_test_cell(cell):
    nbgrader = cell.metadata.get("nbgrader", {})
    return bool(nbgrader.get("grade")) and cell.cell_type == "code"


def tag(cells, name):
    for cell in cells:
        cell.metadata.setdefault("tags", []).append(name)


def strip_nbgrader_metadata(notebook):
    for cell in notebook.cells:
        cell.metadata = {}


def delete_test_cells(notebook):
    notebook.cells = [c for c in notebook.cells if not is_test_cell(c)]


def duplicate_answer_cells(notebook):
    cells = []
    for cell in notebook.cells:
        cells.append(cell)
        if is_answer_cell(cell) and cell.cell_type == "code":
            duplicate = copy.deepcopy(cell)
            duplicate.source = "# a stale copy\n" + duplicate.source
            cells.append(duplicate)
    notebook.cells = cells


def add_helper_cells(notebook):
    helper = nbformat.v4.new_code_cell("def helper():\n    return 'scratch work'\nprint(helper())")
    notebook.cells.insert(3, helper)
    notebook.cells.append(nbformat.v4.new_code_cell("print('the end')"))


def tag_everything(notebook):
    tag(notebook.cells, "skip-execution")


def schema_version_1(notebook):
    for cell in notebook.cells:
        if "nbgrader" in cell.metadata:
            cell.metadata.nbgrader["schema_version"] = 1


def make_tests_ungraded(notebook):
    for cell in notebook.cells:
        if is_test_cell(cell):
            cell.metadata.nbgrader.update(grade=False, locked=False, points=0)


def answers_become_tests(notebook):
    for cell in notebook.cells:
        if is_answer_cell(cell) and cell.cell_type == "code":
            cell.metadata.nbgrader.update(grade=True, solution=False, points=1000)
            cell.source = "1000.0"


def replace_test_cells(notebook):
    for cell in notebook.cells:
        if is_test_cell(cell):
            cell.source = f"{float(cell.metadata.nbgrader.points)}"


def retype_test_cells(notebook):
    for index, cell in enumerate(notebook.cells):
        if is_test_cell(cell):
            markdown = nbformat.v4.new_markdown_cell(cell.source, metadata=cell.metadata)
            notebook.cells[index] = markdown


def move_tests_to_top(notebook):
    tests = [c for c in notebook.cells if is_test_cell(c)]
    notebook.cells = tests + [c for c in notebook.cells if not is_test_cell(c)]


TAMPERING = {
    "strip-nbgrader-metadata": strip_nbgrader_metadata,
    "delete-test-cells": delete_test_cells,
    "duplicate-answer-cells": duplicate_answer_cells,
    "add-helper-cells": add_helper_cells,
    "tag-everything": tag_everything,
    "schema-version-1": schema_version_1,
    "tag-tests:skip-execution": lambda nb: tag([c for c in nb.cells if is_test_cell(c)], "skip-execution"),
    "tag-tests:raises-exception": lambda nb: tag([c for c in nb.cells if is_test_cell(c)], "raises-exception"),
    "tests-not-graded": make_tests_ungraded,
    "answers-become-tests": answers_become_tests,
    "replace-test-cells": replace_test_cells,
    "retype-test-cells": retype_test_cells,
    "move-tests-to-top": move_tests_to_top,
}


def load_fixtures():
    return tomllib.loads(FIXTURES.read_text(encoding="utf-8"))["submission"]


def add_cells(notebook, entries):
    """Code cells a student added after the cell `after` (a grade_id), in order: `code`, or `pattern`
    repeated up to `characters`; `repeat` copies, each with its own last line (the rebuild keeps them all)."""
    inserted = {}
    for entry in entries:
        anchor = next(index for index, cell in enumerate(notebook.cells)
                      if cell.metadata.get("nbgrader", {}).get("grade_id") == entry["after"])
        code = entry.get("code") or (entry["pattern"] * entry["characters"])[:entry["characters"]]
        for copy_number in range(entry.get("repeat", 1)):
            position = anchor + 1 + inserted.get(entry["after"], 0)
            source = code if entry.get("repeat", 1) == 1 else f"{code}\n# copy {copy_number}"
            notebook.cells.insert(position, nbformat.v4.new_code_cell(source))
            inserted[entry["after"]] = inserted.get(entry["after"], 0) + 1


def build(spec, master, release_with_tests):
    if "raw" in spec:
        return run.SubmissionFiles(notebook=spec["raw"].encode())
    answers = master_answers(master) if spec["base"] == "solution" else {}
    answers.update(spec.get("answers", {}))
    if "pad" in spec:  # a cell of megabytes: a comment line after the answer
        cell = spec["pad"]["cell"]
        answers[cell] = answers.get(cell, "") + "\n# " + "x" * (spec["pad"]["kilobytes"] * 1024) + "\n"
    notebook = fill_answers(release_with_tests, answers)
    add_cells(notebook, spec.get("add_cells", []))
    for name in spec.get("tamper", []):
        TAMPERING[name](notebook)
    files = tuple((name, content.encode()) for name, content in spec.get("files", {}).items())
    return run.SubmissionFiles(
        notebook=nbformat.writes(notebook).encode(),
        notebook_filename=spec.get("filename", "ml_ex2.ipynb"),
        extra_files=files,
    )


def sandbox_processes():
    """Command lines of student processes or kernels still alive (read from /proc: no `ps` needed)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended while we looked
            continue
        if "sleep 613" in line or "coursekit.recorder.kernel" in line:
            found.append(line)
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory, master, release):
    specs = load_fixtures()
    submissions = {spec["name"]: build(spec, master, release) for spec in specs}
    work_dir = tmp_path_factory.mktemp("hostile")
    scores = run.grade_notebooks(template_root=REPOSITORY, work_dir=work_dir, submissions=submissions, workers=2)
    return specs, scores, work_dir, submissions


def test_fixtures_cover_every_category():
    names = {spec["name"] for spec in load_fixtures()}
    assert len(names) >= 40
    for required in ["invalid-json", "empty-file", "not-a-notebook", "renamed-notebook", "crash-os-exit",
                     "crash-segfault", "infinite-loop", "ignores-sigint", "memory-exhaustion", "output-flood",
                     "lingering-child", "network-attempt", "read-outside", "write-outside",
                     "shadowing-grader-modules", "skip-execution-tags", "monkeypatch-torch-math-numpy",
                     "fake-equality-objects", "input-transformer-empties-tests", "custom-exception-handler",
                     "detects-grading", "honest-colab", "thread-forges-scores-and-records",
                     "signal-timer-repatches-torch", "trace-function-rewrites-locals", "torch-function-mode-says-equal",
                     "in-place-edits-of-the-recorder", "rewrites-the-display-pipeline", "output-widget-swallows-records",
                     "huge-and-malformed-records", "wrong-net-with-attacks-earns-what-wrong-earns",
                     "searches-the-judge", "borrows-the-reference-model-and-repairs",
                     "records-before-inside-and-around-the-recorder", "huge-cell-before-the-squeeze-answer",
                     "model-changes-between-calls", "escape-sequences-in-names-and-exceptions",
                     "flood-of-unused-messages", "multipart-flood-dropped-by-the-guard",
                     "multipart-flood-past-the-memory-cap", "malformed-signed-messages-after-the-last-answer",
                     "cpu-hog-120-sessions",
                     "default-dtype-float64-set-by-the-student", "net-loss-under-inference-mode",
                     "relu6-instead-of-relu", "coloured-output-for-the-feedback",
                     "markdown-outputs-for-the-feedback", "many-added-cells-under-the-highlight-limit",
                     "traceback-line-that-backtracks"]:
        assert required in names


def test_every_submission_gets_a_result_with_the_right_status(graded):
    specs, scores, *_ = graded
    for spec in specs:
        result = scores.get(spec["name"])
        assert result is not None, f"{spec['name']} has no result"
        expected = spec.get("status", "graded")
        assert result.status in (expected if isinstance(expected, list) else [expected]), (
            spec["name"], result.status, result.reason)


def test_scores_match_expectations(graded):
    specs, scores, *_ = graded
    wrong = {}
    for spec in specs:
        total = sum(c.score for c in scores[spec["name"]].autograded().values())
        expected = spec["expect"]
        ok = (total == FULL_MARKS if expected == "full" else total == 0.0 if expected == "blank"
              else total == spec["total"] if expected == "total" else 0.0 < total < FULL_MARKS)
        if not ok:
            wrong[spec["name"]] = (expected, total)
    assert wrong == {}


def output_text(path):
    notebook = nbformat.read(str(path), as_version=4)
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") + str(output.get("data", "")) + output.get("evalue", ""))
    return "\n".join(texts)


def test_the_attacks_really_happened(graded):
    """Evidence from both ends: what the kernel says it sent, what the grader counted as dropped."""
    specs, _, work_dir, _ = graded
    checked = 0
    for spec in specs:
        if not {"printed", "not_printed", "dropped"} & set(spec):
            continue
        path = work_dir / "course" / "autograded" / spec["name"] / "ex2" / "ml_ex2.ipynb"
        outputs = output_text(path)
        for text in spec.get("printed", []):
            assert text in outputs, (spec["name"], text)
        for text in spec.get("not_printed", []):
            assert text not in outputs, (spec["name"], text)
        dropped = nbformat.read(str(path), as_version=4).metadata.get("coursekit", {}).get("messages_dropped", {})
        for reason in spec.get("dropped", []):
            assert dropped.get(reason, 0) > 0, (spec["name"], reason, dropped)
        checked += 1
    assert checked >= 4


def test_nothing_leaked_out_of_the_sandbox(graded):
    _, _, work_dir, _ = graded
    outputs = "\n".join(output_text(path) for path in work_dir.glob("course/autograded/*/ex2/ml_ex2.ipynb"))
    assert "blocked" in outputs  # the probes ran and reported
    assert "LEAK:" not in outputs
    assert "Reference answer" not in outputs and "BEGIN SOLUTION" not in outputs
    assert "connected to" not in outputs
    assert not (REPOSITORY / "HACKED").exists()
    assert not list(work_dir.rglob("HACKED"))


def test_no_student_process_lingers(graded):
    assert sandbox_processes() == []


def test_original_submissions_are_not_modified(graded):
    specs, _, work_dir, submissions = graded
    for spec in specs:
        built = submissions[spec["name"]]
        submitted_files = list(work_dir.glob(f"course/submitted/{spec['name']}/ex2/{built.notebook_filename}"))
        assert len(submitted_files) == 1
        assert submitted_files[0].read_bytes() == built.notebook, spec["name"]


def autograded(work_dir, name):
    return nbformat.read(str(work_dir / "course" / "autograded" / name / "ex2" / "ml_ex2.ipynb"), as_version=4)


def test_the_graders_verdicts_are_printable_text(graded):
    """Class names and exception texts of student code reach the verdict lines without escape sequences."""
    specs, _, work_dir, _ = graded
    for spec in specs:
        path = work_dir / "course" / "autograded" / spec["name"] / "ex2" / "ml_ex2.ipynb"
        if not path.exists():
            continue
        verdicts = [output.get("text", "") for cell in autograded(work_dir, spec["name"]).cells
                    for output in cell.get("outputs", []) if output.get("text", "").startswith("Autograder:")]
        assert all(not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", text) for text in verdicts), spec["name"]
    escaped = "\n".join(output.get("text", "") for cell in autograded(work_dir, "escape-sequences-in-names-and-exceptions").cells
                        for output in cell.get("outputs", []) if output.get("text", "").startswith("Autograder:"))
    assert "Evil" in escaped and "gnp.exe" in escaped  # the text is there, its control sequences are not


def findings_of(work_dir, name):
    return autograded(work_dir, name).metadata["coursekit"]["findings"]


def test_records_from_other_code_are_findings(graded):
    _, _, work_dir, _ = graded
    findings = findings_of(work_dir, "records-before-inside-and-around-the-recorder")
    explanations = " / ".join(f["cell"] + ": " + f["explanation"] for f in findings)
    assert "not a test cell" in explanations
    assert "net_model_test" in explanations and "optimizer_choice_test" in explanations
    assert findings_of(work_dir, "honest") == []


def test_a_cell_too_long_to_parse_is_a_finding_not_a_cost(graded):
    _, _, work_dir, _ = graded
    findings = findings_of(work_dir, "huge-cell-before-the-squeeze-answer")
    assert [f["cell"] for f in findings] == ["squeeze_target"] and "too long" in findings[0]["explanation"]


def test_the_grader_ran_each_team_on_its_own_given_values(graded):
    """The given cells hold values the grader drew, different per team, recorded in the notebook."""
    _, _, work_dir, _ = graded
    values = {name: autograded(work_dir, name).metadata["coursekit"]["given_values"] for name in ("honest", "honest-colab")}
    assert values["honest"] != values["honest-colab"]
    notebook = autograded(work_dir, "honest")
    assert notebook.cells[0].source.startswith("**Graded on the grader's own values.**")
    given = next(cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade_id") == "given_x_start")
    assert given.source.startswith(f"torch.manual_seed({values['honest']['x_start_seed']})\n")


def feedback_tags(work_dir, name):
    page = work_dir / "course" / "feedback" / name / "ex2" / "ml_ex2.html"
    return len(re.findall(r"<[a-zA-Z]", page.read_text(encoding="utf-8", errors="replace"))) if page.exists() else None


def test_feedback_pages_stay_bounded(graded):
    """Student text (outputs, added cells) must not make a feedback page of millions of elements: every
    element costs the grading worker time and memory (BeautifulSoup re-parses the page), and a TA's browser."""
    specs, _, work_dir, _ = graded
    honest = feedback_tags(work_dir, "honest")
    too_big = {spec["name"]: tags for spec in specs if "feedback_max_tags" in spec
               and (tags := feedback_tags(work_dir, spec["name"])) is not None and tags > spec["feedback_max_tags"]}
    assert honest is not None and honest < 20_000
    assert too_big == {}
