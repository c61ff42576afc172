"""Importing the OLAT bulk download of exercise 2 into nbgrader's submitted/ folder.

OLAT's folder names differ between versions and courses, so only the file name
from the exercise sheet identifies a team: `<olat1>_<olat2>_ml_ex2.ipynb` or
`<olat>_ml_ex2.ipynb`, at any depth, also inside zips the team uploaded.
Nothing is dropped silently: every file that is not graded becomes a problem.
The download itself is only ever read.
"""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO

from .errors import CourseKitError
from .notebooks import ASSIGNMENT_ID, NOTEBOOK_NAME

_SEPARATOR = " › "
_MEBIBYTE = 1024 * 1024
# No notebook of this exercise comes near 50 MiB; a larger one is a mistake or a zip bomb.
_NOTEBOOK_SIZE_LIMIT = 50 * _MEBIBYTE
_ARCHIVE_SIZE_LIMIT = 1024 * _MEBIBYTE
# Counted from the download: a team's zip is level 1, a zip inside it level 2.
_ARCHIVE_DEPTH_LIMIT = 3
# Nested zips are copied out before reading (see _opened_archive); small ones stay in memory.
_IN_MEMORY_ARCHIVE_LIMIT = 16 * _MEBIBYTE
_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"
_EXPECTED_NAMES = f"<olat1>_<olat2>_{NOTEBOOK_NAME}.ipynb or <olat>_{NOTEBOOK_NAME}.ipynb"

# Letters, digits, dots and hyphens; the underscore separates the two names.
_USER_NAME = r"[a-z0-9][a-z0-9.\-]*"
# What browsers and file managers append to a second copy: " (1)", "(2)", "-2", " copy 2", " - Kopie (2)".
_COPY_SUFFIX = r"(?:\s*\(\d+\)|-\d+|(?:\s+|\s*-\s*)(?:copy|kopie)(?:\s*\(\d+\)|\s+\d+)?)"
_SUBMISSION_FILE = re.compile(
    rf"(?P<first>{_USER_NAME})(?:_(?P<second>{_USER_NAME}))?_{re.escape(NOTEBOOK_NAME)}{_COPY_SUFFIX}*\.ipynb",
    re.IGNORECASE | re.ASCII,
)
# Left behind by macOS, Jupyter and Windows; never something a team meant to hand in.
_LITTER_FOLDERS = {"__macosx", ".ipynb_checkpoints"}
_LITTER_FILES = {".ds_store", "thumbs.db", "desktop.ini"}
_OTHER_ARCHIVES = (".rar", ".7z", ".tar", ".gz", ".tgz", ".bz2", ".xz")
# zipfile says "password required" with RuntimeError and "unsupported compression" with NotImplementedError.
_READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, RuntimeError, NotImplementedError)

_ROSTER_COLUMNS = {
    "user name": {
        "username", "user", "olatusername", "olatuser", "olatname", "login", "benutzername", "benutzer", "nutzername"
    },
    "first name": {"firstname", "first", "givenname", "vorname"},
    "last name": {"lastname", "last", "surname", "familyname", "nachname"},
    "email": {"email", "mail", "emailaddress", "emailadresse"},
}


@dataclass(frozen=True)
class Submission:
    team_id: str
    members: tuple[str, ...]
    content: bytes
    origin: str
    timestamp: datetime


@dataclass(frozen=True)
class ImportProblem:
    origin: str
    kind: str
    message: str


@dataclass(frozen=True)
class RosterEntry:
    username: str
    first_name: str
    last_name: str
    email: str


@dataclass(frozen=True)
class ImportResult:
    submissions: tuple[Submission, ...]
    problems: tuple[ImportProblem, ...]
    roster: tuple[RosterEntry, ...]
    missing: tuple[str, ...]


@dataclass(frozen=True)
class _File:
    """A file in the download, maybe inside zips; `open` works only while the walk is at this file."""

    origin: str
    name: str
    size: int
    timestamp: datetime
    open: Callable[[], BinaryIO]
    path: Path | None = None


def import_download(*, download: Path, roster: Path | None = None) -> ImportResult:
    """Every team's newest notebook in the OLAT download, and everything else worth a look."""
    roster_entries = read_roster(roster) if roster is not None else ()
    problems: list[ImportProblem] = []
    uploads: list[Submission] = []
    notebooks_found = 0
    with _download_files(download) as top_level:
        for file in _with_archives_expanded(top_level, depth=0, problems=problems):
            if not file.name.lower().endswith(".ipynb"):
                problems.append(_ignored_file(file))
                continue
            notebooks_found += 1
            upload = _read_upload(file, problems)
            if upload is not None:
                uploads.append(upload)
    if notebooks_found == 0:
        unreadable = sum(problem.kind == "unreadable-archive" for problem in problems)
        hint = f" ({unreadable} files in it could not be read)" if unreadable else ""
        raise CourseKitError(
            f"no *.ipynb files found in {download}{hint}; is this the OLAT bulk download of exercise 2?"
        )

    submissions = _newest_per_team(uploads, problems)
    teams_of_student: dict[str, list[Submission]] = defaultdict(list)
    for submission in submissions:
        for member in submission.members:
            teams_of_student[member].append(submission)
    problems.extend(_students_in_several_teams(teams_of_student))
    missing: tuple[str, ...] = ()
    if roster is not None:
        known = {entry.username for entry in roster_entries}
        problems.extend(_unknown_students(teams_of_student, known))
        missing = tuple(sorted(known - set(teams_of_student)))
    return ImportResult(
        submissions=tuple(submissions), problems=tuple(problems), roster=roster_entries, missing=missing
    )


def read_roster(path: Path) -> tuple[RosterEntry, ...]:
    """The course members from a CSV export (OLAT, Excel, by hand), in file order."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise CourseKitError(f"roster {path} does not exist; check the path.") from None
    except UnicodeDecodeError:
        raise CourseKitError(f"roster {path} is not UTF-8; save it as 'CSV UTF-8' and try again.") from None
    except OSError as error:
        raise CourseKitError(f"roster {path} cannot be read ({_reason(error)}); check the path.") from None
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    # German Excel writes semicolons, everything else commas.
    delimiter = max((",", ";", "\t"), key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    if not rows:
        raise CourseKitError(f"roster {path} is empty; export the course members from OLAT as CSV.")
    columns = _roster_columns(path, header=rows[0][1])
    entries: dict[str, RosterEntry] = {}
    for line_number, row in rows[1:]:
        cells = [_cell(row, columns[field]) for field in _ROSTER_COLUMNS]
        username = cells[0].lower()
        if not username:
            raise CourseKitError(f"roster {path} line {line_number} has no user name; fill it in or delete the line.")
        entries.setdefault(username, RosterEntry(username, *cells[1:]))
    return tuple(entries.values())


def write_submissions(
    *, result: ImportResult, course_root: Path, assignment_id: str = ASSIGNMENT_ID, notebook_name: str = NOTEBOOK_NAME
) -> list[Path]:
    """nbgrader's submitted/<team>/<assignment>/ layout; unchanged files keep their mtime."""
    notebooks = []
    for submission in result.submissions:
        folder = course_root / "submitted" / submission.team_id / assignment_id
        notebook = folder / f"{notebook_name}.ipynb"
        # The bytes as uploaded: a broken notebook is still graded, and reported by the grader.
        _write_if_changed(notebook, submission.content)
        stamp = submission.timestamp.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)
        _write_if_changed(folder / "timestamp.txt", stamp.encode())
        notebooks.append(notebook)
    return notebooks


@contextmanager
def _download_files(download: Path) -> Iterator[Iterable[_File]]:
    if not download.exists():
        raise CourseKitError(f"{download} does not exist; pass the OLAT bulk download (.zip or its folder).")
    if download.is_dir():
        yield _folder_files(download)
        return
    try:
        archive = zipfile.ZipFile(download)
    except (zipfile.BadZipFile, OSError) as error:
        if download.suffix.lower() == ".zip":
            message = f"{download} is a damaged zip archive ({_reason(error)}); download it again from OLAT."
        else:
            message = f"{download} is neither a folder nor a .zip archive; pass the OLAT bulk download."
        raise CourseKitError(message) from None
    with archive:
        yield _zip_files(archive, prefix=download.name)


def _folder_files(folder: Path) -> Iterator[_File]:
    top = f"{folder.resolve().name}/"
    for directory, subfolders, names in os.walk(folder):
        subfolders[:] = sorted(name for name in subfolders if not _is_litter(name))
        for name in sorted(names):
            path = Path(directory, name)
            if _is_litter(name) or not path.is_file():
                continue
            status = path.stat()
            yield _File(
                origin=top + _SEPARATOR + path.relative_to(folder).as_posix(),
                name=name,
                size=status.st_size,
                timestamp=datetime.fromtimestamp(status.st_mtime, UTC),
                open=partial(path.open, "rb"),
                path=path,
            )


def _zip_files(archive: zipfile.ZipFile, *, prefix: str) -> Iterator[_File]:
    for info in sorted(archive.infolist(), key=lambda info: info.filename):
        name = _member_name(info)
        if info.is_dir() or any(_is_litter(part) for part in name.split("/")):
            continue
        yield _File(
            origin=prefix + _SEPARATOR + name,
            name=name.rsplit("/", 1)[-1],
            size=info.file_size,
            timestamp=_zip_timestamp(info),
            open=partial(archive.open, info),
        )


def _with_archives_expanded(files: Iterable[_File], *, depth: int, problems: list[ImportProblem]) -> Iterator[_File]:
    """The files, each zip among them replaced by its own files, recursively."""
    for file in files:
        if not file.name.lower().endswith(".zip"):
            yield file
        elif depth >= _ARCHIVE_DEPTH_LIMIT:
            message = f"zip nested more than {_ARCHIVE_DEPTH_LIMIT} levels deep was not searched; unpack it by hand."
            problems.append(ImportProblem(file.origin, "ignored-file", message))
        elif file.size > _ARCHIVE_SIZE_LIMIT:
            message = f"zip larger than {_ARCHIVE_SIZE_LIMIT // _MEBIBYTE} MiB was not searched; unpack it by hand."
            problems.append(ImportProblem(file.origin, "ignored-file", message))
        else:
            try:
                with _opened_archive(file) as archive:
                    yield from _with_archives_expanded(
                        _zip_files(archive, prefix=file.origin), depth=depth + 1, problems=problems
                    )
            except _READ_ERRORS as error:
                message = f"zip could not be read ({_reason(error)}); unpack it by hand or ask the team to upload again."
                problems.append(ImportProblem(file.origin, "unreadable-archive", message))


@contextmanager
def _opened_archive(file: _File) -> Iterator[zipfile.ZipFile]:
    if file.path is not None:
        with zipfile.ZipFile(file.path) as archive:
            yield archive
        return
    # zipfile seeks back and forth, and every backward seek in a compressed member
    # decompresses it from the start again; a plain copy makes that cheap.
    with tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY_ARCHIVE_LIMIT) as copy:
        with file.open() as stream:
            shutil.copyfileobj(stream, copy)
        with zipfile.ZipFile(copy) as archive:
            yield archive


def _read_upload(file: _File, problems: list[ImportProblem]) -> Submission | None:
    match = _SUBMISSION_FILE.fullmatch(file.name)
    if match is None:
        message = f"{file.name!r} is not named {_EXPECTED_NAMES}; find out whose it is, rename it and import again."
        problems.append(ImportProblem(file.origin, "unmatched-name", message))
        return None
    if file.size > _NOTEBOOK_SIZE_LIMIT:
        message = f"notebook larger than {_NOTEBOOK_SIZE_LIMIT // _MEBIBYTE} MiB was not imported; look at it by hand."
        problems.append(ImportProblem(file.origin, "ignored-file", message))
        return None
    try:
        with file.open() as stream:
            content = stream.read()
    except _READ_ERRORS as error:
        message = f"notebook could not be read ({_reason(error)}); download it again or ask the team to upload again."
        problems.append(ImportProblem(file.origin, "unreadable-archive", message))
        return None
    members = tuple(sorted({name.lower() for name in match.group("first", "second") if name}))
    return Submission(
        team_id="_".join(members), members=members, content=content, origin=file.origin, timestamp=file.timestamp
    )


def _newest_per_team(uploads: list[Submission], problems: list[ImportProblem]) -> list[Submission]:
    uploads_of_team: dict[str, list[Submission]] = defaultdict(list)
    for upload in uploads:
        uploads_of_team[upload.team_id].append(upload)
    newest = []
    for team_id in sorted(uploads_of_team):
        *older, winner = sorted(uploads_of_team[team_id], key=lambda upload: (upload.timestamp, upload.origin))
        newest.append(winner)
        for upload in older:
            message = (
                f"team {team_id} uploaded more than one notebook; the newest, {winner.origin}"
                f" ({winner.timestamp:%Y-%m-%d %H:%M:%S} UTC), is graded instead of this one."
            )
            problems.append(ImportProblem(upload.origin, "superseded", message))
    return newest


def _students_in_several_teams(teams_of_student: dict[str, list[Submission]]) -> Iterator[ImportProblem]:
    for student in sorted(teams_of_student):
        teams = teams_of_student[student]
        if len(teams) > 1:
            names = " and ".join(team.team_id for team in teams)
            message = f"{student} is in {len(teams)} teams ({names}); all are graded, decide which one counts."
            yield ImportProblem(_joined_origins(teams), "student-in-two-teams", message)


def _unknown_students(teams_of_student: dict[str, list[Submission]], known: set[str]) -> Iterator[ImportProblem]:
    for student in sorted(set(teams_of_student) - known):
        message = f"{student} is not in the roster but is graded; check the file name's spelling or add them to the roster."
        yield ImportProblem(_joined_origins(teams_of_student[student]), "unknown-student", message)


def _ignored_file(file: _File) -> ImportProblem:
    if file.name.lower().endswith(_OTHER_ARCHIVES):
        message = "only .zip archives are searched; unpack this one by hand if it holds a notebook."
    else:
        message = f"not a notebook, not imported; nothing to do unless it should have been {_EXPECTED_NAMES}."
    return ImportProblem(file.origin, "ignored-file", message)


def _roster_columns(path: Path, *, header: list[str]) -> dict[str, int]:
    normalized = [re.sub(r"[^a-z]", "", cell.lower()) for cell in header]
    columns = {}
    for field, aliases in _ROSTER_COLUMNS.items():
        columns[field] = next((index for index, name in enumerate(normalized) if name in aliases), None)
    absent = [field for field, index in columns.items() if index is None]
    if absent:
        raise CourseKitError(
            f"roster {path} has no column for {', '.join(absent)}; the first line must name the columns,"
            " e.g. username,first_name,last_name,email or Benutzername;Vorname;Nachname;E-Mail."
        )
    return columns


def _cell(row: list[str], index: int) -> str:
    return row[index].strip() if index < len(row) else ""


def _write_if_changed(path: Path, content: bytes) -> None:
    # Re-runs leave unchanged uploads alone, so modification times show what changed.
    if path.is_file() and path.read_bytes() == content:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def _is_litter(name: str) -> bool:
    lowered = name.lower()
    return lowered in _LITTER_FOLDERS or lowered in _LITTER_FILES or name.startswith("._")


def _member_name(info: zipfile.ZipInfo) -> str:
    """Mac and some Windows tools store UTF-8 names without the UTF-8 flag; zipfile then shows cp437."""
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            name = name.encode("cp437").decode("utf-8")
        except UnicodeError:
            pass
    return name.replace("\\", "/")


def _zip_timestamp(info: zipfile.ZipInfo) -> datetime:
    # Zip times carry no time zone; taken as UTC they are off by the course's local offset, equally for all uploads.
    try:
        return datetime(*info.date_time, tzinfo=UTC)
    except ValueError:  # month 0 and similar from sloppy zip tools
        return datetime(1980, 1, 1, tzinfo=UTC)


def _joined_origins(submissions: list[Submission]) -> str:
    return "; ".join(submission.origin for submission in submissions)


def _reason(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())
