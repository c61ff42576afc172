"""TA grades of one question: what a page saw, and saves that change only what the TA meant to change.

Score and comment of an answer are separate fields, each with a version: a
digest of its value in nbgrader's gradebook. Every change a page sends names
the version of the field the TA saw; a save against a field that has changed
since is refused as a conflict that carries both values, so no TA overwrites
another's grade unseen. As versions are digests of the values, a change made
anywhere counts (another question page, the formgrader, a script), and a
field changed back to the value the TA saw is no conflict: nothing the TA saw
would be lost.

Teams whose answers are the same form a group that is graded once. A group
save records, per team, the score and comment it wrote (table
`coursekit_group_grade` in the gradebook's database, one row per nbgrader
Grade). A team follows its group while it has neither a TA score nor a
comment, or while both still equal what the last group save wrote; any other
team was graded alone (on this page, in the formgrader, by a script), and
group saves leave it alone.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from nbgrader.api import Comment, Grade, Gradebook, MissingEntry, Student, SubmittedAssignment, SubmittedNotebook
from sqlalchemy import Column, Float, MetaData, String, Table, Text, delete, insert, inspect, select
from sqlalchemy.exc import DatabaseError

from coursekit.course import waits_for_ta

SCORE, COMMENT = "score", "comment"

# Not in nbgrader's metadata, so nbgrader's create_all and migrations never touch it. No foreign key:
# nbgrader may delete a Grade (a submission removed) and a stale row here only means "graded alone".
GROUP_GRADES = Table(
    "coursekit_group_grade", MetaData(),
    Column("grade_id", String(32), primary_key=True),   # nbgrader's Grade.id
    Column("score", Float),
    Column("comment", Text),
)


def version_of(value) -> str:
    return hashlib.sha256(json.dumps(value).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class TeamGrade:
    """One team's grade of one question, as the gradebook holds it."""

    team_id: str
    manual_score: float | None
    auto_score: float | None
    comment: str              # the TA's comment ("" if none)
    waits_for_ta: bool        # no TA score and nothing the autograder decided
    follows_group: bool

    @property
    def score(self) -> float | None:
        return self.manual_score if self.manual_score is not None else self.auto_score

    @property
    def score_version(self) -> str:
        return version_of(self.manual_score)

    @property
    def comment_version(self) -> str:
        return version_of(self.comment)

    def as_json(self) -> dict:
        return {"team": self.team_id, "score": self.score, "manual": self.manual_score, "auto": self.auto_score,
                "comment": self.comment, "scoreVersion": self.score_version, "commentVersion": self.comment_version,
                "graded": not self.waits_for_ta, "follows": self.follows_group}


@dataclass(frozen=True)
class TeamChange:
    """What a TA changed for one team, with the versions the page showed: None leaves a field as it is."""

    team_id: str
    score: float | None = None
    score_seen: str | None = None
    comment: str | None = None
    comment_seen: str | None = None


@dataclass(frozen=True)
class Conflict:
    """A field another save changed after the TA saw it: nothing was written to it."""

    team_id: str
    field: str                # SCORE or COMMENT
    mine: float | str
    theirs: TeamGrade

    def as_json(self) -> dict:
        return {"team": self.team_id, "field": self.field, "mine": self.mine, "theirs": self.theirs.as_json()}


@dataclass(frozen=True)
class SaveOutcome:
    saved: tuple[TeamGrade, ...]          # teams with at least one field written, as they are now
    conflicts: tuple[Conflict, ...]


def follows_group(manual_score: float | None, comment: str, recorded: tuple[float | None, str] | None) -> bool:
    if manual_score is None and not comment:
        return True
    return recorded is not None and recorded == (manual_score, comment)


def question_cells(gradebook: Gradebook, *, grade_id: str, notebook_id: str, assignment_id: str) -> tuple[str, str | None]:
    """Ids of the question's grade cell and of its solution cell (where nbgrader keeps comments)."""
    grade_cell = gradebook.find_grade_cell(grade_id, notebook_id, assignment_id)
    try:
        solution_cell = gradebook.find_solution_cell(grade_id, notebook_id, assignment_id).id
    except MissingEntry:
        solution_cell = None
    return grade_cell.id, solution_cell


def ensure_group_table(gradebook: Gradebook) -> None:
    try:
        GROUP_GRADES.create(bind=gradebook.engine, checkfirst=True)
    except DatabaseError:
        # Another server created it at the same moment (PostgreSQL reports the race as a duplicate).
        if not inspect(gradebook.engine).has_table(GROUP_GRADES.name):
            raise


def read_team_grades(gradebook: Gradebook, *, grade_id: str, notebook_id: str, assignment_id: str,
                     team_ids: list[str] | None = None, lock: bool = False) -> dict[str, TeamGrade]:
    """Every team's grade of the question (or those of `team_ids`).

    With `lock`, the rows are locked for the rest of the transaction, in one
    order (grade ids), so two saves of overlapping teams wait for each other
    instead of deadlocking, and read what the other one committed.
    """
    ensure_group_table(gradebook)
    rows = grade_rows(gradebook, grade_id=grade_id, notebook_id=notebook_id, assignment_id=assignment_id,
                      team_ids=team_ids, lock=lock)
    return {team: team_grade(team, grade, comment, recorded) for team, (grade, comment, recorded) in rows.items()}


def grade_rows(gradebook: Gradebook, *, grade_id: str, notebook_id: str, assignment_id: str,
               team_ids: list[str] | None, lock: bool) -> dict[str, tuple[Grade, Comment | None, tuple | None]]:
    db = gradebook.db
    grade_cell, solution_cell = question_cells(gradebook, grade_id=grade_id, notebook_id=notebook_id,
                                               assignment_id=assignment_id)
    if lock and db.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks and starts a write transaction at the first write: this one makes
        # the reads below and the writes after them one transaction no other writer can interleave with.
        db.execute(delete(GROUP_GRADES).where(GROUP_GRADES.c.grade_id.is_(None)))

    def of_teams(query):
        query = (query.join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
                 .join(Student, SubmittedAssignment.student_id == Student.id))
        return query.filter(Student.id.in_(team_ids)) if team_ids is not None else query

    grades = of_teams(db.query(Grade, Student.id).join(SubmittedNotebook, Grade.notebook_id == SubmittedNotebook.id)
                      .filter(Grade.cell_id == grade_cell))
    if lock:
        grades = grades.order_by(Grade.id).with_for_update(of=Grade)
    by_team = {team: grade for grade, team in grades.all()}
    comments: dict[str, Comment] = {}
    if solution_cell is not None:
        query = of_teams(db.query(Comment, Student.id).join(SubmittedNotebook, Comment.notebook_id == SubmittedNotebook.id)
                         .filter(Comment.cell_id == solution_cell))
        if lock:
            query = query.order_by(Comment.id).with_for_update(of=Comment)
        comments = {team: comment for comment, team in query.all()}
    recorded = group_records(db, [grade.id for grade in by_team.values()])
    return {team: (grade, comments.get(team), recorded.get(grade.id)) for team, grade in sorted(by_team.items())}


def group_records(db, grade_ids: list[str]) -> dict[str, tuple[float | None, str]]:
    if not grade_ids:
        return {}
    rows = db.execute(select(GROUP_GRADES).where(GROUP_GRADES.c.grade_id.in_(grade_ids))).all()
    return {row.grade_id: (row.score, row.comment or "") for row in rows}


def team_grade(team_id: str, grade: Grade, comment: Comment | None, recorded: tuple | None) -> TeamGrade:
    text = (comment.manual_comment or "") if comment is not None else ""
    return TeamGrade(team_id=team_id, manual_score=grade.manual_score, auto_score=grade.auto_score, comment=text,
                     waits_for_ta=waits_for_ta(grade), follows_group=follows_group(grade.manual_score, text, recorded))


def apply_changes(gradebook: Gradebook, *, grade_id: str, notebook_id: str, assignment_id: str, max_score: float,
                  changes: list[TeamChange], as_group: bool, explicit: bool = False) -> SaveOutcome:
    """Write the changes whose fields nobody changed since the TA saw them, in one transaction.

    `as_group`: the TA set these values for the team's group; otherwise for
    the team alone, which then keeps them through group saves. A group's
    values reach a team graded alone only when the TA says so (`explicit`):
    a team someone graded alone since the page saw it following its group
    (even by a comment only) is refused as a conflict.
    """
    for change in changes:
        check_change(change, max_score=max_score, grade_id=grade_id)
    db = gradebook.db
    ensure_group_table(gradebook)
    try:
        rows = grade_rows(gradebook, grade_id=grade_id, notebook_id=notebook_id, assignment_id=assignment_id,
                          team_ids=sorted({change.team_id for change in changes}), lock=True)
        missing = sorted({change.team_id for change in changes} - set(rows))
        if missing:
            raise MissingEntry(f"no submission of {', '.join(missing)} with {grade_id}")
        saved, conflicts = [], []
        for change in sorted(changes, key=lambda change: change.team_id):
            grade, comment, recorded = rows[change.team_id]
            before = team_grade(change.team_id, grade, comment, recorded)
            graded_alone = as_group and not explicit and not before.follows_group
            written = False
            if change.score is not None:
                if graded_alone or change.score_seen != before.score_version:
                    conflicts.append(Conflict(change.team_id, SCORE, change.score, before))
                else:
                    grade.manual_score = change.score
                    grade.needs_manual_grade = False
                    written = True
            if change.comment is not None:
                if comment is None:
                    raise MissingEntry(f"{grade_id} of {change.team_id} takes no comment")
                if graded_alone or change.comment_seen != before.comment_version:
                    conflicts.append(Conflict(change.team_id, COMMENT, change.comment, before))
                else:
                    comment.manual_comment = change.comment or None
                    written = True
            if written:
                db.flush()
                record = record_group_value(db, grade=grade, comment=comment, as_group=as_group)
                saved.append(team_grade(change.team_id, grade, comment, record))
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return SaveOutcome(tuple(saved), tuple(conflicts))


def record_group_value(db, *, grade: Grade, comment: Comment | None, as_group: bool) -> tuple | None:
    """Remember what a group save wrote for this team; a save for the team alone forgets it."""
    text = (comment.manual_comment or "") if comment is not None else ""
    db.execute(delete(GROUP_GRADES).where(GROUP_GRADES.c.grade_id == grade.id))
    if not as_group:
        return None
    db.execute(insert(GROUP_GRADES).values(grade_id=grade.id, score=grade.manual_score, comment=text))
    return grade.manual_score, text


def check_change(change: TeamChange, *, max_score: float, grade_id: str) -> None:
    if change.score is None and change.comment is None:
        raise ValueError(f"nothing to save for {change.team_id}")
    if change.score is not None:
        if not 0 <= change.score <= max_score:
            raise ValueError(f"a score for {grade_id} is between 0 and {max_score:g}")
        if change.score_seen is None:
            raise ValueError("a score change names the version of the score it replaces (score_seen)")
    if change.comment is not None and change.comment_seen is None:
        raise ValueError("a comment change names the version of the comment it replaces (comment_seen)")

