"""One team graded in one pass, in memory, by the course's own nbgrader preprocessors.

`nbgrader autograde` followed by `nbgrader generate_feedback` reads the
submission, writes the sanitized notebook, reads it back, executes it, writes
the autograded notebook, reads it back again for the feedback, and opens the
gradebook file a dozen times, each command in an app of its own. A worker does
the same steps on the notebook held in memory: nbgrader's `Autograde` and
`GenerateFeedback` converters are configured once per course version from the
course's nbgrader_config.py, so their exporters and preprocessor lists
(sanitize, autograde, feedback: whatever the configuration names, in its
order) are exactly those of the nbgrader commands; their templates stay
compiled between teams. Per team:

    submitted bytes -> sanitize preprocessors -> autograde preprocessors (execute, judge, save scores)
                    -> autograded notebook (the string nbgrader writes) -> feedback preprocessors -> page

The gradebook the preprocessors read and write is the worker's own, held in
memory (SQLite, shared cache): the assignment as `generate_assignment` left it,
plus the rows of the team being graded, which leave as GradeRow/CommentRow
records; every team starts from a snapshot with fresh rows. Only the one writer
(coursekit.engine.writer) writes the course's gradebook.
"""
from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import os
import shutil
import sqlite3
import traceback
import uuid
import warnings
from pathlib import Path

from nbgrader import utils
from nbgrader.api import BaseCell, Comment, Grade, Gradebook, Student, SubmittedAssignment
from nbgrader.converters import Autograde, GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from sqlalchemy import select, update
from sqlalchemy.exc import SAWarning
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.engine.unit import CommentRow, GradeRow, TeamOutcome, TeamWork
from coursekit.errors import CourseKitError
from coursekit.nbgrader_plugins.rebuild import STATUS_KEY
from coursekit.statuses import GradingStatus

NOTEBOOK_FILE = f"{NOTEBOOK_NAME}.ipynb"
NOT_GRADED_REASON = "nbgrader could not grade this submission; see its log"
# The student whose empty submission the worker's gradebook keeps ready, renamed to each team in turn.
PLACEHOLDER_STUDENT = "coursekit-next-team"


class MemoryGradebook:
    """A copy of a gradebook file in memory, reachable by its URL for as long as this object lives.

    SQLite keeps a shared-cache in-memory database while one connection to it is
    open; nbgrader's Gradebook opens and closes its own connections by URL. Such a
    database belongs to one process: the same URL names a fresh one in a fork.
    `keep()` takes a snapshot that `restore()` returns to in a millisecond.
    """

    def __init__(self, source: Path, name: str) -> None:
        self.pid = os.getpid()
        self._keeper = sqlite3.connect(f"file:{name}?mode=memory&cache=shared", uri=True)
        with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as original:
            original.backup(self._keeper)
        self._snapshot = sqlite3.connect(":memory:")

    def keep(self) -> None:
        self._keeper.backup(self._snapshot)

    def restore(self) -> None:
        self._snapshot.backup(self._keeper)

    def close(self) -> None:
        self._keeper.close()
        self._snapshot.close()


def course_config(course_root: Path, *, database: str) -> Config:
    """The course's nbgrader_config.py as traitlets loads it for nbgrader, with this worker's root and gradebook."""
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course_root)).load_config()
    # The course's own db_url (PostgreSQL, say) and root are the course's, never a worker's.
    config.CourseDirectory.root = str(course_root)
    config.CourseDirectory.db_url = database
    return config


class TeamGrader:
    """nbgrader's autograde and feedback steps for one course version, team after team, in memory."""

    def __init__(self, *, course_root: Path, gradebook_file: Path, workspace: Path, log: logging.Logger) -> None:
        """Made in a worker, or in the grading process before it forks its workers (see warm_up): a fork
        inherits the compiled templates, memos and caches, and makes its own gradebook at its first team."""
        self.root = course_root
        self.workspace = workspace
        self.log = log
        self.gradebook_file = gradebook_file
        self._gradebook: MemoryGradebook | None = None
        self._database_name = f"coursekit-gradebook-{uuid.uuid4().hex}"
        self.database = f"sqlite:///file:{self._database_name}?mode=memory&cache=shared&uri=true"
        config = course_config(course_root, database=self.database)
        self.coursedir = CourseDirectory(config=config, log=log)
        self.autograde = Autograde(coursedir=self.coursedir, config=config, log=log)
        self.autograde.exporter = self.autograde.exporter_class(parent=self.autograde, config=self.autograde.config)
        # As BaseConverter.start: the feedback preprocessors are made once and serve every student.
        self.feedback = GenerateFeedback(coursedir=self.coursedir, config=config, log=log)
        self.feedback.exporter = self.feedback.exporter_class(parent=self.feedback, config=self.feedback.config)
        for preprocessor in self.feedback.preprocessors:
            self.feedback.exporter.register_preprocessor(preprocessor)

    @property
    def gradebook(self) -> MemoryGradebook:
        """This process's gradebook, made (with the placeholder's submission ready) at its first use."""
        if self._gradebook is None or self._gradebook.pid != os.getpid():
            self._gradebook = MemoryGradebook(self.gradebook_file, self._database_name)
            self.prepare_submission_rows()
        return self._gradebook

    def close(self) -> None:
        """Close this process's gradebook (a fork's inherited one is its parent's to close)."""
        if self._gradebook is not None and self._gradebook.pid == os.getpid():
            self._gradebook.close()
        self._gradebook = None

    def warm_up(self) -> None:
        """Run the sanitize pass and the feedback on the release, for the placeholder student: what every
        grading process does once (imports, compiled patterns, templates, highlighted release cells,
        validators, mappers) is then done, and inherited by workers forked afterwards."""
        self.gradebook.restore()
        folder = self.team_folder(PLACEHOLDER_STUDENT)
        shutil.rmtree(folder.parent, ignore_errors=True)
        folder.mkdir(parents=True)
        release = (Path(self.coursedir.format_path(self.coursedir.release_directory, ".", ASSIGNMENT_ID))
                   / NOTEBOOK_FILE).read_bytes()
        try:
            converter = self.autograde
            converter._sanitizing = True
            converter._init_preprocessors()
            sanitized, _ = converter.exporter.from_file(io.TextIOWrapper(io.BytesIO(release), encoding="utf-8"),
                                                        resources=self.resources(PLACEHOLDER_STUDENT, folder))
            self.feedback.exporter.from_file(io.StringIO(sanitized), resources=self.resources(PLACEHOLDER_STUDENT, folder))
        finally:
            shutil.rmtree(folder.parent, ignore_errors=True)
            self.gradebook.restore()

    def team_folder(self, team: str) -> Path:
        return self.workspace / f"teams-{os.getpid()}" / team / ASSIGNMENT_ID

    # ------------------------------------------------------------------ one team

    def grade(self, work: TeamWork, *, worker: str) -> TeamOutcome:
        team = work.team_id
        notebook = dict(work.files).get(NOTEBOOK_FILE)
        if notebook is None:
            return self.without_the_notebook(work, worker=worker)
        folder = self.team_folder(team)
        shutil.rmtree(folder.parent, ignore_errors=True)
        try:
            try:
                timestamp = self.prepare_folder(work, folder)
                self.add_submission(team, timestamp)
            except Exception:
                self.log.error("There was an error processing assignment %s for %s:\n%s", ASSIGNMENT_ID, team,
                               traceback.format_exc())
                return outcome_without_grades(team, GradingStatus.NOT_GRADED, NOT_GRADED_REASON, worker=worker)
            autograded, status, reason = self.autograded_notebook(team, notebook, folder)
            grades, comments, timestamp, penalty = self.rows(team)
            page = self.feedback_page(team, autograded, folder) if autograded is not None else None
        finally:
            shutil.rmtree(folder.parent, ignore_errors=True)
        return TeamOutcome(
            team_id=team, status=status, reason=reason,
            autograded_notebook=autograded.encode() if autograded is not None else None,
            feedback_page=page.encode() if page is not None else None,
            timestamp=timestamp.isoformat() if timestamp else None,
            grades=grades, comments=comments, seconds=0.0, worker=worker, late_penalty=penalty)

    def without_the_notebook(self, work: TeamWork, *, worker: str) -> TeamOutcome:
        """As `nbgrader autograde` for a submission without the notebook: other notebooks in its folder make
        it record the submission (rows without scores) before it gives up; without any, nothing is recorded."""
        reason = f"no {NOTEBOOK_FILE} in the submission"
        if not any("/" not in name and name.endswith(".ipynb") for name, _ in work.files):
            return outcome_without_grades(work.team_id, GradingStatus.MISSING, reason, worker=worker)
        folder = self.team_folder(work.team_id)
        shutil.rmtree(folder.parent, ignore_errors=True)
        try:
            self.add_submission(work.team_id, self.prepare_folder(work, folder))
            grades, comments, timestamp, penalty = self.rows(work.team_id)
        finally:
            shutil.rmtree(folder.parent, ignore_errors=True)
        return TeamOutcome(team_id=work.team_id, status=GradingStatus.MISSING, reason=reason,
                           autograded_notebook=None, feedback_page=None,
                           timestamp=timestamp.isoformat() if timestamp else None, grades=grades, comments=comments,
                           seconds=0.0, worker=worker, late_penalty=penalty)

    def prepare_folder(self, work: TeamWork, folder: Path) -> datetime.datetime | None:
        """The folder the kernel runs in, as `nbgrader autograde` makes it (the team's other files, then the
        assignment's own files from source/ over them), and the submission's timestamp."""
        submitted = folder.parent / "submitted"
        work.write(submitted)
        folder.mkdir(parents=True)
        copy_files(submitted, folder, ignore=self.coursedir.ignore + ["*.ipynb"])
        source = Path(self.coursedir.format_path(self.coursedir.source_directory, ".", ASSIGNMENT_ID))
        excluded = [str(source / name) for name in self.autograde.exclude_overwriting.get(ASSIGNMENT_ID, [])]
        copy_files(source, folder, ignore=self.coursedir.ignore + ["*.ipynb"], excluded=excluded)
        return self.coursedir.get_existing_timestamp(str(submitted))

    def prepare_submission_rows(self) -> None:
        """The gradebook part of Autograde.init_assignment, done once: a student and an (empty) submission with
        all its grade and comment rows, as nbgrader's API makes them; then the snapshot each team starts from."""
        with Gradebook(self.database, self.coursedir.course_id) as gradebook:
            gradebook.update_or_create_student(PLACEHOLDER_STUDENT)
            # nbgrader's own API warns about its lazy relationships when it creates a submission.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SAWarning)
                gradebook.update_or_create_submission(ASSIGNMENT_ID, PLACEHOLDER_STUDENT)
        self._gradebook.keep()

    def add_submission(self, team: str, timestamp: datetime.datetime | None) -> None:
        """The gradebook as `nbgrader autograde` prepares it for the team: the snapshot's fresh rows, theirs.

        Creating them through nbgrader's API costs ~0.1 CPU-s per team (an ORM object per
        row); renaming the placeholder student is two statements. Nothing else in the
        gradebook names a student.
        """
        self.gradebook.restore()
        with Gradebook(self.database, self.coursedir.course_id) as gradebook:
            gradebook.db.execute(update(Student).where(Student.id == PLACEHOLDER_STUDENT).values(id=team))
            values = {"student_id": team, **({"timestamp": timestamp} if timestamp else {})}
            gradebook.db.execute(update(SubmittedAssignment)
                                 .where(SubmittedAssignment.student_id == PLACEHOLDER_STUDENT).values(**values))
            gradebook.db.commit()

    def resources(self, team: str, folder: Path) -> dict:
        """What nbgrader's converters pass the exporter for one notebook (init_single_notebook_resources
        and Exporter.from_filename)."""
        return {
            "unique_key": NOTEBOOK_NAME, "output_files_dir": f"{NOTEBOOK_NAME}_files",
            "nbgrader": {"student": team, "assignment": ASSIGNMENT_ID, "notebook": NOTEBOOK_NAME,
                         "db_url": self.database},
            "metadata": {"name": NOTEBOOK_NAME, "path": str(folder),
                         "modified_date": datetime.datetime.now(datetime.timezone.utc).strftime("%B %-d, %Y")},
        }

    def autograded_notebook(self, team: str, submitted: bytes,
                            folder: Path) -> tuple[str | None, GradingStatus, str]:
        """Autograde.convert_single_notebook in memory: the sanitize pass, then the autograde pass on what it
        wrote. The autograded notebook as nbgrader writes it, and its status; None when nbgrader fails."""
        converter = self.autograde
        try:
            converter._sanitizing = True
            converter._init_preprocessors()
            sanitized, _ = converter.exporter.from_file(io.TextIOWrapper(io.BytesIO(submitted), encoding="utf-8"),
                                                        resources=self.resources(team, folder))
            converter._sanitizing = False
            converter._init_preprocessors()
            with utils.setenv(NBGRADER_EXECUTION="autograde"):
                autograded, _ = converter.exporter.from_file(io.StringIO(sanitized), resources=self.resources(team, folder))
        except SystemExit as stop:  # the sandbox cannot be built here: the whole run stops
            message = str(stop.code) if stop.code is not None else "grading stopped"
            raise CourseKitError(message.strip().splitlines()[-1].removeprefix("coursekit: ")) from None
        except Exception:
            # As nbgrader does per student: the error is logged, this team has no autograded notebook.
            self.log.error("There was an error processing assignment %s for %s:\n%s", ASSIGNMENT_ID, team,
                           traceback.format_exc())
            return None, GradingStatus.NOT_GRADED, NOT_GRADED_REASON
        finally:
            converter._sanitizing = True
        metadata = json.loads(autograded).get("metadata", {}).get(STATUS_KEY, {})
        try:
            status = GradingStatus(metadata.get("status", GradingStatus.GRADED))
        except ValueError:
            return autograded, GradingStatus.NOT_GRADED, "the autograded notebook has no valid grading status"
        return autograded, status, str(metadata.get("reason", ""))

    def rows(self, team: str) -> tuple[tuple[GradeRow, ...], tuple[CommentRow, ...], datetime.datetime | None,
                                       float | None]:
        """The team's grade and comment rows as nbgrader left them (one query each, not one per row)."""
        with Gradebook(self.database) as gradebook:
            notebook = gradebook.find_submission_notebook(NOTEBOOK_NAME, ASSIGNMENT_ID, team)
            grades = tuple(GradeRow(name, auto_score, float(max_score), bool(needs_manual_grade))
                           for name, auto_score, max_score, needs_manual_grade in gradebook.db.execute(
                               select(BaseCell.name, Grade.auto_score, Grade.max_score, Grade.needs_manual_grade)
                               .join(BaseCell, Grade.cell_id == BaseCell.id).where(Grade.notebook_id == notebook.id)
                               .order_by(BaseCell.name)))
            comments = tuple(CommentRow(name, auto_comment) for name, auto_comment in gradebook.db.execute(
                select(BaseCell.name, Comment.auto_comment).join(BaseCell, Comment.cell_id == BaseCell.id)
                .where(Comment.notebook_id == notebook.id).order_by(BaseCell.name)))
            return grades, comments, notebook.assignment.timestamp, notebook.late_submission_penalty

    def feedback_page(self, team: str, autograded: str, folder: Path) -> str | None:
        """GenerateFeedback.convert_single_notebook on the autograded notebook as nbgrader wrote it."""
        try:
            page, _ = self.feedback.exporter.from_file(io.StringIO(autograded), resources=self.resources(team, folder))
        except Exception:
            self.log.error("There was an error generating feedback for %s:\n%s", team, traceback.format_exc())
            return None
        return page


def copy_files(source: Path, destination: Path, *, ignore: list[str], excluded: list[str] = ()) -> None:
    """Copy what nbgrader's converters copy between step folders (find_all_files with the course's ignore globs)."""
    for file in utils.find_all_files(str(source), ignore):
        if file not in excluded:
            target = destination / os.path.relpath(file, source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            shutil.copy(file, target)


def outcome_without_grades(team: str, status: GradingStatus, reason: str, *, worker: str) -> TeamOutcome:
    return TeamOutcome(team_id=team, status=status, reason=reason, autograded_notebook=None, feedback_page=None,
                       timestamp=None, grades=(), comments=(), seconds=0.0, worker=worker)
