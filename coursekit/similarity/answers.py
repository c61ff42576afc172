"""Every team's answers, read from the autograded notebooks where nbgrader keeps them.

An answer is the source of an answer cell (code, or the markdown of a free-text
answer). For a code answer the judge's verdict comes along: the [FAILED] lines the
grader wrote into the test cell that checks it. The grader writes its verdict as the
test cell's first outputs (score, then "Autograder: ..."), so only those count;
whatever the student's code printed in that cell comes after them.
"""
from __future__ import annotations

from pathlib import Path

from nbformat import NotebookNode

from coursekit.course import (ON_GRADERS_VALUES, ASSIGNMENT_ID, NOTEBOOK_NAME, answer_of_test, autograded_notebook,
                              course_directory, is_autograded_cell)
from coursekit.errors import CourseKitError
from coursekit.notebooks import grade_id, is_answer_cell, read_notebook
from coursekit.similarity.records import Answer, AnswerKind

# Longer answers are compared and shown by their beginning: a pasted megabyte must not slow the run.
MAX_ANSWER_CHARS = 20_000
VERDICT_START = "Autograder:"
FAILED = "[FAILED]"


def verdict_failures(cell: NotebookNode) -> tuple[str, ...]:
    """The [FAILED] lines of the grader's verdict in a test cell, () if it passed or never ran."""
    for output in cell.get("outputs", [])[:2]:
        if output.get("output_type") == "stream":
            text = output.get("text", "")
            text = "".join(text) if isinstance(text, list) else str(text)
            if text.startswith(VERDICT_START):
                # Up to the numbers on this team's own given values: the same wrong answer reads the same.
                return tuple(line.split(ON_GRADERS_VALUES, 1)[0].strip()
                             for line in text.splitlines() if line.startswith(FAILED))
            return ()
    return ()


def answers_of_notebook(notebook: NotebookNode, team_id: str) -> list[Answer]:
    """The answer cells of one notebook, in notebook order, with the judge's failures of each code answer."""
    found: list[tuple[str, AnswerKind, str]] = []
    failures: dict[str, tuple[str, ...]] = {}
    for cell in notebook.get("cells", []):
        cell_id = grade_id(cell)
        if not isinstance(cell_id, str):
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        if is_answer_cell(cell):
            kind = AnswerKind.CODE if cell.get("cell_type") == "code" else AnswerKind.TEXT
            found.append((cell_id, kind, source[:MAX_ANSWER_CHARS]))
        elif cell.get("cell_type") == "code" and is_autograded_cell(cell_id):
            failures[answer_of_test(cell_id)] = verdict_failures(cell)
    return [Answer(team_id, cell_id, kind, text, failures.get(cell_id, ()) if kind == AnswerKind.CODE else ())
            for cell_id, kind, text in found]


def autograded_teams(course_root: Path) -> list[str]:
    """Teams with an autograded notebook, sorted; nbgrader's layout decides where they are."""
    directory = course_directory(Path(course_root))
    pattern = Path(directory.format_path(directory.autograded_directory, "*", ASSIGNMENT_ID)) / f"{NOTEBOOK_NAME}.ipynb"
    team_part = pattern.parts.index("*")
    anchor = Path(pattern.anchor)
    teams = {path.parts[team_part] for path in anchor.glob(str(pattern.relative_to(anchor)))}
    return sorted(team for team in teams if autograded_notebook(course_root, team).is_file())


def read_class(course_root: Path, teams: list[str]) -> dict[str, list[Answer]]:
    """Each team's answers; a team without a readable autograded notebook has none."""
    answers = {}
    for team in sorted(teams):
        path = autograded_notebook(course_root, team)
        try:
            answers[team] = answers_of_notebook(read_notebook(path), team)
        except CourseKitError:
            answers[team] = []
    return answers


def release_notebook(course_root: Path) -> NotebookNode:
    return read_notebook(Path(course_root) / "release" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb")


def release_sources(release: NotebookNode) -> tuple[list[str], list[str]]:
    """(code, markdown) of every cell of the release: what students were given, never evidence."""
    code, markdown = [], []
    for cell in release.get("cells", []):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        (code if cell.get("cell_type") == "code" else markdown).append(source)
    return code, markdown


def cell_order(release: NotebookNode) -> tuple[str, ...]:
    return tuple(grade_id(cell) for cell in release.get("cells", []) if is_answer_cell(cell))
