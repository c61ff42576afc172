"""report.html: how the class did, and what a TA still has to look at.

One standalone file, so it can be mailed or put on a share as is: the plots are
embedded PNGs, the style is inline and there is no JavaScript. The page comes
from templates/report.html.j2 with autoescaping: team ids, reasons, file names
and code come from students' uploads.
"""
from __future__ import annotations

import base64
import io
import statistics
from collections.abc import Callable
from pathlib import Path

from .errors import CourseKitError
from .exporting import NO_SUBMISSION, TEST_SUFFIX, format_points, is_autograded, summary_counts
from .importing import ImportProblem
from .records import TASK_CELLS, TeamResult
from .templating import render

REPORT_NAME = "report.html"
MOST_OFTEN_WRONG = 8
HISTOGRAM_BINS = 20
# Scores are sums of float points; a test cell scored within this of its maximum counts as full marks.
FULL_MARKS_TOLERANCE = 1e-6
STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:60em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}td.number{text-align:right}"
    "code{white-space:pre-wrap}img{max-width:100%;display:block;margin:.5em 0}"
)


def write_report(
    *, results: list[TeamResult], problems: tuple[ImportProblem, ...], missing: tuple[str, ...], output_folder: Path
) -> Path:
    """Write output_folder/report.html and return its path."""
    results = sorted(results, key=lambda result: result.team_id)
    graded = [result for result in results if result.status == "graded"]
    flagged = [result for result in results if result.findings]
    # Anchors are numbered rather than made from team ids, which come from file names.
    anchors = {result.team_id: f"integrity-{number}" for number, result in enumerate(flagged, start=1)}
    page = render(
        "report.html.j2",
        style=STYLE,
        summary=_summary(results, graded, missing),
        plots=_plots(results, graded),
        attention=_needs_attention(results, problems, missing, anchors),
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


def _summary(results: list[TeamResult], graded: list[TeamResult], missing: tuple[str, ...]) -> list[tuple[str, str]]:
    counts = summary_counts(results=results)
    students = {member for result in results for member in result.members}
    rows = [
        ("Teams", str(len(results))),
        ("Students in these teams", str(len(students))),
        ("Roster students without a submission", str(len(missing))),
        ("Graded", str(counts["graded"])),
        ("Failed (not graded)", str(counts["failed"])),
        ("Needing manual grading", str(counts["needs manual grading"])),
    ]
    if graded:
        totals = [result.total for result in graded]
        out_of = f" of {format_points(_assignment_max(results))}"
        rows += [
            ("Mean total of graded teams", format_points(statistics.mean(totals)) + out_of),
            ("Median total of graded teams", format_points(statistics.median(totals)) + out_of),
        ]
    return rows


def _plots(results: list[TeamResult], graded: list[TeamResult]) -> dict | None:
    if not graded:
        return None
    max_total = _assignment_max(results)
    task_means = _task_means(results, graded)
    wrong = _most_often_wrong(graded)
    return {
        "graded_teams": len(graded),
        "max_total": format_points(max_total),
        "histogram": _image(lambda axes: _draw_histogram(axes, [result.total for result in graded], max_total)),
        "task_shares": _image(lambda axes: _draw_task_shares(
            axes, {task: share for task, (_, _, share) in task_means.items()})),
        "tasks": [{"name": task, "mean": format_points(mean), "out_of": format_points(task_max), "share": f"{share:.0%}"}
                  for task, (mean, task_max, share) in task_means.items()],
        "wrong": [{"name": _display_name(cell_id), "failed": failed, "teams": teams, "share": f"{failed / teams:.0%}"}
                  for cell_id, failed, teams in wrong],
        "wrong_chart": _image(lambda axes: _draw_most_often_wrong(axes, wrong)) if wrong else "",
    }


def _assignment_max(results: list[TeamResult]) -> float:
    return max((result.max_total for result in results), default=0.0)


def _task_means(results: list[TeamResult], graded: list[TeamResult]) -> dict[str, tuple[float, float, float]]:
    """Task -> (mean points, task's points, mean share); tasks none of whose cells were graded are left out."""
    cell_max: dict[str, float] = {}
    for result in results:
        for cell in result.cells:
            cell_max[cell.grade_id] = max(cell_max.get(cell.grade_id, 0.0), cell.max_score)
    means = {}
    for task, cell_ids in TASK_CELLS.items():
        task_max = sum(cell_max.get(cell_id, 0.0) for cell_id in cell_ids)
        if task_max > 0:
            mean = statistics.mean(result.task_points()[task] for result in graded)
            means[task] = (mean, task_max, mean / task_max)
    return means


def _most_often_wrong(graded: list[TeamResult]) -> list[tuple[str, int, int]]:
    """(cell id, teams without full marks, teams with the cell), worst first, only cells someone got wrong."""
    failed: dict[str, int] = {}
    teams: dict[str, int] = {}
    for result in graded:
        for cell in result.cells:
            if not is_autograded(cell):
                continue
            teams[cell.grade_id] = teams.get(cell.grade_id, 0) + 1
            short = cell.score < cell.max_score - FULL_MARKS_TOLERANCE
            failed[cell.grade_id] = failed.get(cell.grade_id, 0) + short
    wrong = [(cell_id, failed[cell_id], teams[cell_id]) for cell_id in teams if failed[cell_id]]
    # Stable sort: equal shares stay in notebook order.
    wrong.sort(key=lambda entry: -entry[1] / entry[2])
    return wrong[:MOST_OFTEN_WRONG]


def _display_name(cell_id: str) -> str:
    return cell_id.removesuffix(TEST_SUFFIX)


def _image(draw: Callable) -> str:
    """A plot as a PNG data URL, so the page needs no other files."""
    # The Figure API, not pyplot: no global figure list to leak, and no GUI backend is ever chosen.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.5), dpi=100, layout="constrained")
    draw(figure.add_subplot())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _draw_histogram(axes, totals: list[float], max_total: float) -> None:
    from matplotlib.ticker import MaxNLocator

    upper = max_total if max_total > 0 else 1.0
    axes.hist(totals, bins=HISTOGRAM_BINS, range=(0, upper), color="#4878a8", edgecolor="white")
    axes.set_xlim(0, upper)
    axes.set_xlabel("total points")
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


def _needs_attention(
    results: list[TeamResult], problems: tuple[ImportProblem, ...], missing: tuple[str, ...], anchors: dict[str, str]
) -> list[dict[str, str]]:
    rows = []
    for result in results:
        if result.status != "graded":
            rows.append(_row(result.team_id, result.status, result.reason))
    for result in results:
        if result.findings:
            categories = ", ".join(sorted({finding.category for finding in result.findings}))
            count = len(result.findings)
            rows.append(_row(result.team_id, "integrity findings",
                             f"{count} finding{'s' if count != 1 else ''}: {categories}", anchor=anchors[result.team_id]))
    for problem in problems:
        rows.append(_row(problem.origin, problem.kind, problem.message))
    for username in missing:
        rows.append(_row(username, NO_SUBMISSION, "in the roster, but no notebook was found for this student"))
    return rows


def _row(who: str, issue: str, details: str, *, anchor: str = "") -> dict[str, str]:
    return {"who": who, "issue": issue, "details": details, "anchor": anchor}
