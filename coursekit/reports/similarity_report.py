"""The similarity step's outputs: similarity.csv, a page per pair, an index page, and report.html's rows.

Every page comes from an autoescaping template (templates/similarity_*.html.j2): answers are
students' text and are shown as text, never as HTML, without control characters. Page names
are numbers, never team ids, which come from file names. A pair is a reason to compare the
answers; the pages say so and nothing here changes a grade.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from coursekit.errors import CourseKitError
from coursekit.reports.templating import render
from coursekit.safe_text import printable, spreadsheet_safe
from coursekit.similarity.records import Answer, AnswerKind, PairScore, SimilarityReport

CSV_NAME = "similarity.csv"
PAGES_FOLDER = "similarity"
INDEX_NAME = "index.html"
CSV_COLUMNS = ("team_a", "team_b", "score", "answers", "flagged")
NOT_A_VERDICT = ("Similar answers are a reason to compare them, not proof of copying: teams may have used the same "
                 "source, or the answer may simply be common. No grade changes because of this page.")
STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}"
    ".note{background:#fff8e0;border:1px solid #e0c060;padding:.6em 1em}"
    ".answer{white-space:pre-wrap;font-family:monospace;font-size:90%;margin:0;overflow-wrap:anywhere}"
    ".text{font-family:sans-serif}mark{background:#ffe066}.given{color:#999}"
    "td.side{width:50%}td.number{text-align:right}"
)


@dataclass(frozen=True)
class SimilarityFiles:
    csv: Path
    index: Path
    pages: dict[tuple[str, str], Path]   # (team_a, team_b) -> its page


def page_name(number: int) -> str:
    return f"pair-{number:03d}.html"


def pages_of(report: SimilarityReport) -> dict[tuple[str, str], str]:
    """Each recorded pair's page, numbered strongest first, relative to the output folder."""
    return {(pair.team_a, pair.team_b): f"{PAGES_FOLDER}/{page_name(number)}"
            for number, pair in enumerate(report.pairs, start=1)}


def write_csv(*, report: SimilarityReport, path: Path) -> None:
    """team_a,team_b,score,answers,flagged: one line per pair at or above the record threshold."""
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for pair in report.pairs:
            writer.writerow([spreadsheet_safe(value) for value in (
                pair.team_a, pair.team_b, f"{pair.score:.4f}", ";".join(pair.answers), "yes" if pair.flagged else "no")])


def segments(answer: Answer | None, spans: tuple[tuple[int, int], ...],
             given_lines: frozenset[str]) -> list[tuple[str, str]]:
    """The answer cut into (text, kind) pieces: "match" (shared with the other team), "given" (the release's
    code) or ""."""
    if answer is None:
        return []
    text = answer.text
    given = []
    if answer.kind == AnswerKind.CODE:
        position = 0
        for line in text.splitlines(keepends=True):
            if line.strip() and line.strip() in given_lines:
                given.append((position, position + len(line)))
            position += len(line)
    cuts = sorted({0, len(text), *(min(max(0, point), len(text)) for span in [*spans, *given] for point in span)})

    def inside(ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...], start: int, end: int) -> bool:
        return any(low <= start and end <= high for low, high in ranges)

    pieces: list[tuple[str, str]] = []
    for start, end in zip(cuts, cuts[1:]):
        kind = "given" if inside(given, start, end) else "match" if inside(spans, start, end) else ""
        if pieces and pieces[-1][1] == kind:
            pieces[-1] = (pieces[-1][0] + text[start:end], kind)
        else:
            pieces.append((text[start:end], kind))
    return [(printable(piece), kind) for piece, kind in pieces if piece]


def pair_context(report: SimilarityReport, pair: PairScore) -> dict:
    matches = {match.grade_id: match for match in pair.matches}
    cells = []
    ordered = sorted(report.cell_order, key=lambda cell_id: (cell_id not in matches,
                                                              -matches[cell_id].evidence if cell_id in matches else 0))
    for cell_id in ordered:
        answer_a = report.answers.get((pair.team_a, cell_id))
        answer_b = report.answers.get((pair.team_b, cell_id))
        match = matches.get(cell_id)
        cells.append({
            "grade_id": cell_id,
            "code": (answer_a or answer_b) is not None and (answer_a or answer_b).kind == AnswerKind.CODE,
            "match": match,
            "a": segments(answer_a, match.spans_a if match else (), report.given_lines),
            "b": segments(answer_b, match.spans_b if match else (), report.given_lines),
        })
    return {"pair": pair, "cells": cells}


def write_pages(*, report: SimilarityReport, output_folder: Path) -> tuple[Path, dict[tuple[str, str], Path]]:
    folder = output_folder / PAGES_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("pair-*.html"):
        stale.unlink()
    names = pages_of(report)
    pages = {}
    for pair in report.pairs:
        path = output_folder / names[(pair.team_a, pair.team_b)]
        path.write_text(render("similarity_pair.html.j2", style=STYLE, note=NOT_A_VERDICT,
                               threshold=report.settings.threshold, **pair_context(report, pair)), encoding="utf-8")
        pages[(pair.team_a, pair.team_b)] = path
    index = folder / INDEX_NAME
    links = {key: Path(name).name for key, name in names.items()}
    clustered = report.clustered_pairs()
    index.write_text(render(
        "similarity_index.html.j2", style=STYLE, note=NOT_A_VERDICT, settings=report.settings,
        teams=len(report.teams), clusters=[{"teams": cluster.teams, "pairs": [(pair, links[(pair.team_a, pair.team_b)])
                                                                            for pair in cluster.pairs]}
                                           for cluster in report.clusters],
        pairs=[(pair, links[(pair.team_a, pair.team_b)]) for pair in report.pairs
               if (pair.team_a, pair.team_b) not in clustered]), encoding="utf-8")
    return index, pages


def write_similarity(*, report: SimilarityReport, output_folder: Path) -> SimilarityFiles:
    """similarity.csv, similarity/index.html and similarity/pair-NNN.html in `output_folder`."""
    try:
        output_folder.mkdir(parents=True, exist_ok=True)
        write_csv(report=report, path=output_folder / CSV_NAME)
        index, pages = write_pages(report=report, output_folder=output_folder)
    except OSError as error:
        raise CourseKitError(f"cannot write the similarity pages in {output_folder} ({error.strerror or error}); "
                             "choose another output folder.") from None
    return SimilarityFiles(output_folder / CSV_NAME, index, pages)


def attention_rows(report: SimilarityReport) -> list[dict]:
    """report.html's "Needs attention" rows: one per cluster, one per other flagged pair, strongest first."""
    names = pages_of(report)
    rows = []
    for cluster in report.clusters:
        strongest = max(pair.score for pair in cluster.pairs)
        rows.append({"who": ", ".join(cluster.teams), "issue": f"similar answers ({len(cluster.teams)} teams)",
                     "details": f"{len(cluster.pairs)} pairs of these teams share answers (strongest score "
                                f"{strongest:.2f}); {NOT_A_VERDICT}", "anchor": "",
                     "links": [(names[(pair.team_a, pair.team_b)], f"{pair.team_a} – {pair.team_b}")
                               for pair in cluster.pairs]})
    clustered = report.clustered_pairs()
    for pair in report.flagged:
        if (pair.team_a, pair.team_b) in clustered:
            continue
        rows.append({"who": f"{pair.team_a}, {pair.team_b}", "issue": "similar answers",
                     "details": f"score {pair.score:.2f} from {', '.join(pair.answers[:6])}"
                                f"{' …' if len(pair.answers) > 6 else ''}; {NOT_A_VERDICT}", "anchor": "",
                     "links": [(names[(pair.team_a, pair.team_b)], "compare the answers")]})
    return rows
