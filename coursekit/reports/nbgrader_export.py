"""`nbgrader export` for a course graded by teams: one row per student, with the team's points.

nbgrader's "student" of a submission is the team (`anna_bob`: the members'
OLAT user names joined by `_`, as coursekit.olat.importing names teams; user
names have no `_`), and the roster fills nbgrader's student table with the
members. nbgrader's own CSV plugin writes a row per entry of that table: team
rows without names, and every member with 0 points. This plugin, enabled by
`c.ExportApp.plugin_class` in nbgrader_config.py, writes a row per member with
the team's points and the member's names from the roster; a student in no
team that submitted gets 0 and no team. A student in two teams gets a row per
team, as in grades.csv.

The columns are nbgrader's, then `team`, `needs_manual_grading` (yes while an
answer waits for a TA) and `points_waiting_for_ta` (the points of those
answers), so nobody mistakes a score that is not final for a final one.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass

from nbgrader.api import Gradebook
from nbgrader.plugins.export import ExportPlugin

from coursekit.course import waits_for_ta
from coursekit.errors import CourseKitError
from coursekit.safe_text import spreadsheet_safe

TEAM_SEPARATOR = "_"
NBGRADER_COLUMNS = ("assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                    "raw_score", "late_submission_penalty", "score", "max_score")
COLUMNS = (*NBGRADER_COLUMNS, "team", "needs_manual_grading", "points_waiting_for_ta")


def team_members(team_id: str) -> tuple[str, ...]:
    return tuple(part for part in team_id.split(TEAM_SEPARATOR) if part)


@dataclass(frozen=True)
class TeamSubmission:
    team_id: str
    timestamp: object
    raw_score: float
    penalty: float
    points_waiting: float
    waiting: bool


def team_submissions(gradebook: Gradebook, assignment) -> dict[str, TeamSubmission]:
    found = {}
    for submission in assignment.submissions:
        grades = [grade for notebook in submission.notebooks for grade in notebook.grades]
        pending = [grade for grade in grades if waits_for_ta(grade)]
        found[submission.student.id] = TeamSubmission(
            team_id=submission.student.id, timestamp=submission.timestamp, raw_score=float(submission.score or 0.0),
            penalty=float(submission.late_submission_penalty or 0.0),
            points_waiting=sum(float(grade.max_score) for grade in pending), waiting=bool(pending))
    return found


class TeamCsvExportPlugin(ExportPlugin):
    """CSV with one row per student (not per team), each with their team's points."""

    def export(self, gradebook: Gradebook) -> None:
        destination = self.to or "grades.csv"
        wanted_assignments = {str(name) for name in self.assignment}
        wanted_students = {str(name) for name in self.student}
        students = {student.id: student for student in gradebook.students}
        assignments = [assignment for assignment in gradebook.assignments
                       if not wanted_assignments or assignment.name in wanted_assignments]
        submissions = {assignment.name: team_submissions(gradebook, assignment) for assignment in gradebook.assignments}
        teams = {team for by_team in submissions.values() for team in by_team}
        members = {member for team in teams for member in team_members(team)}
        # Everyone who has to get a grade: the members of every team, and roster students who are no team.
        people = sorted(members | (set(students) - teams))
        rows = []
        for assignment in assignments:
            by_team = submissions[assignment.name]
            for person in people:
                own_teams = sorted(team for team in by_team if person in team_members(team))
                if wanted_students and person not in wanted_students and not set(own_teams) & wanted_students:
                    continue
                for team in own_teams or [None]:
                    rows.append(self.row(assignment, students.get(person), person,
                                         by_team[team] if team is not None else None))
        self.log.info("Exporting %d rows (one per student and team) to %s", len(rows), destination)
        try:
            with open(destination, "w", encoding="utf-8", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(COLUMNS)
                writer.writerows([spreadsheet_safe(value) for value in row] for row in rows)
        except OSError as error:
            raise CourseKitError(f"cannot write {destination} ({error.strerror or error}); "
                                 "choose another file with --to.") from None

    @staticmethod
    def row(assignment, student, username: str, submission: TeamSubmission | None) -> list[str]:
        def text(value) -> str:
            return "" if value is None else str(value)

        names = (text(student.last_name), text(student.first_name), text(student.email)) if student else ("", "", "")
        if submission is None:
            return [assignment.name, text(assignment.duedate), "", username, *names, "0.0", "0.0", "0.0",
                    text(assignment.max_score), "", "no", "0.0"]
        score = max(0.0, submission.raw_score - submission.penalty)
        return [assignment.name, text(assignment.duedate), text(submission.timestamp), username, *names,
                text(submission.raw_score), text(submission.penalty), text(score), text(assignment.max_score),
                submission.team_id, "yes" if submission.waiting else "no", text(submission.points_waiting)]
