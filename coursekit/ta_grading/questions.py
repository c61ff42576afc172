"""One free-text question across all teams: what the grading page shows and saves.

Scores and comments live only in nbgrader's gradebook (`Grade.manual_score`,
`Comment.manual_comment`), so the formgrader, `nbgrader export` and
`coursekit grade` see exactly what a TA saved here. Answer texts and team
members are read from the autograded notebooks, the reference answer and
rubric from the master notebook's solution region. How grades are read,
versioned and saved (two TAs, answer groups): coursekit.ta_grading.grades.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.api import Assignment, Gradebook, GradeCell, MissingEntry, Notebook, SolutionCell
from sqlalchemy.orm import aliased

from coursekit.errors import CourseKitError
from coursekit.notebooks import SOLUTION_REGION, TEXT_STUB
from coursekit.nbgrader_plugins.rebuild import grade_id_of, source_of, team_members_text
from coursekit.nbgrader_plugins.keep_reviews import record_graded_answers
from coursekit.ta_grading.grades import SaveOutcome, TeamChange, TeamGrade, apply_changes, read_team_grades

# Assignment, notebook and cell names as they may appear in a URL.
QUESTION_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class CoursePaths:
    """Where nbgrader keeps a course's notebooks and gradebook."""

    db_url: str
    course_id: str
    coursedir: object     # nbgrader's CourseDirectory: its path formatting is the course's own

    def master_notebook(self, *, assignment_id: str, notebook_id: str) -> Path:
        return Path(self.coursedir.format_path(self.coursedir.source_directory, ".", assignment_id)) / f"{notebook_id}.ipynb"

    def autograded_notebook(self, *, team_id: str, assignment_id: str, notebook_id: str) -> Path:
        folder = self.coursedir.format_path(self.coursedir.autograded_directory, team_id, assignment_id)
        return Path(folder) / f"{notebook_id}.ipynb"


@dataclass(frozen=True)
class QuestionRef:
    assignment_id: str
    notebook_id: str
    grade_id: str


@dataclass(frozen=True)
class QuestionProgress:
    question: QuestionRef
    max_score: float
    graded: int           # answers nbgrader no longer flags as needing a manual grade
    total: int


@dataclass(frozen=True)
class TeamAnswer:
    team_id: str
    members: str          # what the team wrote in its team-members cell ("" if nothing)
    text: str             # the answer as written, shown as plain text
    grade: TeamGrade

    @property
    def score(self) -> float | None:
        return self.grade.score

    @property
    def comment(self) -> str:
        return self.grade.comment

    @property
    def needs_manual_grade(self) -> bool:
        return self.grade.waits_for_ta


@dataclass(frozen=True)
class AnswerGroup:
    """Teams whose answers are the same after normalizing whitespace and case."""

    key: str
    answers: tuple[TeamAnswer, ...]

    @property
    def text(self) -> str:
        return self.answers[0].text

    @property
    def blank(self) -> bool:
        return self.key == ""

    @property
    def needs_manual_grade(self) -> bool:
        return any(answer.needs_manual_grade for answer in self.answers)


@dataclass(frozen=True)
class QuestionPage:
    progress: QuestionProgress
    prompt: str           # the instructions above the answer cell (markdown, instructor's)
    reference: str        # the solution region: reference answer and rubric (markdown, instructor's)
    groups: tuple[AnswerGroup, ...]


def normalized(text: str) -> str:
    """The grouping key: case and whitespace do not make answers different; the stub counts as blank."""
    key = " ".join(text.split()).casefold()
    return "" if key in ("", TEXT_STUB.casefold()) else key


def group_answers(answers: list[TeamAnswer]) -> tuple[AnswerGroup, ...]:
    """Largest groups first (one score covers most teams), blank answers last, then by team."""
    by_key: dict[str, list[TeamAnswer]] = {}
    for answer in sorted(answers, key=lambda a: a.team_id):
        by_key.setdefault(normalized(answer.text), []).append(answer)
    groups = [AnswerGroup(key, tuple(members)) for key, members in by_key.items()]
    groups.sort(key=lambda group: (group.blank, -len(group.answers), group.answers[0].team_id))
    return tuple(groups)


def manual_questions(gradebook: Gradebook) -> list[tuple[QuestionRef, float]]:
    """Every answer cell a TA grades: a grade cell that is also a solution cell, in notebook order."""
    # Both cell kinds share nbgrader's base_cell table: the solution side needs its own alias.
    solution = aliased(SolutionCell, flat=True)
    rows = (gradebook.db.query(Assignment.name, Notebook.name, GradeCell.name, GradeCell.max_score)
            .join(Notebook, GradeCell.notebook_id == Notebook.id)
            .join(Assignment, Notebook.assignment_id == Assignment.id)
            .join(solution, (solution.notebook_id == Notebook.id) & (solution.name == GradeCell.name))
            .order_by(Assignment.name, Notebook.name)
            .all())
    return [(QuestionRef(assignment, notebook, cell), float(points)) for assignment, notebook, cell, points in rows]


def team_grades(gradebook: Gradebook, question: QuestionRef, team_ids: list[str] | None = None) -> dict[str, TeamGrade]:
    return read_team_grades(gradebook, grade_id=question.grade_id, notebook_id=question.notebook_id,
                            assignment_id=question.assignment_id, team_ids=team_ids)


def progress_of(question: QuestionRef, max_score: float, grades: dict[str, TeamGrade]) -> QuestionProgress:
    return QuestionProgress(question, max_score, graded=sum(not grade.waits_for_ta for grade in grades.values()),
                            total=len(grades))


def question_progress(gradebook: Gradebook, question: QuestionRef, max_score: float) -> QuestionProgress:
    return progress_of(question, max_score, team_grades(gradebook, question))


def list_questions(*, paths: CoursePaths) -> list[QuestionProgress]:
    with open_gradebook(paths) as gradebook:
        questions = manual_questions(gradebook)
        order = cell_order(paths, {(q.assignment_id, q.notebook_id) for q, _ in questions})
        questions.sort(key=lambda item: (item[0].assignment_id, item[0].notebook_id,
                                         order.get((item[0].assignment_id, item[0].notebook_id), {}).get(item[0].grade_id, 0)))
        return [question_progress(gradebook, question, points) for question, points in questions]


def cell_order(paths: CoursePaths, notebooks: set[tuple[str, str]]) -> dict[tuple[str, str], dict[str, int]]:
    """Questions in the order of the master notebook, as TAs know the sheet."""
    order = {}
    for assignment_id, notebook_id in notebooks:
        master = read_master(paths, assignment_id=assignment_id, notebook_id=notebook_id)
        order[(assignment_id, notebook_id)] = {grade_id_of(cell): index for index, cell in enumerate(master.cells)}
    return order


def read_master(paths: CoursePaths, *, assignment_id: str, notebook_id: str):
    path = paths.master_notebook(assignment_id=assignment_id, notebook_id=notebook_id)
    try:
        return nbformat.read(str(path), as_version=4)
    except (OSError, ValueError) as error:
        raise CourseKitError(f"cannot read the master notebook {path} ({error}); "
                             "start the grading page in the course folder.") from None


def reference_of(master, grade_id: str) -> tuple[str, str]:
    """The instructions above the answer cell and the answer cell's solution region."""
    for index, cell in enumerate(master.cells):
        if grade_id_of(cell) == grade_id:
            prompt = source_of(master.cells[index - 1]) if index > 0 else ""
            regions = SOLUTION_REGION.findall(source_of(cell))
            return prompt, "\n".join(regions) if regions else source_of(cell)
    return "", ""


def load_question(*, paths: CoursePaths, question: QuestionRef) -> QuestionPage:
    master = read_master(paths, assignment_id=question.assignment_id, notebook_id=question.notebook_id)
    prompt, reference = reference_of(master, question.grade_id)
    with open_gradebook(paths) as gradebook:
        max_score = max_score_of(gradebook, question)
        grades = team_grades(gradebook, question)
    answers = []
    for team_id, grade in grades.items():
        text, members = read_answer(paths, question, team_id)
        answers.append(TeamAnswer(team_id=team_id, members=members, text=text, grade=grade))
    return QuestionPage(progress=progress_of(question, max_score, grades), prompt=prompt, reference=reference,
                        groups=group_answers(answers))


def max_score_of(gradebook: Gradebook, question: QuestionRef) -> float:
    """The question's points; MissingEntry if it is no question a TA grades."""
    questions = dict(manual_questions(gradebook))
    if question not in questions:
        raise MissingEntry(question.grade_id)
    return questions[question]


def grades_now(*, paths: CoursePaths, question: QuestionRef) -> tuple[dict[str, TeamGrade], QuestionProgress]:
    """Every team's grade of the question and the question's progress, as a page polls them."""
    with open_gradebook(paths) as gradebook:
        max_score = max_score_of(gradebook, question)
        grades = team_grades(gradebook, question)
    return grades, progress_of(question, max_score, grades)


# Answer texts and team members by notebook file and its size and modification time: saves read the
# texts of the teams they grade, and a notebook is parsed once until autograding writes it again.
_ANSWERS: dict[tuple[str, int, int], tuple[dict[str, str], str]] = {}


def read_answer(paths: CoursePaths, question: QuestionRef, team_id: str) -> tuple[str, str]:
    path = paths.autograded_notebook(team_id=team_id, assignment_id=question.assignment_id,
                                     notebook_id=question.notebook_id)
    try:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _ANSWERS:
            notebook = nbformat.read(str(path), as_version=4)
            if len(_ANSWERS) > 4096:
                _ANSWERS.clear()
            texts: dict[str, str] = {}
            for cell in notebook.cells:
                if grade_id_of(cell):
                    texts.setdefault(grade_id_of(cell), source_of(cell))
            _ANSWERS[key] = (texts, team_members_text(notebook))
    except (OSError, ValueError):
        return "", ""
    texts, members = _ANSWERS[key]
    return texts.get(question.grade_id, ""), members


def save_changes(*, paths: CoursePaths, question: QuestionRef, changes: list[TeamChange], as_group: bool,
                 explicit: bool = False) -> tuple[SaveOutcome, QuestionProgress]:
    """Save a TA's changes to some teams' grades of one question, in one short transaction.

    Only those teams' Grade and Comment rows of this question are written, so
    TAs grading other questions (or other teams) at the same time lose nothing;
    a field changed since the TA saw it is not written but returned as a conflict.
    """
    with open_gradebook(paths) as gradebook:
        max_score = max_score_of(gradebook, question)
        outcome = apply_changes(gradebook, grade_id=question.grade_id, notebook_id=question.notebook_id,
                                assignment_id=question.assignment_id, max_score=max_score, changes=changes,
                                as_group=as_group, explicit=explicit)
        progress = question_progress(gradebook, question, max_score)
    scored = [grade.team_id for grade in outcome.saved if grade.manual_score is not None]
    for team_id in scored:
        text, _ = read_answer(paths, question, team_id)
        record_graded_answers(course_root=Path(paths.coursedir.root), student_id=team_id,
                              notebook_id=question.notebook_id, answers={question.grade_id: text})
    return outcome, progress


def open_gradebook(paths: CoursePaths) -> Gradebook:
    """A gradebook per request: its session is short, so no transaction stays open between saves."""
    return Gradebook(paths.db_url, paths.course_id)


COURSE_CONFIG = "nbgrader_config.py"
DEFAULT_COURSE = "default_course"


def course_paths(*, root_dir: Path) -> CoursePaths:
    """The course whose nbgrader_config.py is in the server's root folder, as the formgrader finds it."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    if not (root_dir / COURSE_CONFIG).exists():
        raise CourseKitError(f"{root_dir} has no {COURSE_CONFIG}; start the server in the course folder.")
    config = PyFileConfigLoader(COURSE_CONFIG, path=str(root_dir)).load_config()
    if "root" not in config.CourseDirectory:
        config.CourseDirectory.root = str(root_dir)
    coursedir = CourseDirectory(config=config)
    return CoursePaths(db_url=coursedir.db_url, course_id=coursedir.course_id or DEFAULT_COURSE, coursedir=coursedir)
