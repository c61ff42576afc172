"""One OLAT download holding every hostile upload of issue 10 at once, next to honest teams,
graded by the real `coursekit grade` (real nbgrader, real sandbox) — then graded again."""
import csv
import html
import io
import re
import stat
import subprocess
import sys
import time
import zipfile

import nbformat
import pytest

from coursekit import demo
from coursekit.notebooks import fill_answers, master_answers, read_notebook
from coursekit.nbgrader_plugins.rebuild import read_cells
from coursekit.engine.workflow import read_state
from conftest import MASTER_PATH, RELEASE_PATH, REPOSITORY

sys.path.insert(0, str(REPOSITORY / "benchmarks"))
from bench_hostile_upload import nested_zip_bomb, notebook_bomb  # noqa: E402

ARCHIVE = "ita_Exercise_2_2024_11_08T12_00_00"
LONG_NAME = "a" * 290 + "_ml_ex2.ipynb"  # 300 characters
ESCAPES = "\x1b[2J\x1b]0;owned\x07\x1b[31m"
FORMULAS = {"first_name": '=HYPERLINK("http://evil.example","click")', "last_name": "@SUM(1+1)",
            "email": "+cmd|' /C calc'!A0"}
ROSTER = [
    ("anna", "Anna", "Muster", "anna@x.org"), ("bob", "Bob", "Berg", "bob@x.org"),
    ("carl", "Carl", "Keller", "carl@x.org"), ("dora", "Dora", "Vogel", "dora@x.org"),
    ("eve", "Eve", "Evil", "eve@x.org"), ("mallory", "Mallory", "Mal", "mal@x.org"),
    ("bomber", "Bo", "Bomb", "bo@x.org"), ("lou", "Lou", "Long", "lou@x.org"), ("lin", "Lin", "Link", "lin@x.org"),
    ("frank", FORMULAS["first_name"], FORMULAS["last_name"], FORMULAS["email"]),
]


def deep_unary_notebook() -> bytes:
    """The solution, but one answer cell ends in a 10,000-deep unary expression and escape sequences."""
    answers = master_answers(read_notebook(MASTER_PATH))
    answers["optimizer_choice"] += f"\nx = {'-' * 10_000}1  # {ESCAPES}\n"
    return nbformat.writes(fill_answers(read_notebook(RELEASE_PATH), answers)).encode()


def entry(path: str, moment: tuple, mode: int | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(f"{ARCHIVE}/{path}", moment)
    info.compress_type = zipfile.ZIP_DEFLATED
    if mode is not None:
        info.create_system, info.external_attr = 3, mode << 16
    return info


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile")
    samples = demo.sample_notebooks(REPOSITORY)
    early, late = (2024, 11, 8, 10, 0, 0), (2024, 11, 8, 11, 0, 0)
    download = work / "download.zip"
    with zipfile.ZipFile(download, "w") as archive:
        # Honest teams: a pair uploaded by one partner, two singles.
        archive.writestr(entry("Muster_Anna_anna/2_submissions/anna_bob_ml_ex2.ipynb", early), samples["all_correct"])
        archive.writestr(entry("Keller_Carl_carl/2_submissions/carl_ml_ex2.ipynb", early), samples["partly_right"])
        archive.writestr(entry("Vogel_Dora_dora/2_submissions/dora_ml_ex2.ipynb", early), samples["all_correct"])
        # Eve uploads a blank notebook named for Carl, later than Carl's own.
        archive.writestr(entry("Evil_Eve_eve/2_submissions/carl_ml_ex2.ipynb", late), samples["blank"])
        # A 300-character file name; a name with escape sequences.
        archive.writestr(entry(f"Long_Lou_lou/2_submissions/{LONG_NAME}", late), samples["blank"])
        archive.writestr(entry(f"Long_Lou_lou/2_submissions/lou{ESCAPES}_ml_ex2.ipynb", late), samples["blank"])
        # A 10,000-deep expression in an answer cell.
        archive.writestr(entry("Mal_Mallory_mallory/2_submissions/mallory_ml_ex2.ipynb", late), deep_unary_notebook())
        # Zip bombs: 40 x 49 MiB of zeros in 1.9 MB, and ~1 KiB of nested zips inflating to 2.3 GiB.
        archive.writestr(entry("Bomb_Bo_bomber/2_submissions/notebooks.zip", late), notebook_bomb())
        archive.writestr(entry("Bomb_Bo_bomber/2_submissions/nested.zip", late), nested_zip_bomb())
        # A link and a device posing as notebooks.
        archive.writestr(entry("Link_Lin_lin/2_submissions/lin_ml_ex2.ipynb", late, stat.S_IFLNK | 0o777),
                         "/etc/shadow")
        archive.writestr(entry("Link_Lin_lin/2_submissions/bob_ml_ex2.ipynb", late, stat.S_IFCHR | 0o666), "")
    roster = work / "roster.csv"
    with roster.open("w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([("username", "first_name", "last_name", "email"), *ROSTER])
    course = work / "course"
    demo.copy_course(course_root=REPOSITORY, destination=course)
    command = [sys.executable, "-m", "coursekit.cli", "--course", str(course), "grade", str(download),
               "--roster", str(roster), "--output", str(work / "results"), "--workers", "2"]
    # The wrapper reports the peak memory of every process of the run (RUSAGE_CHILDREN takes the maximum).
    measure = ("import resource, subprocess, sys; run = subprocess.run(sys.argv[1:]);"
               "print('peak-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(run.returncode)")
    first = subprocess.run([sys.executable, "-c", measure, *command], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    again = subprocess.run(command, capture_output=True, text=True)
    return work, first, again


def grades_of(work):
    with (work / "results" / "grades.csv").open(encoding="utf-8", newline="") as file:
        return {row["username"]: row for row in csv.DictReader(file)}


def report_text(work):
    """report.html as text: the problem lines a TA reads."""
    return html.unescape(re.sub(r"<[^>]+>", " ", (work / "results" / "report.html").read_text(encoding="utf-8")))


def test_honest_teams_get_exactly_their_grades(graded):
    work, *_ = graded
    rows = grades_of(work)
    autograded = {username: rows[username]["autograded"] for username in ("anna", "bob", "carl", "dora")}
    assert autograded == {"anna": "56", "bob": "56", "carl": "48", "dora": "56"}
    assert rows["anna"]["team"] == rows["bob"]["team"] == "anna_bob"
    assert rows["carl"]["status"] == rows["dora"]["status"] == "graded"


def test_an_upload_for_another_team_is_reported_and_not_graded(graded):
    work, *_ = graded
    assert grades_of(work)["eve"]["status"] == "no submission"
    assert "uploaded by eve for team carl" in " ".join(report_text(work).split())


def test_hostile_names_and_entries_are_problem_lines(graded):
    work, first, _ = graded
    text = " ".join(report_text(work).split())
    assert "Long_Lou_lou/2_submissions/" + "a" * 100 in text and "is not named" in text
    assert "symbolic link in a zip; not extracted" in text and "a device in a zip" in text
    assert "notebooks.zip ignored-file zip compressed more than 200-fold" in text
    assert "lou\\x1b[2J\\x1b]0;owned\\x07\\x1b[31m_ml_ex2.ipynb' is not named" in text
    assert "nested.zip › level1.zip › level0.zip" in text and "compressed more than 200-fold" in text
    assert "import problems: 7" in first.stdout
    teams = {row["team"] for row in grades_of(work).values()}
    assert teams == {"anna_bob", "carl", "dora", "mallory", ""}


def test_a_deep_expression_is_an_integrity_finding_and_the_run_completes(graded):
    work, first, _ = graded
    rows = grades_of(work)
    assert rows["mallory"]["status"] == "graded"
    assert rows["mallory"]["autograded"] == "52"  # only the cell with the expression fails
    integrity = (work / "results" / "integrity.txt").read_text(encoding="utf-8")
    assert "mallory" in integrity and "too deeply nested" in integrity
    assert (work / "results" / "feedback" / "mallory.html").exists()


def test_no_escape_sequence_or_formula_reaches_the_files_a_ta_opens(graded):
    work, first, _ = graded
    for name in ("integrity.txt", "grades.csv"):
        text = (work / "results" / name).read_text(encoding="utf-8")
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text.replace("\r\n", "\n")), name
    assert "\x1b" not in first.stdout + first.stderr
    frank = grades_of(work)["frank"]
    assert {column: frank[column] for column in FORMULAS} == {
        column: "'" + formula for column, formula in FORMULAS.items()}


def test_no_process_of_the_run_goes_above_one_gibibyte(graded):
    _, first, _ = graded
    peak_kib = int(re.search(r"peak-kib (\d+)", first.stdout)[1])
    assert peak_kib < 1024 * 1024, f"{peak_kib / 1024:.0f} MiB"


def test_a_rerun_on_the_saved_state_grades_nothing_and_gives_the_same_grades(graded):
    work, first, again = graded
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(0 graded now, 4 unchanged)" in again.stdout
    assert grades_of(work)["carl"]["autograded"] == "48"


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"a": 1', b"\xff\xfe", b"[" * 100_000],
                         ids=["broken", "a-list", "cut-off", "not-utf8", "nested-too-deep"])
def test_a_damaged_state_file_means_grading_again_not_a_crash(tmp_path, content):
    state_file = tmp_path / "graded.json"
    state_file.write_bytes(content)
    state, problem = read_state(state_file)
    assert state == {} and problem.kind == "state-reset" and "graded again" in problem.message


def test_a_state_file_keeps_only_well_formed_entries(tmp_path):
    state_file = tmp_path / "graded.json"
    state_file.write_text('{"anna": "abc", "bob": 3, "carl": null}')
    assert read_state(state_file) == ({"anna": "abc"}, None)
    assert read_state(tmp_path / "missing.json") == ({}, None)


def test_a_notebook_of_thousands_of_malformed_outputs_is_read_in_seconds():
    # nbformat's validation of this takes minutes (quadratic in the number of bad outputs).
    outputs = ",".join(["{}"] * 100_000)
    content = ('{"cells": [{"cell_type": "code", "metadata": {"nbgrader": {"grade_id": "net_model"}}, "outputs": ['
               + outputs + '], "source": ["net = ", "None"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    started = time.monotonic()
    notebook = read_cells(io.StringIO(content))
    assert time.monotonic() - started < 10
    [cell] = notebook.cells
    assert (cell.source, cell.metadata, cell.outputs) == ("net = None", {"nbgrader": {"grade_id": "net_model"}}, [])
    assert notebook.metadata == {}
