import io
import os
import re
import stat
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coursekit.olat import importing
from coursekit.errors import CourseKitError
from coursekit.olat.importing import (NOTEBOOK_SIZE_LIMIT, ImportResult, RosterEntry, Submission, import_download,
                                 read_roster, uploader_of, write_submissions)

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
    assert "larger than 10 MiB" in problem.message


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


# ---------------------------------------------------------------- hostile uploads

ARCHIVE = "ita_Exercise_2_2024_11_08T12_00_00"


def olat_download(path: Path, uploads: list[tuple[str, str, bytes, tuple]]) -> Path:
    """OLAT's individual-task archive: ita_<node>_<date>/<Last>_<First>_<user>/2_submissions/<file>."""
    return make_zip(path, {f"{ARCHIVE}/{folder}/2_submissions/{name}": (content, moment)
                           for folder, name, content, moment in uploads})


@pytest.mark.parametrize(("folders", "known", "uploader"), [
    ([ARCHIVE, "Doe_Jane_jdoe", "2_submissions"], frozenset(), "jdoe"),
    ([ARCHIVE, "van_der_Berg_Anna_Maria_amvdb", "2_submissions"], frozenset(), "amvdb"),
    (["Doe_Jane_JDoe", "x_y_z"], frozenset(), "jdoe"),           # the outermost user folder counts
    ([ARCHIVE, "Doe_Jane_jdoe", "2_submissions"], frozenset({"jdoe", "doe"}), "jdoe"),
    (["Müller_Hans_hmueller"], frozenset({"hmueller"}), "hmueller"),
    (["jdoe"], frozenset({"jdoe"}), "jdoe"),                     # a folder per user name
    (["jdoe"], frozenset(), None),                               # without a roster only Last_First_user counts
    (["Gruppe 01"], frozenset({"jdoe"}), None),
    (["Group 3"], frozenset(), None),
    (["grouptask_Exercise_2_2024", "Team_A_3276800", "2_submissions"], frozenset(), None),
    ([ARCHIVE, "2_submissions"], frozenset(), None),
    ([], frozenset(), None),
])
def test_uploader_is_read_from_olats_user_folder(folders, known, uploader):
    assert uploader_of(folders, known_users=known) == uploader


def test_an_upload_for_another_team_is_reported_and_does_not_replace_the_teams_own(tmp_path):
    download = olat_download(tmp_path / "download.zip", [
        ("Doe_Jane_jdoe", "jdoe_ml_ex2.ipynb", NOTEBOOK, EARLY),
        ("Evil_Eve_eve", "jdoe_ml_ex2.ipynb", OTHER_NOTEBOOK, LATE),
        ("Evil_Eve_eve", "eve_ml_ex2.ipynb", NOTEBOOK, EARLY),
    ])
    result = import_download(download=download)
    teams = {submission.team_id: submission for submission in result.submissions}
    assert set(teams) == {"eve", "jdoe"}
    assert teams["jdoe"].content == NOTEBOOK and teams["jdoe"].uploader == "jdoe"
    [problem] = result.problems
    assert problem.kind == "upload-for-other-team"
    assert problem.origin == f"download.zip › {ARCHIVE}/Evil_Eve_eve/2_submissions/jdoe_ml_ex2.ipynb"
    assert "uploaded by eve for team jdoe" in problem.message
    assert "--accept-upload-for-other-team eve:jdoe" in problem.message


def test_a_partner_may_upload_for_the_pair_and_the_newest_wins(tmp_path):
    download = olat_download(tmp_path / "download.zip", [
        ("Doe_Jane_jdoe", "jdoe_anna_ml_ex2.ipynb", OTHER_NOTEBOOK, EARLY),
        ("Muster_Anna_anna", "anna_jdoe_ml_ex2.ipynb", NOTEBOOK, LATE),
    ])
    result = import_download(download=download)
    [submission] = result.submissions
    assert submission.uploader == "anna" and submission.content == NOTEBOOK
    assert [problem.kind for problem in result.problems] == ["superseded"]


def test_an_accepted_upload_for_another_team_competes_and_is_still_reported(tmp_path):
    download = olat_download(tmp_path / "download.zip", [
        ("Doe_Jane_jdoe", "jdoe_ml_ex2.ipynb", NOTEBOOK, EARLY),
        ("Evil_Eve_eve", "jdoe_ml_ex2.ipynb", OTHER_NOTEBOOK, LATE),
    ])
    result = import_download(download=download, accepted_uploads=[("Eve", "JDOE")])
    [submission] = result.submissions
    assert submission.uploader == "eve" and submission.content == OTHER_NOTEBOOK
    assert sorted(problem.kind for problem in result.problems) == ["accepted-upload-for-other-team", "superseded"]


def test_folders_inside_a_teams_zip_cannot_claim_another_uploader(tmp_path):
    forged = zip_bytes({"Doe_Jane_jdoe/2_submissions/jdoe_ml_ex2.ipynb": (OTHER_NOTEBOOK, LATE)})
    download = olat_download(tmp_path / "download.zip", [
        ("Doe_Jane_jdoe", "jdoe_ml_ex2.ipynb", NOTEBOOK, EARLY),
        ("Evil_Eve_eve", "upload.zip", forged, LATE),
    ])
    result = import_download(download=download)
    [submission] = result.submissions
    assert submission.content == NOTEBOOK
    [problem] = result.problems
    assert problem.kind == "upload-for-other-team" and "uploaded by eve" in problem.message


def test_with_a_roster_user_folders_are_matched_to_its_user_names(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("username,first_name,last_name,email\njdoe,Jane,Doe,j@x\neve,Eve,Evil,e@x\n")
    download = make_zip(tmp_path / "download.zip", {
        "Abgabe/Jane Doe jdoe/jdoe_ml_ex2.ipynb": (NOTEBOOK, EARLY),     # not OLAT's shape, but ends in _jdoe? no
        "Abgabe/Evil_Eve_eve/jdoe_ml_ex2.ipynb": (OTHER_NOTEBOOK, LATE),
    })
    result = import_download(download=download, roster=roster)
    [submission] = result.submissions
    assert submission.content == NOTEBOOK and submission.uploader is None
    assert sorted(problem.kind for problem in result.problems) == ["upload-for-other-team"]


@pytest.mark.parametrize("name", [
    "a" * 290 + "_ml_ex2.ipynb",                       # a 300-character name
    "b" * 65 + "_ml_ex2.ipynb",                        # longer than any OLAT user name
    "con_ml_ex2.ipynb", "jdoe_NUL_ml_ex2.ipynb", "lpt1.txt_ml_ex2.ipynb",
    "jdoe._ml_ex2.ipynb",
    "..\\..\\x_ml_ex2.ipynb".replace("\\", "_"),
    "jdoe_ml_ex2\x1b[2J.ipynb", "\u202ejdoe_ml_ex2.ipynb",
])
def test_names_that_cannot_be_folders_are_reported_not_imported(tmp_path, name):
    download = make_zip(tmp_path / "download.zip", {f"g/{name}": NOTEBOOK, "h/anna_ml_ex2.ipynb": NOTEBOOK})
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["anna"]
    [problem] = result.problems
    assert problem.kind == "unmatched-name"
    assert "\x1b" not in problem.origin + problem.message and "\u202e" not in problem.origin + problem.message
    assert len(problem.message) < 400
    write_submissions(result=result, course_root=tmp_path / "course")


def test_team_ids_are_short_plain_and_unique(tmp_path):
    longest = "a" * 64
    download = make_zip(tmp_path / "download.zip", {
        f"1/{longest}_{longest[1:].upper()}x_ml_ex2 (1) (2).ipynb": NOTEBOOK, "2/A.B-c_ml_ex2.ipynb": NOTEBOOK,
    })
    result = import_download(download=download)
    ids = [submission.team_id for submission in result.submissions]
    assert ids == ["a.b-c", f"{longest}_{longest[1:]}x"]
    assert all(len(team) <= 2 * 64 + 1 and re.fullmatch(r"[a-z0-9][a-z0-9._\-]*", team) for team in ids)
    write_submissions(result=result, course_root=tmp_path / "course")


def test_undecodable_and_control_character_names_in_a_folder_become_problems(tmp_path):
    download = make_folder(tmp_path / "download", {"1/jdoe_ml_ex2.ipynb": NOTEBOOK})
    os.mkdir(os.fsencode(download / "2"))
    Path(os.fsdecode(os.fsencode(download / "2") + b"/\xff\xfe_ml_ex2.ipynb")).write_bytes(NOTEBOOK)
    (download / "2" / "evil\x1b]0;owned\x07_ml_ex2.ipynb").write_bytes(NOTEBOOK)
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["jdoe"]
    assert [problem.kind for problem in result.problems] == ["unmatched-name", "unmatched-name"]
    text = "\n".join(problem.origin + problem.message for problem in result.problems)
    assert "\x1b" not in text and "\x07" not in text
    text.encode("utf-8")  # no lone surrogates from the undecodable name


def zip_with_entry(path: Path, name: str, content: bytes, mode: int) -> Path:
    info = zipfile.ZipInfo(name, EARLY)
    info.create_system = 3
    info.external_attr = mode << 16
    with zipfile.ZipFile(path, "a" if path.exists() else "w") as archive:
        archive.writestr(info, content)
    return path


@pytest.mark.parametrize(("mode", "kind"), [
    (stat.S_IFLNK | 0o777, "a symbolic link"), (stat.S_IFCHR | 0o666, "a device"), (stat.S_IFIFO | 0o644, "a named pipe"),
])
def test_links_and_devices_in_zips_are_reported_not_extracted(tmp_path, mode, kind):
    download = make_zip(tmp_path / "download.zip", {"1/anna_ml_ex2.ipynb": NOTEBOOK})
    zip_with_entry(download, "2/jdoe_ml_ex2.ipynb", b"/etc/shadow", mode)
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["anna"]
    [problem] = result.problems
    assert (problem.kind, problem.origin) == ("special-file", "download.zip › 2/jdoe_ml_ex2.ipynb")
    assert kind in problem.message


def test_links_pipes_and_linked_folders_in_a_folder_download_are_never_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "bob_ml_ex2.ipynb").write_bytes(OTHER_NOTEBOOK)
    download = make_folder(tmp_path / "download", {"1/anna_ml_ex2.ipynb": NOTEBOOK})
    (download / "2").mkdir()
    (download / "2" / "jdoe_ml_ex2.ipynb").symlink_to(secret / "bob_ml_ex2.ipynb")
    (download / "3").symlink_to(secret, target_is_directory=True)
    os.mkfifo(download / "2" / "carl_ml_ex2.ipynb")  # opening it would block forever
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["anna"]
    assert sorted((problem.kind, problem.origin.split(" › ")[1]) for problem in result.problems) == [
        ("special-file", "2/carl_ml_ex2.ipynb"), ("special-file", "2/jdoe_ml_ex2.ipynb"), ("special-file", "3"),
    ]


def test_highly_compressed_notebooks_are_refused_before_reading(tmp_path):
    zeros = bytes(2 * 1024 * 1024)  # 2 MiB of zeros deflate to ~2 KiB: a 1000-fold ratio
    download = make_zip(tmp_path / "download.zip", {"1/jdoe_ml_ex2.ipynb": zeros, "2/anna_ml_ex2.ipynb": NOTEBOOK})
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["anna"]
    [problem] = result.problems
    assert problem.kind == "ignored-file" and "compressed more than 200-fold" in problem.message


def test_nested_zip_bombs_are_refused_before_reading(tmp_path):
    bomb = zip_bytes({f"user{number}_ml_ex2.ipynb": bytes(4 * 1024 * 1024) for number in range(4)})
    for _ in range(2):
        bomb = zip_bytes({f"{number}.zip": bomb for number in range(8)})
    download = make_zip(tmp_path / "download.zip", {"1/bomb.zip": bomb, "2/anna_ml_ex2.ipynb": NOTEBOOK})
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["anna"]
    assert result.problems and all(problem.kind == "ignored-file" for problem in result.problems)


def test_zips_with_too_many_entries_or_too_much_declared_size_are_not_searched(tmp_path, monkeypatch):
    many = zip_bytes({f"{number}.txt": b"" for number in range(importing.ARCHIVE_ENTRY_LIMIT + 1)})
    monkeypatch.setattr(importing, "ARCHIVE_SIZE_LIMIT", 1024 * 1024)
    large = zip_bytes({"jdoe_ml_ex2.ipynb": os.urandom(600 * 1024), "bob_ml_ex2.ipynb": os.urandom(600 * 1024)})
    download = make_zip(tmp_path / "download.zip", {"1/many.zip": many, "2/large.zip": large,
                                                    "3/anna_ml_ex2.ipynb": NOTEBOOK})
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["anna"]
    assert [(problem.kind, problem.origin) for problem in result.problems] == [
        ("ignored-file", "download.zip › 1/many.zip"), ("ignored-file", "download.zip › 2/large.zip"),
    ]
    assert "10001 entries" in result.problems[0].message


def test_a_zip_that_lies_about_sizes_is_read_no_further_than_the_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(importing, "NOTEBOOK_SIZE_LIMIT", 64 * 1024)
    archive = bytearray(zip_bytes({"1/jdoe_ml_ex2.ipynb": os.urandom(200 * 1024), "2/anna_ml_ex2.ipynb": NOTEBOOK}))
    # Declare 1 KiB for the first entry in both headers; zipfile then stops early and finds the CRC wrong.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        position = archive.index(signature)
        archive[position + offset:position + offset + 4] = (1024).to_bytes(4, "little")
    download = tmp_path / "download.zip"
    download.write_bytes(archive)
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["anna"]
    [problem] = result.problems
    assert problem.kind == "unreadable-archive" and problem.origin == "download.zip › 1/jdoe_ml_ex2.ipynb"


def test_the_imports_total_budget_stops_reading_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(importing, "TOTAL_SIZE_LIMIT", 300 * 1024)
    download = make_zip(tmp_path / "download.zip", {
        f"{number}/user{number}_ml_ex2.ipynb": os.urandom(100 * 1024) for number in range(5)
    })
    result = import_download(download=download)
    assert [submission.team_id for submission in result.submissions] == ["user0", "user1", "user2"]
    assert all("beyond the import's total" in problem.message for problem in result.problems)
    assert len(result.problems) == 2


def test_notebooks_wait_on_disk_not_in_memory(tmp_path):
    download = make_zip(tmp_path / "download.zip", {"1/jdoe_ml_ex2.ipynb": NOTEBOOK})
    result = import_download(download=download, staging=tmp_path / "staging")
    [submission] = result.submissions
    assert submission.staged.parent == tmp_path / "staging" and submission.staged.read_bytes() == NOTEBOOK
    assert not any(isinstance(value, bytes) for value in vars(submission).values())
