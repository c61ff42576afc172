"""report.html: how the class did, and what a TA still has to look at.

One standalone file, so it can be mailed or put on a share as is: the plots are
embedded PNGs, the style is inline and there is no JavaScript. Team ids, reasons,
file names and code come from students' uploads and are always escaped.
"""
from __future__ import annotations

import base64
import io
import statistics
from collections.abc import Callable
from html import escape
from pathlib import Path

from .errors import CourseKitError
from .exporting import NO_SUBMISSION, TEST_SUFFIX, format_points, is_autograded, summary_counts
from .importing import ImportProblem
from .records import TASK_CELLS, TeamResult

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
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        f'<head><meta charset="utf-8"><title>Exercise 2: grading report</title><style>{STYLE}</style></head>',
        "<body>",
        "<h1>Exercise 2: grading report</h1>",
        _headline(results, graded, missing),
        *_plots(results, graded),
        _needs_attention(results, problems, missing, anchors),
        _integrity(flagged, anchors),
        "</body>",
        "</html>",
    ]
    path = output_folder / REPORT_NAME
    try:
        output_folder.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    except OSError as error:
        raise CourseKitError(f"cannot write {path} ({error.strerror or error}); choose another output folder.") from None
    return path


def _headline(results: list[TeamResult], graded: list[TeamResult], missing: tuple[str, ...]) -> str:
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
    table = "".join(f'<tr><th>{escape(label)}</th><td class="number">{escape(value)}</td></tr>' for label, value in rows)
    return f"<h2>Summary</h2><table>{table}</table>"


def _plots(results: list[TeamResult], graded: list[TeamResult]) -> list[str]:
    if not graded:
        return ["<h2>Scores</h2><p>There were no graded teams, so there are no score plots.</p>"]
    max_total = _assignment_max(results)
    task_means = _task_means(results, graded)
    wrong = _most_often_wrong(graded)
    parts = [
        "<h2>Score distribution</h2>",
        f"<p>Totals of the {len(graded)} graded teams, out of {escape(format_points(max_total))} points.</p>",
        _image(lambda axes: _draw_histogram(axes, [result.total for result in graded], max_total),
               alt="Histogram of the graded teams' totals"),
        "<h2>Mean score per task</h2>",
        "<p>Mean points of the graded teams as a share of the task's points.</p>",
        _image(lambda axes: _draw_task_shares(axes, {task: share for task, (_, _, share) in task_means.items()}),
               alt="Bar chart of the mean score per task"),
        "<table><tr><th>Task</th><th>Mean points</th><th>Out of</th><th>Share</th></tr>",
        *(f'<tr><td>{escape(task)}</td><td class="number">{format_points(mean)}</td>'
          f'<td class="number">{format_points(task_max)}</td><td class="number">{share:.0%}</td></tr>'
          for task, (mean, task_max, share) in task_means.items()),
        "</table>",
        "<h2>Answers most often wrong</h2>",
    ]
    if not wrong:
        parts.append("<p>Every graded team got full marks on every autograded test.</p>")
        return parts
    parts += [
        f"<p>Autograded tests, by the share of graded teams without full marks (top {MOST_OFTEN_WRONG}).</p>",
        _image(lambda axes: _draw_most_often_wrong(axes, wrong), alt="Bar chart of the tests most often failed"),
        "<table><tr><th>Test</th><th>Teams without full marks</th><th>Share</th></tr>",
        *(f'<tr><td>{escape(_display_name(cell_id))}</td><td class="number">{failed} of {teams}</td>'
          f'<td class="number">{failed / teams:.0%}</td></tr>' for cell_id, failed, teams in wrong),
        "</table>",
    ]
    return parts


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


def _image(draw: Callable, *, alt: str) -> str:
    """A plot as an embedded PNG, so the page needs no other files."""
    # The Figure API, not pyplot: no global figure list to leak, and no GUI backend is ever chosen.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.5), dpi=100, layout="constrained")
    draw(figure.add_subplot())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{escape(alt)}">'


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
) -> str:
    rows = []
    for result in results:
        if result.status != "graded":
            rows.append(_row(result.team_id, result.status, escape(result.reason)))
    for result in results:
        if result.findings:
            categories = ", ".join(sorted({finding.category for finding in result.findings}))
            count = len(result.findings)
            details = (f"{count} finding{'s' if count != 1 else ''}: {escape(categories)}; "
                       f'<a href="#{anchors[result.team_id]}">see the integrity section</a>')
            rows.append(_row(result.team_id, "integrity findings", details))
    for problem in problems:
        rows.append(_row(problem.origin, problem.kind, escape(problem.message)))
    for username in missing:
        rows.append(_row(username, NO_SUBMISSION, "in the roster, but no notebook was found for this student"))
    if not rows:
        return "<h2>Needs attention</h2><p>Nothing needs attention.</p>"
    header = "<tr><th>Team, file or student</th><th>Issue</th><th>Details</th></tr>"
    return f"<h2>Needs attention</h2><table>{header}{''.join(rows)}</table>"


def _row(who: str, issue: str, details_html: str) -> str:
    return f"<tr><td>{escape(who)}</td><td>{escape(issue)}</td><td>{details_html}</td></tr>"


def _integrity(flagged: list[TeamResult], anchors: dict[str, str]) -> str:
    parts = [
        "<h2>Integrity</h2>",
        "<p>A static scan of the code students wrote: a finding is a reason to read the cell, "
        "not proof of cheating, and it never changes a grade.</p>",
    ]
    if not flagged:
        parts.append("<p>No team has integrity findings.</p>")
    for result in flagged:
        parts += [
            f'<h3 id="{anchors[result.team_id]}">{escape(result.team_id)}</h3>',
            "<table><tr><th>Category</th><th>Cell</th><th>Line</th><th>Code</th><th>Why a TA should look</th></tr>",
            *(f"<tr><td>{escape(finding.category)}</td><td>{escape(finding.cell)}</td>"
              f'<td class="number">{escape(str(finding.line or ""))}</td><td><code>{escape(finding.code)}</code></td>'
              f"<td>{escape(finding.explanation)}</td></tr>" for finding in result.findings),
            "</table>",
        ]
    return "\n".join(parts)
