"""report.html: what a TA has to look at first, and how the class did so far.

One standalone file, so it can be mailed or put on a share as is: the plots are
embedded PNGs, the style is inline and there is no JavaScript. The page comes
from templates/report.html.j2 with autoescaping: team ids, reasons, file names
and code come from students' uploads.

Free-text answers wait for TAs. Until a TA grades one, its points are not
zero but unknown, so every mean, share and histogram here counts graded
points only and says out of how many graded points.
"""
from __future__ import annotations

import base64
import io
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coursekit.errors import CourseKitError
from coursekit.statuses import GradingStatus, STOPPED_EARLY
from coursekit.course import answer_of_test, is_autograded_cell
from coursekit.reports.exporting import NO_SUBMISSION, format_points
from coursekit.records import CellScore
from coursekit.olat.importing import ImportProblem
from coursekit.records import TASK_CELLS, TeamResult
from coursekit.reports.templating import render
from coursekit.reports.similarity_report import attention_rows as similarity_rows
from coursekit.similarity.records import SimilarityReport

REPORT_NAME = "report.html"
MOST_OFTEN_WRONG = 8
HISTOGRAM_BINS = 20
# Scores are sums of float points; a test cell scored within this of its maximum counts as full marks.
FULL_MARKS_TOLERANCE = 1e-6
# A notebook that earns at most this share of the autograded points is probably blank or the wrong file.
NEAR_BLANK_SHARE = 0.1
PARTIAL_STATUSES = STOPPED_EARLY
TWO_TEAMS = "student-in-two-teams"
STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}td.number{text-align:right}"
    "code{white-space:pre-wrap}img{max-width:100%;display:block;margin:.5em 0}"
)


@dataclass(frozen=True)
class TeamPoints:
    """One team's points, split into what the autograder and the TAs have graded so far."""

    autograded: float
    autograded_max: float
    manual: float                 # points of the free-text answers a TA has graded
    manual_graded_max: float      # what those answers were worth
    manual_graded: int            # free-text answers graded
    manual_answers: int           # free-text answers in all

    @property
    def graded(self) -> float:
        return self.autograded + self.manual

    @property
    def graded_max(self) -> float:
        return self.autograded_max + self.manual_graded_max

    @property
    def fully_graded(self) -> bool:
        return self.manual_graded == self.manual_answers


def is_test(cell: CellScore) -> bool:
    return is_autograded_cell(cell.grade_id)


def is_pending(cell: CellScore) -> bool:
    """A free-text answer no TA has graded yet: its points are unknown, not zero."""
    return not is_test(cell) and cell.needs_manual_grade


def team_points(result: TeamResult) -> TeamPoints:
    tests = [cell for cell in result.cells if is_test(cell)]
    answers = [cell for cell in result.cells if not is_test(cell)]
    graded_answers = [cell for cell in answers if not is_pending(cell)]
    return TeamPoints(
        autograded=sum(cell.score for cell in tests),
        autograded_max=sum(cell.max_score for cell in tests),
        manual=sum(cell.score for cell in graded_answers),
        manual_graded_max=sum(cell.max_score for cell in graded_answers),
        manual_graded=len(graded_answers),
        manual_answers=len(answers),
    )


def write_report(
    *, results: list[TeamResult], problems: tuple[ImportProblem, ...], missing: tuple[str, ...], output_folder: Path,
    similarity: SimilarityReport | None = None,
) -> Path:
    """Write output_folder/report.html and return its path; `similarity` adds its flagged pairs to what needs attention."""
    results = sorted(results, key=lambda result: result.team_id)
    points = {result.team_id: team_points(result) for result in results}
    # Teams with grades, crashed and timed-out ones included: their points are real.
    scored = [result for result in results if result.cells]
    flagged = [result for result in results if result.findings]
    # Anchors are numbered rather than made from team ids, which come from file names.
    anchors = {result.team_id: f"integrity-{number}" for number, result in enumerate(flagged, start=1)}
    page = render(
        "report.html.j2",
        style=STYLE,
        attention=_needs_attention(results, points, problems, missing, anchors)
        + (similarity_rows(similarity) if similarity else []),
        teams=[_team_row(result, points[result.team_id]) for result in results],
        progress=_ta_progress(scored),
        summary=_summary(results, scored, points, missing),
        plots=_plots(results, scored, points),
        flagged=[{"team_id": result.team_id, "anchor": anchors[result.team_id], "findings": result.findings}
                 for result in flagged],
    )
    path = output_folder / REPORT_NAME
    try:
        output_folder.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise CourseKitError(f"cannot write {path} ({error.strerror or error}); choose another output folder.") from None
    return path


def describe_status(result: TeamResult) -> str:
    if result.status in PARTIAL_STATUSES and result.cells:
        return f"{result.status}: partly graded, the points earned before it stopped count"
    return result.status


def _needs_attention(results: list[TeamResult], points: dict[str, TeamPoints], problems: tuple[ImportProblem, ...],
                     missing: tuple[str, ...], anchors: dict[str, str]) -> list[dict[str, str]]:
    """What a TA must look at, worst first: stopped or unreadable notebooks, blank ones, then the import."""
    rows = []
    for result in results:
        if result.status in PARTIAL_STATUSES and result.cells:
            earned = format_points(points[result.team_id].autograded)
            rows.append(_row(result.team_id, f"{result.status} (partly graded)",
                             f"{result.reason}; the {earned} autograded points earned before it stopped count, "
                             "the cells after it score 0"))
        elif result.status != GradingStatus.GRADED:
            rows.append(_row(result.team_id, result.status, result.reason))
    for result in results:
        team = points[result.team_id]
        if (result.status == GradingStatus.GRADED and team.autograded_max
                and team.autograded <= NEAR_BLANK_SHARE * team.autograded_max):
            rows.append(_row(result.team_id, "blank or near-blank",
                             f"{format_points(team.autograded)} of {format_points(team.autograded_max)} autograded "
                             "points: check that this is the team's real notebook"))
    for problem in sorted(problems, key=lambda problem: problem.kind != TWO_TEAMS):
        rows.append(_row(problem.origin, problem.kind, problem.message))
    for username in missing:
        rows.append(_row(username, NO_SUBMISSION, "in the roster, but no notebook was found for this student"))
    for result in results:
        if result.findings:
            categories = ", ".join(sorted({finding.category for finding in result.findings}))
            count = len(result.findings)
            rows.append(_row(result.team_id, "integrity findings",
                             f"{count} finding{'s' if count != 1 else ''}: {categories}", anchor=anchors[result.team_id]))
    return rows


def _row(who: str, issue: str, details: str, *, anchor: str = "") -> dict[str, str]:
    return {"who": who, "issue": issue, "details": details, "anchor": anchor}


def _team_row(result: TeamResult, team: TeamPoints) -> dict[str, str]:
    if not result.cells:
        return {"team": result.team_id, "members": ", ".join(result.members), "autograded": "–", "manual": "–",
                "total": "–", "status": describe_status(result), "progress": "–"}
    pending = team.manual_answers - team.manual_graded
    if not team.manual_graded:
        manual = f"{pending} pending" if pending else "–"
    else:
        manual = f"{format_points(team.manual)} of {format_points(team.manual_graded_max)}" + (
            f" ({pending} pending)" if pending else "")
    return {
        "team": result.team_id,
        "members": ", ".join(result.members),
        "autograded": f"{format_points(team.autograded)} of {format_points(team.autograded_max)}",
        "manual": manual,
        "total": f"{format_points(team.graded)} of {format_points(team.graded_max)}"
                 + ("" if team.fully_graded else " graded so far"),
        "status": describe_status(result),
        "progress": f"{team.manual_graded} of {team.manual_answers}",
    }


def _ta_progress(scored: list[TeamResult]) -> list[dict[str, str]]:
    """Per free-text question, in the notebook's order: how many teams' answers a TA has graded."""
    task_of = {cell_id: task for task, cell_ids in TASK_CELLS.items() for cell_id in cell_ids}
    graded: dict[str, int] = {}
    answers: dict[str, int] = {}
    for result in scored:
        for cell in result.cells:
            if not is_test(cell):
                answers[cell.grade_id] = answers.get(cell.grade_id, 0) + 1
                graded[cell.grade_id] = graded.get(cell.grade_id, 0) + (not is_pending(cell))
    order = list(task_of)
    ids = sorted(answers, key=lambda cell_id: order.index(cell_id) if cell_id in task_of else len(order))
    return [{"task": task_of.get(cell_id, ""), "question": cell_id, "graded": f"{graded[cell_id]} of {answers[cell_id]}"}
            for cell_id in ids]


def _summary(results: list[TeamResult], scored: list[TeamResult], points: dict[str, TeamPoints],
             missing: tuple[str, ...]) -> list[tuple[str, str]]:
    students = {member for result in results for member in result.members}
    statuses = [result.status for result in results]
    partial = sum(status in PARTIAL_STATUSES for status in statuses)
    completely = [points[result.team_id] for result in scored if points[result.team_id].fully_graded]
    rows = [
        ("Teams", str(len(results))),
        ("Students in these teams", str(len(students))),
        ("Roster students without a submission", str(len(missing))),
        ("Autograded", str(statuses.count(GradingStatus.GRADED))),
        ("Partly autograded (kernel crashed or timed out)", str(partial)),
        ("Not autograded (unreadable or missing notebook)", str(len(results) - statuses.count(GradingStatus.GRADED) - partial)),
        ("Waiting for TA grading", str(sum(not points[result.team_id].fully_graded for result in scored))),
    ]
    if scored:
        autograded = [points[result.team_id].autograded for result in scored]
        out_of = f" of {format_points(max(points[result.team_id].autograded_max for result in scored))}"
        rows += [
            ("Mean autograded points", format_points(statistics.mean(autograded)) + out_of),
            ("Median autograded points", format_points(statistics.median(autograded)) + out_of),
        ]
    if completely:
        totals = [team.graded for team in completely]
        rows.append(("Mean total of completely graded teams",
                     f"{format_points(statistics.mean(totals))} of {format_points(completely[0].graded_max)} "
                     f"({len(completely)} team{'s' if len(completely) != 1 else ''})"))
    return rows


def _plots(results: list[TeamResult], scored: list[TeamResult], points: dict[str, TeamPoints]) -> dict | None:
    if not scored:
        return None
    autograded_max = max(points[result.team_id].autograded_max for result in scored)
    completely = [points[result.team_id] for result in scored if points[result.team_id].fully_graded]
    total_max = _assignment_max(results)
    task_means = _task_means(scored)
    # Teams the grader stopped lost their later tests to the stop, not to wrong answers.
    wrong = _most_often_wrong([result for result in scored if result.status == GradingStatus.GRADED])
    return {
        "teams": len(scored),
        "autograded_max": format_points(autograded_max),
        "autograded_histogram": _image(lambda axes: _draw_histogram(
            axes, [points[result.team_id].autograded for result in scored], autograded_max, "autograded points")),
        "completely": len(completely),
        "total_max": format_points(total_max),
        "total_histogram": _image(lambda axes: _draw_histogram(
            axes, [team.graded for team in completely], total_max, "total points")) if completely else "",
        "task_shares": _image(lambda axes: _draw_task_shares(
            axes, {task: mean.share for task, mean in task_means.items() if mean.graded_max})),
        "tasks": [_task_row(task, mean) for task, mean in task_means.items()],
        "wrong": [{"name": _display_name(cell_id), "failed": failed, "teams": teams, "share": f"{failed / teams:.0%}"}
                  for cell_id, failed, teams in wrong],
        "wrong_chart": _image(lambda axes: _draw_most_often_wrong(axes, wrong)) if wrong else "",
    }


def _assignment_max(results: list[TeamResult]) -> float:
    return max((result.max_total for result in results), default=0.0)


@dataclass(frozen=True)
class TaskMean:
    points: float           # graded points of all teams together
    graded_max: float       # what the graded cells were worth, all teams together
    teams: int              # teams with at least one graded cell in the task
    task_max: float         # the task's points for one team
    pending: int            # free-text answers still waiting for a TA

    @property
    def share(self) -> float:
        return self.points / self.graded_max


def _task_means(scored: list[TeamResult]) -> dict[str, TaskMean]:
    """Per task, the graded cells only; a task whose cells are all pending has graded_max 0.

    The share is exact (all graded points over what they were worth); the mean
    points and their maximum are per team that has something graded in the task.
    """
    means = {}
    for task, cell_ids in TASK_CELLS.items():
        cells = [cell for result in scored for cell in result.cells if cell.grade_id in cell_ids]
        if not cells:
            continue
        graded = [cell for cell in cells if not is_pending(cell)]
        task_max = max(sum(cell.max_score for cell in result.cells if cell.grade_id in cell_ids) for result in scored)
        teams = sum(any(cell.grade_id in cell_ids and not is_pending(cell) for cell in result.cells)
                    for result in scored)
        means[task] = TaskMean(points=sum(cell.score for cell in graded),
                               graded_max=sum(cell.max_score for cell in graded), teams=teams,
                               task_max=task_max, pending=len(cells) - len(graded))
    return means


def _task_row(task: str, mean: TaskMean) -> dict[str, str]:
    pending = f"{mean.pending} free-text answer{'s' if mean.pending != 1 else ''} pending" if mean.pending else ""
    if not mean.teams:
        return {"name": task, "mean": "–", "out_of": "–", "share": "not graded yet", "task_max": format_points(mean.task_max),
                "pending": pending}
    return {
        "name": task,
        "mean": format_points(mean.points / mean.teams),
        "out_of": format_points(mean.graded_max / mean.teams),
        "share": f"{mean.share:.0%}",
        "task_max": format_points(mean.task_max),
        "pending": pending,
    }


def _most_often_wrong(graded: list[TeamResult]) -> list[tuple[str, int, int]]:
    """(cell id, teams without full marks, teams with the cell), worst first, only cells someone got wrong."""
    failed: dict[str, int] = {}
    teams: dict[str, int] = {}
    for result in graded:
        for cell in result.cells:
            if not is_test(cell):
                continue
            teams[cell.grade_id] = teams.get(cell.grade_id, 0) + 1
            short = cell.score < cell.max_score - FULL_MARKS_TOLERANCE
            failed[cell.grade_id] = failed.get(cell.grade_id, 0) + short
    wrong = [(cell_id, failed[cell_id], teams[cell_id]) for cell_id in teams if failed[cell_id]]
    # Stable sort: equal shares stay in notebook order.
    wrong.sort(key=lambda entry: -entry[1] / entry[2])
    return wrong[:MOST_OFTEN_WRONG]


def _display_name(cell_id: str) -> str:
    return answer_of_test(cell_id)


def _image(draw: Callable) -> str:
    """A plot as a PNG data URL, so the page needs no other files."""
    # The Figure API, not pyplot: no global figure list to leak, and no GUI backend is ever chosen.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.5), dpi=100, layout="constrained")
    draw(figure.add_subplot())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _draw_histogram(axes, totals: list[float], max_total: float, label: str) -> None:
    from matplotlib.ticker import MaxNLocator

    upper = max_total if max_total > 0 else 1.0
    axes.hist(totals, bins=HISTOGRAM_BINS, range=(0, upper), color="#4878a8", edgecolor="white")
    axes.set_xlim(0, upper)
    axes.set_xlabel(label)
    axes.set_ylabel("teams")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))


def _draw_task_shares(axes, shares: dict[str, float]) -> None:
    from matplotlib.ticker import PercentFormatter

    axes.bar(list(shares), list(shares.values()), color="#4878a8")
    axes.set_ylim(0, 1)
    axes.set_ylabel("mean share of points")
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    axes.tick_params(axis="x", labelrotation=30)


def _draw_most_often_wrong(axes, wrong: list[tuple[str, int, int]]) -> None:
    from matplotlib.ticker import PercentFormatter

    labels = [_display_name(cell_id) for cell_id, _, _ in wrong]
    axes.barh(labels, [failed / teams for _, failed, teams in wrong], color="#c0504d")
    axes.invert_yaxis()  # worst at the top
    axes.set_xlim(0, 1)
    axes.set_xlabel("share of graded teams without full marks")
    axes.xaxis.set_major_formatter(PercentFormatter(xmax=1))
