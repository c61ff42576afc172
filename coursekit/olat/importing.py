"""Importing the OLAT bulk download of exercise 2 into nbgrader's submitted/ folder.

OLAT's folder names differ between versions and courses, so the file name
from the exercise sheet says which team a notebook is for:
`<olat1>_<olat2>_ml_ex2.ipynb` or `<olat>_ml_ex2.ipynb`, at any depth, also
inside zips the team uploaded. The folder OLAT put the file in says who
uploaded it (see `uploader_of`); a notebook uploaded by someone outside the
team it names is reported and not graded, unless the instructor accepts it.
Nothing is dropped silently: every file that is not graded becomes a problem.
The download itself is only ever read, never extracted: files are streamed
out of the zips with hard byte limits, after the caps below are checked.
"""
from __future__ import annotations

import atexit
import csv
import hashlib
import io
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO

from coursekit.errors import CourseKitError
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.safe_text import one_line, visible

_SEPARATOR = " › "
_MEBIBYTE = 1024 * 1024
# Caps on what an upload can make the import read (README: "What an upload cannot do").
# No notebook of this exercise comes near 10 MiB (the release is 60 KB); a larger one is a mistake or a bomb.
# Parsing JSON takes up to ~25 times its size in memory: 10 MiB keeps nbgrader's processes far below 1 GiB.
NOTEBOOK_SIZE_LIMIT = 10 * _MEBIBYTE
# A zip inside the download (a team's own), uncompressed, and the sum of what its entries declare.
ARCHIVE_SIZE_LIMIT = 512 * _MEBIBYTE
# Counted from the download: a team's zip is level 1, a zip inside it level 2.
ARCHIVE_DEPTH_LIMIT = 3
ARCHIVE_ENTRY_LIMIT = 10_000
# Entries of every zip together, and bytes decompressed from all of them together.
TOTAL_ENTRY_LIMIT = 200_000
TOTAL_SIZE_LIMIT = 4096 * _MEBIBYTE
# Text notebooks compress 3-20 fold; a file over 1 MiB that shrank more than 200-fold is mostly one repeated byte.
COMPRESSION_RATIO_LIMIT = 200
_RATIO_CHECK_FROM = _MEBIBYTE
# OLAT user names are short; a longer "name" only serves to make paths too long.
USER_NAME_LENGTH_LIMIT = 64
_FILE_NAME_LENGTH_LIMIT = 255
# Nested zips are copied out before reading (see _opened_archive); small ones stay in memory.
_IN_MEMORY_ARCHIVE_LIMIT = 16 * _MEBIBYTE
_CHUNK = _MEBIBYTE
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
# Team ids become folder and file names (submitted/<team>/, feedback/<team>.html), also on Windows shares.
_RESERVED_NAMES = re.compile(r"(?:con|prn|aux|nul|com\d|lpt\d|conin\$|conout\$)(?:\..*)?", re.IGNORECASE)
# OLAT's task archive: ita_<node>_<date>/<Lastname>_<Firstname>_<username>/2_submissions/<file> for
# individual tasks, grouptask_<node>_<date>/<group>_<key>/2_submissions/<file> for group tasks.
_OLAT_STEP_FOLDER = re.compile(r"\d+_(?:task|submissions|corrections|revisions|assessment)(?:_\d+)?", re.IGNORECASE)
_OLAT_ARCHIVE_FOLDER = re.compile(r"(?:ita|task|grouptask)_.*", re.IGNORECASE)
_GROUP_TASK_FOLDER = re.compile(r"grouptask_.*", re.IGNORECASE)
_USER_FOLDER = re.compile(rf".+_.+_(?P<user>{_USER_NAME})", re.IGNORECASE | re.ASCII)
# Left behind by macOS, Jupyter and Windows; never something a team meant to hand in.
_LITTER_FOLDERS = {"__macosx", ".ipynb_checkpoints"}
_LITTER_FILES = {".ds_store", "thumbs.db", "desktop.ini"}
_OTHER_ARCHIVES = (".rar", ".7z", ".tar", ".gz", ".tgz", ".bz2", ".xz")
# zipfile says "password required" with RuntimeError and "unsupported compression" with NotImplementedError.
_READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, RuntimeError, NotImplementedError, ValueError)

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
    """One uploaded notebook; its bytes wait in a staging folder so that memory holds none of them."""

    team_id: str
    members: tuple[str, ...]
    staged: Path
    origin: str
    timestamp: datetime
    uploader: str | None = None       # OLAT user whose folder held the file, when the layout tells

    @property
    def content(self) -> bytes:
        return self.staged.read_bytes()


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
    compressed_size: int | None = None   # in its zip; None for files in a folder
    uploader: str | None = None


@dataclass
class _Budget:
    """What the whole import may still read; an upload cannot spend more than is left."""

    entries: int = field(default_factory=lambda: TOTAL_ENTRY_LIMIT)
    size: int = field(default_factory=lambda: TOTAL_SIZE_LIMIT)


class _TooLarge(Exception):
    pass


@dataclass
class _Walk:
    problems: list[ImportProblem]
    known_users: frozenset[str]
    budget: _Budget = field(default_factory=_Budget)

    def report(self, origin: str, kind: str, message: str) -> None:
        self.problems.append(ImportProblem(origin, kind, message))


def import_download(
    *, download: Path, roster: Path | None = None, staging: Path | None = None,
    accepted_uploads: Iterable[tuple[str, str]] = (),
) -> ImportResult:
    """Every team's newest notebook in the OLAT download, and everything else worth a look.

    Notebooks are copied to `staging` (a fresh temporary folder by default).
    `accepted_uploads` are (uploader, team id) pairs the instructor accepts
    although the uploader is not in the team the file names.
    """
    roster_entries = read_roster(roster) if roster is not None else ()
    accepted = {(uploader.lower(), normalized_team_id(team)) for uploader, team in accepted_uploads}
    staging = _staging_folder(staging)
    walk = _Walk(problems=[], known_users=frozenset(entry.username for entry in roster_entries))
    uploads: list[Submission] = []
    notebooks_found = 0
    with _download_files(download, walk) as top_level:
        for file in _with_archives_expanded(top_level, depth=0, walk=walk):
            if not file.name.lower().endswith(".ipynb"):
                walk.problems.append(_ignored_file(file))
                continue
            notebooks_found += 1
            upload = _read_upload(file, walk, staging / f"{notebooks_found}.ipynb")
            if upload is not None:
                uploads.append(upload)
    if notebooks_found == 0:
        unreadable = sum(problem.kind == "unreadable-archive" for problem in walk.problems)
        hint = f" ({unreadable} files in it could not be read)" if unreadable else ""
        raise CourseKitError(
            f"no *.ipynb files found in {one_line(download)}{hint}; is this the OLAT bulk download of exercise 2?"
        )

    uploads = _own_team_uploads(uploads, accepted, walk)
    submissions = _newest_per_team(uploads, walk.problems)
    teams_of_student: dict[str, list[Submission]] = defaultdict(list)
    for submission in submissions:
        for member in submission.members:
            teams_of_student[member].append(submission)
    problems = walk.problems
    problems.extend(_students_in_several_teams(teams_of_student))
    missing: tuple[str, ...] = ()
    if roster is not None:
        known = {entry.username for entry in roster_entries}
        problems.extend(_unknown_students(teams_of_student, known))
        missing = tuple(sorted(known - set(teams_of_student)))
    return ImportResult(
        submissions=tuple(submissions), problems=tuple(problems), roster=roster_entries, missing=missing
    )


def uploader_of(folders: Iterable[str], *, known_users: frozenset[str] = frozenset()) -> str | None:
    """The OLAT user whose folder holds a file, from the download's folders above it (outermost first).

    OLAT's task archive puts each participant's files in a folder named
    `<Lastname>_<Firstname>_<username>`. Going inwards, the first folder that
    names a user is the uploader's: one that is a roster user name or ends in
    `_<roster user name>`; without a roster, one shaped `<a>_<b>_<user>`. OLAT's
    own folders (`ita_…`, `2_submissions`, …) are passed over. Group tasks
    (`grouptask_…`) keep files per group, not per uploader: None, as for any
    layout without user folders. Only the download's folders count, never
    folders inside a zip a student made.
    """
    for folder in folders:
        name = folder.lower()
        if _GROUP_TASK_FOLDER.fullmatch(name):
            return None
        if _OLAT_ARCHIVE_FOLDER.fullmatch(name) or _OLAT_STEP_FOLDER.fullmatch(name):
            continue
        if known_users:
            named = [user for user in known_users if name == user or name.endswith("_" + user)]
            if named:
                return max(named, key=len)
        else:
            match = _USER_FOLDER.fullmatch(name)
            if match and len(match["user"]) <= USER_NAME_LENGTH_LIMIT:
                return match["user"]
    return None


def normalized_team_id(team: str) -> str:
    """The team id a file name or an instructor writes, as the import spells it: `Bob_anna` -> `anna_bob`."""
    return "_".join(sorted(part.strip().lower() for part in team.split("_") if part.strip()))


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
        stamp = submission.timestamp.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)
        try:
            # The bytes as uploaded: a broken notebook is still graded, and reported by the grader.
            _copy_if_changed(submission.staged, notebook)
            _write_if_changed(folder / "timestamp.txt", stamp.encode())
        except OSError as error:
            raise CourseKitError(
                f"cannot write {one_line(notebook)} ({one_line(error.strerror or error)}); "
                "check free disk space and permissions of the course folder."
            ) from None
        notebooks.append(notebook)
    return notebooks


def _staging_folder(staging: Path | None) -> Path:
    if staging is None:
        staging = Path(tempfile.mkdtemp(prefix="coursekit-import-"))
        atexit.register(shutil.rmtree, staging, ignore_errors=True)
    else:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    return staging


@contextmanager
def _download_files(download: Path, walk: _Walk) -> Iterator[Iterable[_File]]:
    if not download.exists():
        raise CourseKitError(f"{one_line(download)} does not exist; pass the OLAT bulk download (.zip or its folder).")
    if download.is_dir():
        yield _folder_files(download, walk)
        return
    try:
        archive = zipfile.ZipFile(download)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        if download.suffix.lower() == ".zip":
            message = f"{one_line(download)} is a damaged zip archive ({_reason(error)}); download it again from OLAT."
        else:
            message = f"{one_line(download)} is neither a folder nor a .zip archive; pass the OLAT bulk download."
        raise CourseKitError(message) from None
    with archive:
        yield _zip_files(archive, prefix=one_line(download.name), walk=walk, top_level=True)


def _folder_files(folder: Path, walk: _Walk) -> Iterator[_File]:
    """Regular files only: links are never followed, devices and pipes never opened."""
    top = f"{one_line(folder.resolve().name)}/"
    for directory, subfolders, names in os.walk(folder, followlinks=False):
        relative = Path(directory).relative_to(folder)
        for name in sorted(subfolders):
            if (Path(directory) / name).is_symlink():
                walk.report(top + _SEPARATOR + _shown(relative / name), "special-file",
                            "a link to a folder; not followed. Look at it by hand if it should hold a notebook.")
        subfolders[:] = sorted(name for name in subfolders
                               if not _is_litter(name) and not (Path(directory) / name).is_symlink())
        folders = relative.parts
        uploader = uploader_of(folders, known_users=walk.known_users)
        for name in sorted(names):
            path = Path(directory, name)
            origin = top + _SEPARATOR + _shown(relative / name)
            if _is_litter(name):
                continue
            try:
                status = path.lstat()
            except OSError as error:
                walk.report(origin, "unreadable-archive", f"file could not be read ({_reason(error)}); look at it by hand.")
                continue
            if not stat.S_ISREG(status.st_mode):
                walk.report(origin, "special-file", f"{_special_kind(status.st_mode)}, not a file; not read or followed.")
                continue
            yield _File(
                origin=origin,
                name=name,
                size=status.st_size,
                timestamp=datetime.fromtimestamp(status.st_mtime, UTC),
                open=partial(_open_regular_file, path),
                path=path,
                uploader=uploader,
            )


def _open_regular_file(path: Path) -> BinaryIO:
    # O_NOFOLLOW and the check after opening: the file cannot be swapped for a link or a pipe in between.
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise OSError(f"{one_line(path.name)} is not a regular file")
    return os.fdopen(descriptor, "rb")


def _zip_files(archive: zipfile.ZipFile, *, prefix: str, walk: _Walk, top_level: bool = False,
               uploader: str | None = None) -> Iterator[_File]:
    entries = archive.infolist()
    if not top_level:
        declared = sum(info.file_size for info in entries)
        if len(entries) > ARCHIVE_ENTRY_LIMIT or declared > ARCHIVE_SIZE_LIMIT:
            walk.report(prefix, "ignored-file",
                        f"zip with {len(entries)} entries and {declared // _MEBIBYTE} MiB uncompressed was not searched"
                        f" (caps: {ARCHIVE_ENTRY_LIMIT} entries, {ARCHIVE_SIZE_LIMIT // _MEBIBYTE} MiB);"
                        " unpack it by hand with care.")
            return
    if len(entries) > walk.budget.entries:
        walk.report(prefix, "ignored-file",
                    f"the download holds more than {TOTAL_ENTRY_LIMIT} zip entries in all; these were not searched.")
        return
    walk.budget.entries -= len(entries)
    for info in sorted(entries, key=lambda info: info.filename):
        name = _member_name(info)
        parts = [part for part in name.split("/") if part]
        if info.is_dir() or not parts or any(_is_litter(part) for part in parts):
            continue
        origin = prefix + _SEPARATOR + _shown(name)
        kind = _special_zip_entry(info)
        if kind is not None:
            walk.report(origin, "special-file", f"{kind} in a zip; not extracted or followed.")
            continue
        yield _File(
            origin=origin,
            name=parts[-1],
            size=info.file_size,
            timestamp=_zip_timestamp(info),
            open=partial(archive.open, info),
            compressed_size=info.compress_size,
            # Folders count only in the download itself; inside a team's zip, the zip's uploader holds.
            uploader=uploader_of(parts[:-1], known_users=walk.known_users) if top_level else uploader,
        )


def _with_archives_expanded(files: Iterable[_File], *, depth: int, walk: _Walk) -> Iterator[_File]:
    """The files, each zip among them replaced by its own files, recursively."""
    for file in files:
        if not file.name.lower().endswith(".zip"):
            yield file
            continue
        refusal = _refusal(file, limit=ARCHIVE_SIZE_LIMIT, what="zip")
        if depth >= ARCHIVE_DEPTH_LIMIT:
            message = f"zip nested more than {ARCHIVE_DEPTH_LIMIT} levels deep was not searched; unpack it by hand."
            walk.report(file.origin, "ignored-file", message)
        elif refusal is not None:
            walk.report(file.origin, "ignored-file", f"{refusal} was not searched; unpack it by hand with care.")
        else:
            try:
                with _opened_archive(file, walk) as archive:
                    yield from _with_archives_expanded(
                        _zip_files(archive, prefix=file.origin, walk=walk, uploader=file.uploader),
                        depth=depth + 1, walk=walk,
                    )
            except _TooLarge as error:
                walk.report(file.origin, "ignored-file", f"{error} was not searched; unpack it by hand with care.")
            except _READ_ERRORS as error:
                message = f"zip could not be read ({_reason(error)}); unpack it by hand or ask the team to upload again."
                walk.report(file.origin, "unreadable-archive", message)


def _refusal(file: _File, *, limit: int, what: str) -> str | None:
    """Why a file must not be read, judged from what the zip declares, before reading a byte."""
    if file.size > limit:
        return f"{what} larger than {limit // _MEBIBYTE} MiB"
    if (file.compressed_size is not None and file.size > _RATIO_CHECK_FROM
            and file.size > COMPRESSION_RATIO_LIMIT * max(file.compressed_size, 1)):
        return (f"{what} compressed more than {COMPRESSION_RATIO_LIMIT}-fold"
                f" ({file.compressed_size} bytes for {file.size / _MEBIBYTE:.1f} MiB, a zip bomb?)")
    return None


def _copy_bounded(file: _File, target: BinaryIO, *, limit: int, walk: _Walk, what: str) -> int:
    """Copy a file's bytes, stopping hard at `limit` and at the import's budget, whatever sizes the zip claims."""
    allowed = min(limit, walk.budget.size)
    copied = 0
    with file.open() as stream:
        while chunk := stream.read(_CHUNK):
            copied += len(chunk)
            if copied > allowed:
                walk.budget.size -= copied
                if allowed < limit:
                    raise _TooLarge(f"{what} beyond the import's total of {TOTAL_SIZE_LIMIT // _MEBIBYTE} MiB")
                raise _TooLarge(f"{what} larger than {limit // _MEBIBYTE} MiB")
            target.write(chunk)
    walk.budget.size -= copied
    return copied


@contextmanager
def _opened_archive(file: _File, walk: _Walk) -> Iterator[zipfile.ZipFile]:
    # zipfile seeks back and forth, and every backward seek in a compressed member
    # decompresses it from the start again; a plain copy makes that cheap.
    with tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY_ARCHIVE_LIMIT) as copy:
        _copy_bounded(file, copy, limit=ARCHIVE_SIZE_LIMIT, walk=walk, what="zip")
        with zipfile.ZipFile(copy) as archive:
            yield archive


def _read_upload(file: _File, walk: _Walk, staged: Path) -> Submission | None:
    members = _team_members(file, walk)
    if members is None:
        return None
    refusal = _refusal(file, limit=NOTEBOOK_SIZE_LIMIT, what="notebook")
    if refusal is not None:
        walk.report(file.origin, "ignored-file", f"{refusal} was not imported; look at it by hand.")
        return None
    try:
        with staged.open("wb") as target:
            _copy_bounded(file, target, limit=NOTEBOOK_SIZE_LIMIT, walk=walk, what="notebook")
    except _TooLarge as error:
        staged.unlink(missing_ok=True)
        walk.report(file.origin, "ignored-file", f"{error} was not imported; look at it by hand.")
        return None
    except _READ_ERRORS as error:
        staged.unlink(missing_ok=True)
        message = f"notebook could not be read ({_reason(error)}); download it again or ask the team to upload again."
        walk.report(file.origin, "unreadable-archive", message)
        return None
    return Submission(team_id="_".join(members), members=members, staged=staged, origin=file.origin,
                      timestamp=file.timestamp, uploader=file.uploader)


def _team_members(file: _File, walk: _Walk) -> tuple[str, ...] | None:
    """The team a file's name gives, or None after reporting why the name cannot be used."""
    match = _SUBMISSION_FILE.fullmatch(file.name) if len(file.name) <= _FILE_NAME_LENGTH_LIMIT else None
    if match is None:
        message = (f"'{visible(file.name, limit=120)}' is not named {_EXPECTED_NAMES}; "
                   "find out whose it is, rename it and import again.")
        walk.report(file.origin, "unmatched-name", message)
        return None
    members = tuple(sorted({name.lower() for name in match.group("first", "second") if name}))
    unusable = [name for name in members
                if len(name) > USER_NAME_LENGTH_LIMIT or _RESERVED_NAMES.fullmatch(name) or name.endswith(".")]
    if unusable:
        message = (f"the file name's user name '{visible(unusable[0], limit=80)}' is not an OLAT user name"
                   f" (longer than {USER_NAME_LENGTH_LIMIT} characters, or a name Windows reserves);"
                   " find out whose it is, rename it and import again.")
        walk.report(file.origin, "unmatched-name", message)
        return None
    return members


def _own_team_uploads(uploads: list[Submission], accepted: set[tuple[str, str]], walk: _Walk) -> list[Submission]:
    """Uploads by a member of the team they name; others only when the instructor accepted them."""
    kept = []
    for upload in uploads:
        if upload.uploader is None or upload.uploader in upload.members:
            kept.append(upload)
        elif (upload.uploader, upload.team_id) in accepted:
            kept.append(upload)
            walk.report(upload.origin, "accepted-upload-for-other-team",
                        f"uploaded by {upload.uploader} for team {upload.team_id}; graded for that team because"
                        f" --accept-upload-for-other-team {upload.uploader}:{upload.team_id} was given.")
        else:
            walk.report(upload.origin, "upload-for-other-team",
                        f"uploaded by {upload.uploader} for team {upload.team_id}, which {upload.uploader} is not in;"
                        " not graded and does not replace the team's own upload. If it is right, grade again with"
                        f" --accept-upload-for-other-team {upload.uploader}:{upload.team_id}.")
    return kept


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


def _copy_if_changed(source: Path, target: Path) -> None:
    if target.is_file() and _digest(target) == _digest(source):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)  # nbgrader may have left it read-only
    shutil.copyfile(source, target)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _is_litter(name: str) -> bool:
    lowered = name.lower()
    return lowered in _LITTER_FOLDERS or lowered in _LITTER_FILES or name.startswith("._")


def _shown(name: str | Path) -> str:
    """A name from the download as reports show it: printable, one line, not endless."""
    text = name.as_posix() if isinstance(name, Path) else name
    return visible(text, limit=200)


def _member_name(info: zipfile.ZipInfo) -> str:
    """Mac and some Windows tools store UTF-8 names without the UTF-8 flag; zipfile then shows cp437."""
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            name = name.encode("cp437").decode("utf-8")
        except UnicodeError:
            pass
    return name.replace("\\", "/")


def _special_zip_entry(info: zipfile.ZipInfo) -> str | None:
    """What a zip entry is when it is not a plain file: zips made on Unix store the file type."""
    mode = info.external_attr >> 16
    if info.create_system != 3 or stat.S_IFMT(mode) in (0, stat.S_IFREG, stat.S_IFDIR):
        return None
    return _special_kind(mode)


def _special_kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _zip_timestamp(info: zipfile.ZipInfo) -> datetime:
    # Zip times carry no time zone; taken as UTC they are off by the course's local offset, equally for all uploads.
    try:
        return datetime(*info.date_time, tzinfo=UTC)
    except ValueError:  # month 0 and similar from sloppy zip tools
        return datetime(1980, 1, 1, tzinfo=UTC)


def _joined_origins(submissions: list[Submission]) -> str:
    return "; ".join(submission.origin for submission in submissions)


def _reason(error: BaseException) -> str:
    return one_line(f"{type(error).__name__}: {error}", limit=200)
