"""Rebuilding every submission on the release's skeleton before nbgrader sees it.

Students' files arrive with edited, stripped or forged metadata (Colab and VS
Code drop nbgrader's), tags that skip execution, deleted, duplicated,
reordered or retyped cells, or no notebook at all. Instead of trusting any of
that, the graded notebook is the release, cell for cell, with only the
*sources* of the student's answer cells (and code cells the student added)
taken over. Locked and test cells therefore always come from the instructor,
and nbgrader's own OverwriteCells then restores the hidden tests.
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass

import nbformat
from nbconvert.exporters import NotebookExporter
from nbconvert.exporters.exporter import ResourcesDict
from nbformat import NotebookNode

from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor

STATUS_KEY = "coursekit"
# Metadata a notebook of this course needs is a few hundred values; junk beyond this is dropped.
METADATA_NODE_LIMIT = 100_000
CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # nbformat 4.5's cell ids
# The release's one free cell for the students' names: markdown without
# nbgrader metadata, recognised by its instruction.
TEAM_MEMBERS_MARKER = "team members"
TEAM_MEMBERS_KEY = "team_members"
# Code cells a student added are run where they were; past these (scratch work is a few dozen cells) the
# rest is left out, so that a notebook of thousands of cells cannot make pages of millions of elements.
MAX_ADDED_CELLS = 200
MAX_ADDED_CHARACTERS = 1_000_000


@dataclass(frozen=True)
class RebuildNotes:
    """What the rebuild had to work around, for the grading report."""

    missing_answers: tuple[str, ...]
    duplicated_answers: tuple[str, ...]
    added_cells: int
    team_members: str = ""            # the names the students wrote, see names_in
    left_out_cells: int = 0           # added code cells past MAX_ADDED_CELLS / MAX_ADDED_CHARACTERS


def metadata_of(cell: NotebookNode) -> dict:
    metadata = cell.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def grade_id_of(cell: NotebookNode) -> str | None:
    nbgrader = metadata_of(cell).get("nbgrader")
    if isinstance(nbgrader, dict) and isinstance(nbgrader.get("grade_id"), str):
        return nbgrader["grade_id"]
    return None


def source_of(cell: NotebookNode) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):
        source = "".join(str(part) for part in source)
    return source if isinstance(source, str) else ""


def is_answer(cell: NotebookNode) -> bool:
    return bool(metadata_of(cell).get("nbgrader", {}).get("solution"))


def is_team_members_cell(cell: NotebookNode) -> bool:
    return (cell.get("cell_type") == "markdown" and grade_id_of(cell) is None
            and TEAM_MEMBERS_MARKER in source_of(cell).casefold())


def find_team_members(release: NotebookNode, student_cells: list[NotebookNode]) -> tuple[int, int] | None:
    """(release index, student index) of the team-members cell, or None if the student has none.

    The student's cell is the first markdown cell without a grade_id that still
    names "Team members"; failing that (the heading was overwritten), the free
    markdown cell right after the cell that precedes it in the release.
    """
    release_index = next((index for index, cell in enumerate(release.cells) if is_team_members_cell(cell)), None)
    if release_index is None:
        return None
    # Instructions that mention team members (the header) are not the cell, even without metadata.
    release_sources = {source_of(cell).strip() for cell in release.cells} - {source_of(release.cells[release_index]).strip()}
    for index, cell in enumerate(student_cells):
        if is_team_members_cell(cell) and source_of(cell).strip() not in release_sources:
            return release_index, index
    if release_index == 0:
        return None
    anchor = source_of(release.cells[release_index - 1]).strip()
    for index, cell in enumerate(student_cells[:-1]):
        candidate = student_cells[index + 1]
        if (source_of(cell).strip() == anchor and candidate.get("cell_type") == "markdown"
                and grade_id_of(candidate) is None and source_of(candidate).strip() not in release_sources):
            return release_index, index + 1
    return None


def team_members_text(notebook: NotebookNode) -> str:
    """What a team wrote about its members in a rebuilt notebook, without the instruction line; "" if nothing."""
    text = metadata_of(notebook).get(STATUS_KEY, {}).get(TEAM_MEMBERS_KEY)
    if isinstance(text, str):
        return text
    return names_in(next((source_of(cell) for cell in notebook.cells if is_team_members_cell(cell)), ""))


def names_in(text: str) -> str:
    """The team-members cell without its instruction line and the release's placeholder bullets."""
    lines = text.strip().splitlines()
    if lines and TEAM_MEMBERS_MARKER in lines[0].casefold():
        lines = lines[1:]
    kept = [line for line in lines if line.strip().strip("-*").strip() not in ("", "...", "…")]
    return "\n".join(kept).strip()


def find_answers(release: NotebookNode, student_cells: list[NotebookNode]) -> tuple[dict[str, int], list[str], list[str]]:
    """Which student cell holds which answer: by grade_id first, else by position after its locked anchor."""
    release_cells = release.cells
    answer_ids = [grade_id_of(cell) for cell in release_cells if is_answer(cell)]
    locked_sources = {source_of(cell).strip() for cell in release_cells if not is_answer(cell)}
    located: dict[str, int] = {}
    duplicated = []
    for index, cell in enumerate(student_cells):
        cell_id = grade_id_of(cell)
        if cell_id in answer_ids:
            if cell_id in located:
                duplicated.append(cell_id)
            else:
                located[cell_id] = index
    # A notebook saved without nbgrader's metadata (Colab, VS Code): the answer
    # is the cell that follows the same instructions as in the release.
    for position, release_cell in enumerate(release_cells):
        cell_id = grade_id_of(release_cell)
        if not is_answer(release_cell) or cell_id in located or position == 0:
            continue
        anchor = source_of(release_cells[position - 1]).strip()
        for index, cell in enumerate(student_cells[:-1]):
            candidate = student_cells[index + 1]
            if (source_of(cell).strip() == anchor and index + 1 not in located.values()
                    and source_of(candidate).strip() not in locked_sources
                    and grade_id_of(candidate) is None):
                located[cell_id] = index + 1
                break
    missing = [cell_id for cell_id in answer_ids if cell_id not in located]
    return located, missing, duplicated


def rebuild(*, submission: NotebookNode | None, release: NotebookNode) -> tuple[NotebookNode, RebuildNotes]:
    """The release with the student's answers; cells the student added follow the cell they followed."""
    student_cells = [cell for cell in (submission.cells if submission is not None else []) if isinstance(cell, dict)]
    located, missing, duplicated = find_answers(release, student_cells)
    release_sources = {source_of(cell).strip() for cell in release.cells}
    release_ids = {grade_id_of(cell) for cell in release.cells} - {None}
    answer_at = {index: cell_id for cell_id, index in located.items()}

    # Student code cells that are not in the release, attached to the last
    # recognised cell before them, so their code still runs where it did.
    attached: dict[str | None, list[str]] = {}
    anchor: str | None = None
    taken, characters, left_out = 0, 0, 0
    for index, cell in enumerate(student_cells):
        cell_id = grade_id_of(cell)
        if index in answer_at:
            anchor = answer_at[index]
        elif cell_id in release_ids:
            anchor = cell_id
        elif cell.get("cell_type") == "code" and source_of(cell).strip() and source_of(cell).strip() not in release_sources:
            if taken >= MAX_ADDED_CELLS or characters + len(source_of(cell)) > MAX_ADDED_CHARACTERS:
                left_out += 1
                continue
            taken, characters = taken + 1, characters + len(source_of(cell))
            attached.setdefault(anchor, []).append(source_of(cell))

    # The names are the one free text kept besides the answers: TAs and feedback show who wrote it.
    team_cell = find_team_members(release, student_cells)
    rebuilt = copy.deepcopy(release)
    rebuilt.cells = []
    for position, release_cell in enumerate(release.cells):
        cell = copy.deepcopy(release_cell)
        cell_id = grade_id_of(cell)
        if is_answer(cell) and cell_id in located:
            cell.source = source_of(student_cells[located[cell_id]])
        if team_cell is not None and position == team_cell[0]:
            cell.source = source_of(student_cells[team_cell[1]])
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        rebuilt.cells.append(cell)
        for source in attached.get(cell_id, []):
            rebuilt.cells.append(nbformat.v4.new_code_cell(source))
    for source in attached.get(None, []):  # added before any recognised cell: keep them first
        rebuilt.cells.insert(0, nbformat.v4.new_code_cell(source))
    added = sum(len(sources) for sources in attached.values())
    members = names_in(source_of(student_cells[team_cell[1]])) if team_cell is not None else ""
    notes = RebuildNotes(tuple(missing), tuple(duplicated), added, members, left_out)
    return rebuilt, notes


def release_notebook_path(config, assignment_id: str, notebook_id: str) -> str:
    coursedir = CourseDirectory(config=config)
    return os.path.join(coursedir.format_path(coursedir.release_directory, ".", assignment_id), f"{notebook_id}.ipynb")


class RebuildFromRelease(NbGraderPreprocessor):
    """Sanitizing, first step: grade the release's cells filled with the student's answers.

    Must run before nbgrader's OverwriteCells (which restores hidden tests by
    grade_id) and CheckCellMetadata (which aborts the whole run on forged
    schema versions): after this step every cell's metadata is the release's.
    """

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        info = resources["nbgrader"]
        release = nbformat.read(release_notebook_path(self.config, info["assignment"], info["notebook"]), as_version=4)
        unreadable = metadata_of(nb).get(STATUS_KEY, {}).get("unreadable", "")
        rebuilt, notes = rebuild(submission=None if unreadable else nb, release=release)
        rebuilt.metadata[STATUS_KEY] = {
            "unreadable": unreadable,
            "missing_answers": list(notes.missing_answers),
            "duplicated_answers": list(notes.duplicated_answers),
            "added_cells": notes.added_cells,
            TEAM_MEMBERS_KEY: notes.team_members,
            "findings": [{"cell": "notebook", "explanation": f"{notes.left_out_cells} code cells the students added "
                          f"were not run: past {MAX_ADDED_CELLS} added cells or {MAX_ADDED_CHARACTERS:,} characters "
                          "of them; read them in the submitted notebook"}] if notes.left_out_cells else [],
        }
        for cell_id in notes.missing_answers:
            self.log.warning("Answer cell %s not found in the submission; graded as unanswered", cell_id)
        return rebuilt, resources


def read_cells(file_stream) -> NotebookNode:
    """A notebook file's cells (type, id, source, metadata) and metadata; outputs are left out.

    Read as plain JSON, not with nbformat: validating a notebook with a few
    thousand malformed outputs or cells takes nbformat minutes (30 KB of `{}`
    outputs: over a minute). Outputs are never graded: the rebuild clears them.
    The metadata stays, since the execution pass reads the status the rebuild left.
    """
    data = json.load(file_stream)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    cells = data.get("cells")
    if isinstance(data.get("worksheets"), list):  # nbformat 3
        cells = [cell for sheet in data["worksheets"] if isinstance(sheet, dict)
                 for cell in (sheet.get("cells") if isinstance(sheet.get("cells"), list) else [])]
    if not isinstance(cells, list):
        raise ValueError("no list of cells")
    budget = [METADATA_NODE_LIMIT]
    notebook = nbformat.v4.new_notebook(metadata=nbformat.from_dict(bounded_copy(metadata_of(data), budget)))
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        source = source_of({"source": cell.get("source", cell.get("input", ""))})
        fields = {"metadata": nbformat.from_dict(bounded_copy(metadata_of(cell), budget))}
        if isinstance(cell.get("id"), str) and CELL_ID.fullmatch(cell["id"]):
            fields["id"] = cell["id"]
        if cell.get("cell_type") == "code":
            notebook.cells.append(nbformat.v4.new_code_cell(source, **fields))
        elif cell.get("cell_type") in ("markdown", "heading"):
            notebook.cells.append(nbformat.v4.new_markdown_cell(source, **fields))
        else:
            notebook.cells.append(nbformat.v4.new_raw_cell(source, **fields))
    return notebook


def bounded_copy(value, budget: list[int], depth: int = 0):
    """A copy of JSON `value` with at most `budget[0]` containers and values in all and 10 levels;
    what is beyond is left out, so that megabytes of `{}` in metadata cannot take gigabytes."""
    budget[0] -= 1
    if isinstance(value, dict):
        return {key: bounded_copy(item, budget, depth + 1) for key, item in value.items()
                if budget[0] > 0 and depth < 10}
    if isinstance(value, list):
        return [bounded_copy(item, budget, depth + 1) for item in value if budget[0] > 0 and depth < 10]
    return value


class TolerantNotebookExporter(NotebookExporter):
    """Reads any file as a notebook: what cannot be read becomes an empty one, marked why.

    Stock nbgrader stops grading a student (and for some errors everyone after
    them) when a file is not a valid notebook; here it is graded as blank and
    its status says why.
    """

    def from_file(self, file_stream, resources: ResourcesDict | None = None, **kw):
        try:
            notebook = read_cells(file_stream)
        except (Exception, MemoryError) as error:
            notebook = nbformat.v4.new_notebook()
            notebook.metadata[STATUS_KEY] = {"unreadable": f"not a readable notebook ({type(error).__name__})"}
        return self.from_notebook_node(notebook, resources=resources, **kw)
