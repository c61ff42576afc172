import io
import os
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coursekit.errors import CourseKitError
from coursekit.importing import (NOTEBOOK_SIZE_LIMIT, ImportResult, RosterEntry, Submission, import_download,
                                 read_roster, write_submissions)

NOTEBOOK = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
OTHER_NOTEBOOK = b'{"cells": [], "metadata": {"changed": true}, "nbformat": 4, "nbformat_minor": 5}'
EARLY = (2024, 11, 8, 11, 2, 2)
LATE = (2024, 11, 8, 11, 2, 4)  # zip times have two-second steps


def zip_bytes(files: dict[str, bytes | tuple[bytes, tuple]]) -> bytes:
    """A zip of name -> content, or name -> (content, date_time) to set the entry's time."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            content, date_time = content if isinstance(content, tuple) else (content, EARLY)
            archive.writestr(zipfile.ZipInfo(name, date_time), content, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def make_zip(path: Path, files: dict) -> Path:
    path.write_bytes(zip_bytes(files))
    return path


def make_folder(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir()
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def problems_of(result: ImportResult, kind: str) -> list:
    return [problem for problem in result.problems if problem.kind == kind]


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    paths = [root] if root.is_file() else sorted(path for path in root.rglob("*") if path.is_file())
    return {str(path): (path.read_bytes(), path.stat().st_mtime_ns) for path in paths}


def test_pairs_and_singles_become_teams_sorted_by_id(tmp_path):
    download = make_zip(tmp_path / "download.zip", {
        "Group 3/jdoe_anna.muster_ml_ex2.ipynb": NOTEBOOK,
        "Group 1/mmuster3_ml_ex2.ipynb": OTHER_NOTEBOOK,
    })
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["anna.muster_jdoe", "mmuster3"]
    pair, single = result.submissions
    assert pair.members == ("anna.muster", "jdoe")
    assert pair.content == NOTEBOOK and single.content == OTHER_NOTEBOOK
    assert pair.origin == "download.zip › Group 3/jdoe_anna.muster_ml_ex2.ipynb"
    assert single.members == ("mmuster3",)
    assert pair.timestamp == datetime(*EARLY, tzinfo=UTC)
    assert result.problems == () and result.roster == () and result.missing == ()


def test_names_match_case_insensitively_and_are_lower_cased(tmp_path):
    download = make_zip(tmp_path / "download.zip", {"x/JDoe_AMuster-2_ML_EX2.IPYNB": NOTEBOOK})
    [submission] = import_download(download=download).submissions
    assert submission.team_id == "amuster-2_jdoe"
    assert submission.members == ("amuster-2", "jdoe")


@pytest.mark.parametrize("suffix", [" (1)", "(2)", "-2", " copy", " copy 2", " - Copy", " - Kopie (2)", " (1) (2)"])
def test_copy_suffixes_are_accepted(tmp_path, suffix):
    name = f"jdoe_ml_ex2{suffix}.ipynb"
    download = make_zip(tmp_path / "download.zip", {f"Group 3/{name}": NOTEBOOK})
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["jdoe"]
    assert result.submissions[0].origin == f"download.zip › Group 3/{name}"
    assert result.problems == ()


@pytest.mark.parametrize("name", [
    "ml_ex2.ipynb", "a_b_c_ml_ex2.ipynb", "jdoe_ml_ex1.ipynb", "jdoe ml_ex2.ipynb", "<olat>_ml_ex2.ipynb",
    "Copy of jdoe_ml_ex2.ipynb",
])
def test_unmatched_notebooks_are_reported_with_their_origin(tmp_path, name):
    download = make_zip(tmp_path / "download.zip", {
        f"Group 9/{name}": OTHER_NOTEBOOK,
        "Group 1/jdoe_ml_ex2.ipynb": NOTEBOOK,
    })
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["jdoe"]
    [problem] = result.problems
    assert problem.kind == "unmatched-name"
    assert problem.origin == f"download.zip › Group 9/{name}"
    assert "<olat1>_<olat2>_ml_ex2.ipynb" in problem.message and "rename" in problem.message


def test_notebooks_in_zips_inside_the_download_zip_are_found(tmp_path):
    innermost = zip_bytes({"deep/bob_ml_ex2.ipynb": OTHER_NOTEBOOK})
    team_zip = zip_bytes({"jdoe_amuster_ml_ex2.ipynb": (NOTEBOOK, LATE), "more.zip": innermost})
    download = make_zip(tmp_path / "download.zip", {"Group 3/team.zip": team_zip})
    result = import_download(download=download)
    teams = {submission.team_id: submission for submission in result.submissions}
    assert set(teams) == {"amuster_jdoe", "bob"}
    assert teams["amuster_jdoe"].origin == "download.zip › Group 3/team.zip › jdoe_amuster_ml_ex2.ipynb"
    assert teams["amuster_jdoe"].timestamp == datetime(*LATE, tzinfo=UTC)
    assert teams["bob"].origin == "download.zip › Group 3/team.zip › more.zip › deep/bob_ml_ex2.ipynb"
    assert teams["bob"].content == OTHER_NOTEBOOK


def test_zips_nested_too_deep_are_reported_not_searched(tmp_path):
    archive = zip_bytes({"lost_ml_ex2.ipynb": NOTEBOOK})
    for level in (3, 2, 1):
        archive = zip_bytes({f"level{level}.zip": archive, f"found{level}_ml_ex2.ipynb": NOTEBOOK})
    download = make_zip(tmp_path / "download.zip", {"upload.zip": archive})
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["found1", "found2", "found3"]
    [problem] = result.problems
    assert problem.kind == "ignored-file"
    assert problem.origin == "download.zip › upload.zip › level1.zip › level2.zip › level3.zip"


def test_folder_download_uses_relative_paths_and_file_times(tmp_path):
    download = make_folder(tmp_path / "download", {
        "Abgabe 2/jdoe/jdoe_ml_ex2 (1).ipynb": NOTEBOOK,
        "x/team.zip": zip_bytes({"anna_bob_ml_ex2.ipynb": OTHER_NOTEBOOK}),
    })
    modified = datetime(2024, 11, 8, 11, 2, 3, tzinfo=UTC)
    os.utime(download / "Abgabe 2/jdoe/jdoe_ml_ex2 (1).ipynb", (modified.timestamp(), modified.timestamp()))
    result = import_download(download=download)
    teams = {submission.team_id: submission for submission in result.submissions}
    assert teams["jdoe"].origin == "download/ › Abgabe 2/jdoe/jdoe_ml_ex2 (1).ipynb"
    assert teams["jdoe"].timestamp == modified
    assert teams["anna_bob"].origin == "download/ › x/team.zip › anna_bob_ml_ex2.ipynb"
    assert teams["anna_bob"].content == OTHER_NOTEBOOK
    assert result.problems == ()


def test_newest_upload_of_a_team_wins_and_the_others_are_superseded(tmp_path):
    download = make_zip(tmp_path / "download.zip", {
        "a/jdoe_anna_ml_ex2.ipynb": (OTHER_NOTEBOOK, EARLY),
        "b/ANNA_jdoe_ml_ex2 (1).ipynb": (NOTEBOOK, LATE),
        "c/jdoe_anna_ml_ex2-2.ipynb": (OTHER_NOTEBOOK, EARLY),
    })
    result = import_download(download=download)
    [submission] = result.submissions
    assert submission.origin == "download.zip › b/ANNA_jdoe_ml_ex2 (1).ipynb"
    assert submission.content == NOTEBOOK
    superseded = problems_of(result, "superseded")
    assert [problem.origin for problem in superseded] == [
        "download.zip › a/jdoe_anna_ml_ex2.ipynb", "download.zip › c/jdoe_anna_ml_ex2-2.ipynb"
    ]
    assert all(submission.origin in problem.message for problem in superseded)


def test_equal_times_are_decided_by_the_later_origin(tmp_path):
    download = make_zip(tmp_path / "download.zip", {"b/jdoe_ml_ex2.ipynb": NOTEBOOK, "a/jdoe_ml_ex2.ipynb": OTHER_NOTEBOOK})
    result = import_download(download=download)
    assert result.submissions[0].origin == "download.zip › b/jdoe_ml_ex2.ipynb"
    assert [problem.origin for problem in problems_of(result, "superseded")] == ["download.zip › a/jdoe_ml_ex2.ipynb"]


def test_other_files_are_reported_and_system_litter_is_skipped(tmp_path):
    download = make_zip(tmp_path / "download.zip", {
        "g/jdoe_ml_ex2.ipynb": NOTEBOOK,
        "g/report.pdf": b"%PDF",
        "g/helper.py": b"print()",
        "g/upload.rar": b"Rar!",
        "__MACOSX/g/._jdoe_ml_ex2.ipynb": b"\x00",
        "g/._bob_ml_ex2.ipynb": b"\x00",
        "g/.ipynb_checkpoints/jdoe_ml_ex2-checkpoint.ipynb": NOTEBOOK,
        "g/.DS_Store": b"\x00",
    })
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["jdoe"]
    assert [(problem.kind, problem.origin) for problem in result.problems] == [
        ("ignored-file", "download.zip › g/helper.py"),
        ("ignored-file", "download.zip › g/report.pdf"),
        ("ignored-file", "download.zip › g/upload.rar"),
    ]
    assert "only .zip archives" in result.problems[2].message


def test_a_student_in_two_teams_is_reported_once_and_both_are_graded(tmp_path):
    download = make_zip(tmp_path / "download.zip", {
        "1/anna_bob_ml_ex2.ipynb": NOTEBOOK,
        "2/anna_carl_ml_ex2.ipynb": NOTEBOOK,
        "3/anna_ml_ex2.ipynb": NOTEBOOK,
        "4/dora_ml_ex2.ipynb": NOTEBOOK,
    })
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["anna", "anna_bob", "anna_carl", "dora"]
    [problem] = result.problems
    assert problem.kind == "student-in-two-teams"
    assert problem.message.startswith("anna is in 3 teams")
    assert all(team in problem.message for team in ("anna_bob", "anna_carl", "anna "))
    assert "1/anna_bob_ml_ex2.ipynb" in problem.origin and "2/anna_carl_ml_ex2.ipynb" in problem.origin


def test_a_single_and_a_pair_upload_of_one_student_are_both_graded(tmp_path):
    download = make_zip(tmp_path / "download.zip", {"1/a_ml_ex2.ipynb": NOTEBOOK, "2/a_b_ml_ex2.ipynb": NOTEBOOK})
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["a", "a_b"]
    [problem] = result.problems
    assert problem.kind == "student-in-two-teams" and problem.message.startswith("a is in 2 teams (a and a_b)")


def test_roster_reports_unknown_and_missing_students(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "username,first_name,last_name,email\n"
        "jdoe,Jane,Doe,jane@uni.example\nAnna,Anna,Muster,anna@uni.example\ncarl,Carl,Cox,carl@uni.example\n\n"
    )
    download = make_zip(tmp_path / "download.zip", {
        "1/jdoe_anna_ml_ex2.ipynb": NOTEBOOK,
        "2/zed_ml_ex2.ipynb": NOTEBOOK,
    })
    result = import_download(download=download, roster=roster)
    assert result.roster == (
        RosterEntry("jdoe", "Jane", "Doe", "jane@uni.example"),
        RosterEntry("anna", "Anna", "Muster", "anna@uni.example"),
        RosterEntry("carl", "Carl", "Cox", "carl@uni.example"),
    )
    assert result.missing == ("carl",)
    [unknown] = result.problems
    assert unknown.kind == "unknown-student" and unknown.message.startswith("zed is not in the roster")
    assert unknown.origin == "download.zip › 2/zed_ml_ex2.ipynb"
    assert [submission.team_id for submission in result.submissions] == ["anna_jdoe", "zed"]


def test_roster_with_german_headers_semicolons_and_bom(tmp_path):
    roster = tmp_path / "mitglieder.csv"
    text = "\ufeffBenutzername;Vorname;Nachname;E-Mail;Gruppe\r\nJDoe;Jäne;Döe;jane@uni.example;3\r\n"
    roster.write_bytes(text.encode())
    assert read_roster(roster) == (RosterEntry("jdoe", "Jäne", "Döe", "jane@uni.example"),)


def test_roster_with_spelled_out_headers_in_another_order(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text('Email,Last name,First name,Username\njane@uni.example,"Doe, Jr.",Jane,jdoe\n')
    assert read_roster(roster) == (RosterEntry("jdoe", "Jane", "Doe, Jr.", "jane@uni.example"),)


def test_roster_header_that_is_not_understood_names_the_expected_columns(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("name,mail\nJane Doe,jane@uni.example\n")
    expected = "no column for user name, first name, last name; .*username,first_name,last_name,email"
    with pytest.raises(CourseKitError, match=expected) as error:
        read_roster(roster)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("content", "expected"), [
    (None, "does not exist"),
    ("username,first_name,last_name,email\n,Jane,Doe,jane@uni.example\n".encode(), "line 2 has no user name"),
    ("Benutzername;Vorname;Nachname;E-Mail\njdoe;Jäne;Doe;j@x\n".encode("cp1252"), "not UTF-8"),
    (b"\n\n", "is empty"),
])
def test_unusable_rosters_are_explained(tmp_path, content, expected):
    roster = tmp_path / "roster.csv"
    if content is not None:
        roster.write_bytes(content)
    with pytest.raises(CourseKitError, match=expected):
        read_roster(roster)


def test_missing_download_is_an_error(tmp_path):
    with pytest.raises(CourseKitError, match="does not exist"):
        import_download(download=tmp_path / "nowhere.zip")


def test_a_file_that_is_not_a_zip_is_an_error(tmp_path):
    notebook = tmp_path / "jdoe_ml_ex2.ipynb"
    notebook.write_bytes(NOTEBOOK)
    with pytest.raises(CourseKitError, match="neither a folder nor a .zip archive"):
        import_download(download=notebook)
    damaged = tmp_path / "download.zip"
    damaged.write_bytes(zip_bytes({"jdoe_ml_ex2.ipynb": NOTEBOOK})[:40])
    with pytest.raises(CourseKitError, match="damaged zip archive"):
        import_download(download=damaged)


def test_a_download_without_notebooks_is_an_error(tmp_path):
    download = make_zip(tmp_path / "download.zip", {
        "Group 1/report.pdf": b"%PDF",
        "Group 2/team.zip": zip_bytes({"a.py": b""}),
    })
    expected = r"no \*\.ipynb files found in .*download\.zip; is this the OLAT bulk download of exercise 2\?"
    with pytest.raises(CourseKitError, match=expected):
        import_download(download=download)
    with pytest.raises(CourseKitError, match="no \\*.ipynb files found"):
        import_download(download=make_folder(tmp_path / "empty", {}))


def test_damaged_team_zips_are_reported_and_the_rest_is_imported(tmp_path):
    truncated = zip_bytes({"anna_ml_ex2.ipynb": NOTEBOOK})[:-30]
    download = make_zip(tmp_path / "download.zip", {
        "1/team.zip": b"this is not a zip",
        "2/team.zip": truncated,
        "3/jdoe_ml_ex2.ipynb": NOTEBOOK,
    })
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["jdoe"]
    unreadable = problems_of(result, "unreadable-archive")
    assert [problem.origin for problem in unreadable] == ["download.zip › 1/team.zip", "download.zip › 2/team.zip"]
    assert all("BadZipFile" in problem.message and "\n" not in problem.message for problem in unreadable)


def test_password_protected_notebooks_are_reported(tmp_path):
    archive = bytearray(zip_bytes({"1/jdoe_ml_ex2.ipynb": NOTEBOOK, "2/anna_ml_ex2.ipynb": NOTEBOOK}))
    # zipfile cannot write encrypted entries; set the "encrypted" bit of the first one in the central directory.
    archive[archive.index(b"PK\x01\x02") + 8] |= 0x1
    download = tmp_path / "download.zip"
    download.write_bytes(archive)
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["anna"]
    [problem] = result.problems
    assert (problem.kind, problem.origin) == ("unreadable-archive", "download.zip › 1/jdoe_ml_ex2.ipynb")
    assert "password" in problem.message


def test_oversized_notebooks_are_skipped_and_reported(tmp_path):
    huge = os.urandom(NOTEBOOK_SIZE_LIMIT + 1)
    download = make_zip(tmp_path / "download.zip", {"1/jdoe_ml_ex2.ipynb": huge, "2/anna_ml_ex2.ipynb": NOTEBOOK})
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["anna"]
    [problem] = result.problems
    assert (problem.kind, problem.origin) == ("ignored-file", "download.zip › 1/jdoe_ml_ex2.ipynb")
    assert "larger than 20 MiB" in problem.message


def test_write_submissions_lays_out_nbgrader_folders_and_keeps_the_download(tmp_path):
    download = make_folder(tmp_path / "download", {
        "1/jdoe_anna_ml_ex2.ipynb": b"{not even json",
        "2/team.zip": zip_bytes({"bob_ml_ex2.ipynb": (NOTEBOOK, LATE)}),
    })
    uploaded = datetime(2024, 11, 8, 11, 2, 3, tzinfo=UTC)
    os.utime(download / "1/jdoe_anna_ml_ex2.ipynb", (uploaded.timestamp(), uploaded.timestamp()))
    before = snapshot(download)
    course = tmp_path / "course"

    written = write_submissions(result=import_download(download=download), course_root=course)

    assert written == [
        course / "submitted/anna_jdoe/ex2/ml_ex2.ipynb",
        course / "submitted/bob/ex2/ml_ex2.ipynb",
    ]
    assert written[0].read_bytes() == b"{not even json"
    assert written[1].read_bytes() == NOTEBOOK
    assert (course / "submitted/anna_jdoe/ex2/timestamp.txt").read_text() == "2024-11-08 11:02:03.000000 UTC"
    assert (course / "submitted/bob/ex2/timestamp.txt").read_text() == "2024-11-08 11:02:04.000000 UTC"
    assert snapshot(download) == before


def test_write_submissions_keeps_unchanged_files_and_overwrites_changed_ones(tmp_path):
    download = make_zip(tmp_path / "download.zip", {"1/jdoe_ml_ex2.ipynb": NOTEBOOK, "2/anna_ml_ex2.ipynb": NOTEBOOK})
    before = snapshot(download)
    course = tmp_path / "course"
    result = import_download(download=download)
    first = write_submissions(result=result, course_root=course, assignment_id="ex2b", notebook_name="other")
    assert first == [course / "submitted/anna/ex2b/other.ipynb", course / "submitted/jdoe/ex2b/other.ipynb"]
    long_ago = 1_000_000_000
    for path in course.rglob("*.*"):
        os.utime(path, (long_ago, long_ago))

    changed_copy = tmp_path / "changed.ipynb"
    changed_copy.write_bytes(OTHER_NOTEBOOK)
    changed = Submission(**{**vars(result.submissions[1]), "staged": changed_copy})
    again = write_submissions(
        result=ImportResult(submissions=(result.submissions[0], changed), problems=(), roster=(), missing=()),
        course_root=course, assignment_id="ex2b", notebook_name="other",
    )

    assert again == first
    assert first[0].stat().st_mtime == long_ago
    assert (course / "submitted/anna/ex2b/timestamp.txt").stat().st_mtime == long_ago
    assert first[1].read_bytes() == OTHER_NOTEBOOK and first[1].stat().st_mtime != long_ago
    assert snapshot(download) == before


def test_every_problem_message_is_one_line(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("username,first_name,last_name,email\ncarl,Carl,Cox,c@x\n")
    download = make_zip(tmp_path / "download.zip", {
        "1/a_b_ml_ex2.ipynb": NOTEBOOK, "2/a_ml_ex2.ipynb": NOTEBOOK, "3/a_ml_ex2 (1).ipynb": NOTEBOOK,
        "4/notes.txt": b"", "5/unnamed.ipynb": NOTEBOOK, "6/broken.zip": b"x",
    })
    result = import_download(download=download, roster=roster)
    kinds = {problem.kind for problem in result.problems}
    assert kinds == {"superseded", "student-in-two-teams", "ignored-file", "unmatched-name", "unreadable-archive",
                     "unknown-student"}
    assert all(problem.message and "\n" not in problem.message for problem in result.problems)
