"""From an OLAT download to grades, feedback and a report, in one call.

Steps: import the download into nbgrader's `submitted/`, grade what changed
with the engine (coursekit.engine.run: local workers or a Dask cluster, each
with its own private course and SQLite gradebook, so a run never locks or
corrupts the real one; the results merged as they arrive), refresh feedback,
scan for integrity findings, and write grades.csv, report.html and the OLAT files.
"""
from __future__ import annotations

import dataclasses
import filecmp
import hashlib
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from traitlets.config.loader import PyFileConfigLoader

from coursekit.reports import exporting
from coursekit.reports import feedback
from coursekit.sandbox import fork_server
from coursekit.olat import importing
from coursekit.reports import integrity
from coursekit.olat import export as olat_export
from coursekit.reports import reporting
from coursekit.sandbox import kernel_manager as sandbox
from coursekit.course import autograded_notebook
from coursekit.errors import CourseKitError
from coursekit.statuses import GradingStatus
from coursekit.engine.fast_gradebook import create_gradebook
from coursekit.engine.grading import (autograded_metadata, ensure_tools_on_path, nbgrader_in_fork, read_scores,
                                      submission_path)
from coursekit.engine.run import executor_for, grade_teams
from coursekit.engine.worker import prototype_cache, share_fork_server
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.notebooks import read_notebook
from coursekit.nbgrader_plugins.rebuild import STATUS_KEY, TEAM_MEMBERS_KEY, team_members_text
from coursekit.records import TeamResult
from coursekit.safe_text import one_line, printable
from coursekit.similarity.compare import compare_course, settings_from
from coursekit.similarity.records import SimilarityReport
from coursekit.reports import similarity_report

STATE_FOLDER = ".coursekit"


@dataclass(frozen=True)
class RunSummary:
    results: tuple[TeamResult, ...]
    graded_now: tuple[str, ...]       # teams graded in this run (the others were unchanged)
    problems: tuple[importing.ImportProblem, ...]
    missing: tuple[str, ...]
    output_folder: Path
    seconds: float
    olat: olat_export.OlatExportResult | None = None
    feedback_refreshed: tuple[str, ...] = ()  # teams whose feedback this run (re)made
    similar_pairs: int = 0                      # pairs of teams with similar answers that need a look

    def lines(self) -> list[str]:
        counts = exporting.summary_counts(results=list(self.results))
        return [printable(line) for line in [
            f"teams: {len(self.results)} ({len(self.graded_now)} graded now, "
            f"{len(self.results) - len(self.graded_now)} unchanged) in {self.seconds:.0f} s",
            f"graded: {counts['graded']}   partly graded (crashed, timed out): {counts['partly graded']}   "
            f"failed: {counts['failed']}   "
            f"needs manual grading: {counts['needs manual grading']}",
            f"import problems: {len(self.problems)}   roster students without a submission: {len(self.missing)}",
            f"grades:    {self.output_folder / 'grades.csv'}",
            f"feedback:  {self.output_folder / 'feedback'}",
            f"integrity: {self.output_folder / 'integrity.html'}",
            f"report:    {self.output_folder / 'report.html'}",
            f"similar:   {self.similar_pairs} pairs of teams to compare ({self.output_folder / 'similarity.csv'})",
            *([f"OLAT:      {self.olat.bulk_assessment.parent} ({len(self.olat.rows)} students; "
               f"{len(self.olat.left_out)} left out, see {self.olat.left_out_file.name})"] if self.olat else []),
        ]]


def course_config(course_root: Path):
    if not (course_root / "nbgrader_config.py").exists():
        raise CourseKitError(f"{course_root} has no nbgrader_config.py; pass --course with the course folder.")
    if not (course_root / "release" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb").exists():
        raise CourseKitError(f"{course_root} has no release/{ASSIGNMENT_ID}; run `make release` first.")
    return PyFileConfigLoader("nbgrader_config.py", path=str(course_root)).load_config()


def require_sandbox(config) -> None:
    if config.SandboxedKernelManager.get("allow_grading_without_sandbox", False):
        return
    if config.SandboxedKernelManager.get("fork_server", True) and fork_server.supported() is None:
        return
    name = config.SandboxedKernelManager.get("bwrap_path", "bwrap")
    bwrap = shutil.which(name)
    reason = f"{name} is not installed" if bwrap is None else sandbox.bwrap_works(bwrap)
    if reason is not None:
        raise CourseKitError(f"cannot sandbox student code ({reason}). {sandbox.INSTALL_HINT}")


def gradebook_url(course_root: Path, config) -> str:
    return config.CourseDirectory.get("db_url", f"sqlite:///{course_root / 'gradebook.db'}")


def ensure_assignment(course_root: Path, database: str) -> None:
    with Gradebook(database) as gradebook:
        try:
            gradebook.find_assignment(ASSIGNMENT_ID)
            return
        except MissingEntry:
            pass
    create_gradebook(db_url=database)
    result = nbgrader_in_fork(course_root, "generate_assignment", ASSIGNMENT_ID, "--force")
    if result.returncode != 0:
        raise CourseKitError(f"nbgrader generate_assignment failed: {result.stderr.strip().splitlines()[-1:]}")


def fingerprint(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()


def teams_to_grade(*, course_root: Path, teams: list[str], database: str, state: dict) -> list[str]:
    """Teams whose submission or course changed since they were last graded, or that were never graded."""
    changed = []
    with Gradebook(database) as gradebook:
        for team in teams:
            key = fingerprint(submission_path(course_root, team))
            try:
                graded = gradebook.find_submission_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID, team)
                ever_graded = any(grade.auto_score is not None for grade in graded.grades)
            except MissingEntry:
                ever_graded = False
            if state.get(team) != key or not ever_graded or not autograded_notebook(course_root, team).exists():
                changed.append(team)
    return changed


class Progress:
    """A one-line progress bar on stderr, advanced as each team's result is merged."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.draw()

    def advance(self, _outcome=None) -> None:
        self.done += 1
        self.draw()
        if self.done == self.total and sys.stderr.isatty():
            sys.stderr.write("\n")

    def draw(self) -> None:
        width = 30
        filled = int(width * self.done / self.total) if self.total else width
        if sys.stderr.isatty():
            sys.stderr.write(f"\rgrading [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
            sys.stderr.flush()


def fill_roster(database: str, roster: tuple[importing.RosterEntry, ...]) -> None:
    with Gradebook(database) as gradebook:
        for entry in roster:
            gradebook.update_or_create_student(entry.username, first_name=entry.first_name,
                                               last_name=entry.last_name, email=entry.email)


def read_state(state_file: Path) -> tuple[dict[str, str], importing.ImportProblem | None]:
    """Fingerprints of the teams graded before; a damaged state file means grading everything again."""
    if not state_file.exists():
        return {}, None
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        if not isinstance(state, dict):
            raise ValueError(f"a JSON {type(state).__name__}, not an object")
    except (OSError, ValueError, RecursionError) as error:
        message = (f"saved grading state could not be read ({one_line(type(error).__name__)}); "
                   "every team is graded again and the state is rewritten.")
        return {}, importing.ImportProblem(str(state_file), "state-reset", message)
    return {team: key for team, key in state.items() if isinstance(team, str) and isinstance(key, str)}, None


def grade_download(*, download: Path, course_root: Path, output_folder: Path, workers: int,
                   roster: Path | None = None, accepted_uploads: tuple[tuple[str, str], ...] = (),
                   scheduler: str | None = None) -> RunSummary:
    """Grade an OLAT download; `accepted_uploads` are (uploader, team) pairs to grade although the
    uploader is not in the team the file names (see importing.uploader_of); `scheduler`: the
    address of a Dask scheduler to grade on its cluster instead of local workers."""
    started = time.monotonic()
    ensure_tools_on_path()
    config = course_config(course_root)
    require_sandbox(config)
    similarity_settings = settings_from(config)
    imported = importing.import_download(download=download, roster=roster,
                                         staging=course_root / STATE_FOLDER / "staging",
                                         accepted_uploads=accepted_uploads)
    if not imported.submissions:
        raise CourseKitError(f"no submission in {download} matches <olat1>_<olat2>_{NOTEBOOK_NAME}.ipynb; "
                             "see the file names in the download.")
    database = gradebook_url(course_root, config)
    ensure_assignment(course_root, database)
    importing.write_submissions(result=imported, course_root=course_root)
    fill_roster(database, imported.roster)

    state_file = course_root / STATE_FOLDER / "graded.json"
    state, state_problem = read_state(state_file)
    if state_problem is not None:
        imported = dataclasses.replace(imported, problems=(*imported.problems, state_problem))
    teams = [submission.team_id for submission in imported.submissions]
    changed = teams_to_grade(course_root=course_root, teams=teams, database=database, state=state)
    if changed:
        if not scheduler:
            # Kernels' torch import overlaps with building the workers' course; local workers share it.
            # A run that grades nothing starts none.
            share_fork_server()
        executor = executor_for(workers=max(1, workers), scheduler=scheduler,
                                prototypes=prototype_cache() or course_root / STATE_FOLDER / "work")
        outcomes = grade_teams(course_root=course_root, database=database, teams=changed, executor=executor,
                               on_outcome=Progress(len(changed)).advance)
        state.update({outcome.team_id: fingerprint(submission_path(course_root, outcome.team_id))
                      for outcome in outcomes if outcome.graded})
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state, indent=1, sort_keys=True))

    results = collect_results(course_root=course_root, imported=imported, database=database)
    imported = replace(imported, problems=imported.problems + team_member_problems(results=results, roster=imported.roster))
    # After the merge: TA scores and comments live only in the course's gradebook.
    refreshed = feedback.refresh_feedback(course_root=course_root, database=database, teams=teams,
                                          state_folder=course_root / STATE_FOLDER, made_by_autograding=changed,
                                          workers=max(1, workers))
    # After grading: the judge's verdicts in the autograded notebooks are part of the evidence.
    similar = compare_course(course_root=course_root, settings=similarity_settings,
                             teams=[team for team in teams if autograded_notebook(course_root, team).exists()])
    write_outputs(course_root=course_root, output_folder=output_folder, results=results, imported=imported,
                  similarity=similar)
    olat = olat_export.export_for_olat(
        results=results, roster=imported.roster,
        waiting={team: len(ids) for team, ids in feedback.answers_waiting_for_ta(database=database, teams=teams).items()},
        feedback_folder=output_folder / "feedback", output_folder=output_folder / olat_export.OLAT_FOLDER,
        pass_mark=olat_export.pass_mark(config=config))
    shutil.rmtree(course_root / STATE_FOLDER / "staging", ignore_errors=True)
    return RunSummary(tuple(results), tuple(changed), imported.problems, imported.missing, output_folder,
                      time.monotonic() - started, olat=olat, feedback_refreshed=refreshed,
                      similar_pairs=len(similar.flagged))


def collect_results(*, course_root: Path, imported: importing.ImportResult, database: str) -> list[TeamResult]:
    teams = [submission.team_id for submission in imported.submissions]
    scores = read_scores(course_root=course_root, student_ids=teams, database=database)
    release = read_notebook(course_root / "release" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb")
    trusted = frozenset(c.source.strip() for c in release.cells
                        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("locked"))
    results = []
    for submission in imported.submissions:
        team_scores = scores.get(submission.team_id)
        findings = scan_submission(submission, trusted) + grading_findings(course_root, submission.team_id)
        results.append(TeamResult(
            team_id=submission.team_id, members=submission.members,
            status=team_scores.status if team_scores else GradingStatus.NOT_GRADED,
            reason=team_scores.reason if team_scores else "nbgrader recorded no grades",
            origin=submission.origin, findings=findings,
            cells=team_scores.cells if team_scores else (),
            written_members=written_members(course_root, submission.team_id),
        ))
    return results


def scan_submission(submission: importing.Submission, trusted: frozenset[str]) -> tuple[integrity.Finding, ...]:
    """The integrity findings of one upload; a scan that fails is a finding, never the end of the run."""
    try:
        return integrity.scan_notebook(content=submission.content, trusted_sources=trusted)
    except (Exception, RecursionError, MemoryError) as error:
        return (integrity.Finding(integrity.NOT_SCANNED, "notebook", 0, "",
                                  f"the scan failed ({type(error).__name__}); read the notebook by hand"),)


def grading_findings(course_root: Path, team: str) -> tuple[integrity.Finding, ...]:
    """What the grader noticed while grading the team (records from other code, cells too long to read)."""
    return integrity.grading_findings(autograded_metadata(autograded_notebook(course_root, team)) or {})


def written_members(course_root: Path, team: str) -> str:
    autograded = autograded_notebook(course_root, team)
    # The rebuild keeps the names in the notebook's metadata: reading that is enough.
    written = (autograded_metadata(autograded) or {}).get(STATUS_KEY, {})
    if isinstance(written, dict) and isinstance(written.get(TEAM_MEMBERS_KEY), str):
        return written[TEAM_MEMBERS_KEY]
    try:
        return team_members_text(read_notebook(autograded))
    except CourseKitError:
        return ""


def team_member_problems(*, results: list[TeamResult],
                         roster: tuple[importing.RosterEntry, ...]) -> tuple[importing.ImportProblem, ...]:
    """A problem line for every team whose written names leave out a member of its OLAT file name.

    A member counts as named when the cell mentions a part of the user name
    (3 letters or more) or, with a roster, the first or last name. Teams that
    wrote no names get no line: there is nothing to compare.
    """
    by_name = {entry.username: entry for entry in roster}
    problems = []
    for result in results:
        written = result.written_members.casefold()
        if not written:
            continue
        for member in result.members:
            entry = by_name.get(member)
            names = [part for part in re.split(r"[^a-z]+", member.casefold()) if len(part) >= 3]
            if entry is not None:
                names += [name.casefold() for name in (entry.first_name, entry.last_name) if len(name) >= 2]
            if not any(name in written for name in names):
                problems.append(importing.ImportProblem(
                    result.origin, "team-members",
                    f"{member} (from the file name) is not among the names written in the notebook: "
                    f"{' / '.join(result.written_members.splitlines())}; check who worked on team {result.team_id}."))
    return tuple(problems)



def write_outputs(*, course_root: Path, output_folder: Path, results: list[TeamResult],
                  imported: importing.ImportResult, similarity: SimilarityReport | None = None) -> None:
    output_folder.mkdir(parents=True, exist_ok=True)
    exporting.write_grades_csv(results=results, roster=imported.roster, path=output_folder / "grades.csv")
    copy_feedback(course_root=course_root, feedback_folder=output_folder / "feedback", results=results)
    findings = {result.team_id: result.findings for result in results}
    (output_folder / "integrity.txt").write_text(integrity.format_report(findings_by_team=findings), encoding="utf-8")
    (output_folder / "integrity.html").write_text(integrity.report_html(findings_by_team=findings), encoding="utf-8")
    if similarity is not None:
        similarity_report.write_similarity(report=similarity, output_folder=output_folder)
    reporting.write_report(results=results, problems=imported.problems, missing=imported.missing,
                           output_folder=output_folder, similarity=similarity)


def copy_feedback(*, course_root: Path, feedback_folder: Path, results: list[TeamResult]) -> None:
    """feedback/<team>.html for every team; a file whose content did not change is left as it is."""
    feedback_folder.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for result in results:
        html = feedback.feedback_html(course_root, result.team_id)
        destination = feedback_folder / f"{result.team_id}.html"
        if html.exists():
            wanted.add(destination.name)
            if not destination.exists() or not filecmp.cmp(html, destination, shallow=False):
                shutil.copyfile(html, destination)
    for stale in feedback_folder.iterdir():
        if stale.name in wanted:
            continue
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()
