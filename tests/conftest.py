import os
import shutil
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import nbformat
import pytest

from coursekit import demo
from coursekit.engine import grading
from coursekit.exercise.given import course_secret
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.notebooks import fill_answers, master_answers, read_notebook

REPOSITORY = Path(__file__).resolve().parent.parent
MASTER_PATH = REPOSITORY / "source" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb"
RELEASE_PATH = REPOSITORY / "release" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb"


@pytest.fixture(scope="session", autouse=True)
def course_cache(tmp_path_factory):
    """The workers' course is built once per course version for the whole session (coursekit.engine.worker),
    in a folder of the session's own, never in the user's cache."""
    os.environ["COURSEKIT_CACHE"] = str(tmp_path_factory.mktemp("coursekit-cache"))


@pytest.fixture(scope="session")
def prototype_course(tmp_path_factory) -> Path:
    """A throwaway course whose release and gradebook nbgrader generated from source/."""
    root = tmp_path_factory.mktemp("prototype")
    grading.prepare_course(template_root=REPOSITORY, course_root=root)
    course_secret(root)  # made now, so every copy draws the same given values for the same submission
    return root


@pytest.fixture
def course(prototype_course, tmp_path) -> Path:
    root = tmp_path / "course"
    shutil.copytree(prototype_course, root)
    return root


@pytest.fixture(scope="session")
def master():
    return read_notebook(MASTER_PATH)


@pytest.fixture(scope="session")
def release():
    return read_notebook(RELEASE_PATH)


def gradebook_with_submission(folder: Path) -> str:
    """A gradebook of the master notebook as `nbgrader generate_assignment` builds it (checksums, SaveCells),
    with anna's submission: its URL."""
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import ComputeChecksums, SaveCells

    from coursekit.engine.fast_gradebook import create_gradebook

    url = f"sqlite:///{folder / 'gradebook.db'}"
    create_gradebook(db_url=url)
    with Gradebook(url) as gradebook:
        gradebook.add_assignment(ASSIGNMENT_ID)
    source, _ = ComputeChecksums().preprocess(read_notebook(MASTER_PATH), {})
    SaveCells().preprocess(source, {"nbgrader": {"db_url": url, "assignment": ASSIGNMENT_ID, "notebook": NOTEBOOK_NAME}})
    with Gradebook(url) as gradebook:
        gradebook.add_student("anna")
        gradebook.add_submission(ASSIGNMENT_ID, "anna")
    return url


@pytest.fixture(scope="session")
def postgres_database():
    """A factory of fresh databases on a real PostgreSQL server started for this session (tests/postgres.py):
    `postgres_database("hint")` returns a new database's SQLAlchemy URL."""
    from postgres import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer()
        server.start()
    except PostgresUnavailable as error:
        pytest.fail(f"cannot start a PostgreSQL server for the tests: {error}", pytrace=False)
    try:
        yield server.new_database
    finally:
        server.stop()


# ---- graded classes shared by the session: each is graded once with `coursekit grade`'s code path;
# tests that change one work on a copy (copy_graded).

ROSTER = ("username,first_name,last_name,email\nanna,Anna,A,a@x.org\nbob,Bob,B,b@x.org\ncarl,Carl,C,c@x.org\n"
          "dora,Dora,D,d@x.org\n")


@dataclass(frozen=True)
class GradedDownload:
    work: Path
    course: Path
    download: Path
    download_bytes: bytes       # as it was before grading: grading never changes it
    roster: Path
    results: Path
    summary: object             # coursekit.engine.workflow.RunSummary of the grading


def write_download(path, entries):
    with zipfile.ZipFile(path, "w") as download:
        for name, content, moment in entries:
            download.writestr(zipfile.ZipInfo(name, moment), content)
    return path


def class_download(path, samples, carl_sample="partly_right"):
    """A small class from the demo samples: a pair with full marks, a resubmission, a file of no team."""
    return write_download(path, [
        ("Gruppe 1/Anna_Bob_ml_ex2.ipynb", samples["all_correct"], (2024, 11, 8, 10, 0, 0)),
        ("Gruppe 2/carl_ml_ex2.ipynb", samples["blank"], (2024, 11, 6, 10, 0, 0)),
        ("Gruppe 2/carl_ml_ex2 (1).ipynb", samples[carl_sample], (2024, 11, 8, 11, 0, 0)),
        ("Gruppe 3/readme.ipynb", samples["all_correct"], (2024, 11, 8, 9, 0, 0)),
    ])


def own_words_sample(start_from: str) -> bytes:
    """A sample whose free-text answers are the student's own words, not the master's reference and rubric."""
    master, release = read_notebook(MASTER_PATH), read_notebook(RELEASE_PATH)
    answers = master_answers(master)
    manual = [cell.metadata.nbgrader.grade_id for cell in master.cells
              if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution")]
    answers.update({grade_id: f"In my own words, {grade_id} is about shapes." for grade_id in manual})
    if start_from == "crash":  # the kernel dies in Task 2, after the answers before it were judged
        answers["param_count"] = "import os\nos._exit(3)"
    if start_from == "half":
        sample = demo.sample_notebooks(REPOSITORY)["half_done"]
        notebook = nbformat.reads(sample.decode(), as_version=4)
        notebook = fill_answers(notebook, {manual[0]: f"In my own words, {manual[0]} is about shapes."})
        return nbformat.writes(notebook).encode()
    return nbformat.writes(fill_answers(release, answers)).encode()


def own_words_download(path: Path, carl: bytes) -> Path:
    """Four teams answering in their own words: a pair and a single with everything, one half done, one
    whose kernel dies in Task 2."""
    moment = (2024, 11, 8, 10, 0, 0)
    return write_download(path, [("Gruppe 1/anna_bob_ml_ex2.ipynb", own_words_sample("solution"), moment),
                                 ("Gruppe 2/carl_ml_ex2.ipynb", carl, moment),
                                 ("Gruppe 3/dora_ml_ex2.ipynb", own_words_sample("solution"), moment),
                                 ("Gruppe 4/emil_ml_ex2.ipynb", own_words_sample("crash"), moment)])


def fresh_course(folder: Path, name: str) -> Path:
    course = folder / name
    demo.copy_course(course_root=REPOSITORY, destination=course)
    return course


def graded_download(work: Path, download: Path, roster: str) -> GradedDownload:
    from coursekit.engine.workflow import grade_download

    course = fresh_course(work, "course")
    (work / "roster.csv").write_text(roster)
    before = download.read_bytes()
    summary = grade_download(download=download, course_root=course, output_folder=work / "results", workers=2,
                             roster=work / "roster.csv")
    return GradedDownload(work=work, course=course, download=download, download_bytes=before,
                          roster=work / "roster.csv", results=work / "results", summary=summary)


def copy_graded(graded: GradedDownload, work: Path) -> GradedDownload:
    """The graded course and its results, copied to `work` to be changed there (file times kept)."""
    shutil.copytree(graded.course, work / "course")
    shutil.copytree(graded.results, work / "results")
    shutil.copy2(graded.roster, work / "roster.csv")
    return replace(graded, work=work, course=work / "course", results=work / "results", roster=work / "roster.csv")


@pytest.fixture(scope="session")
def sample_class(tmp_path_factory) -> GradedDownload:
    """class_download graded with ROSTER (dora submitted nothing)."""
    work = tmp_path_factory.mktemp("sample-class")
    download = class_download(work / "download.zip", demo.sample_notebooks(REPOSITORY))
    return graded_download(work, download, ROSTER)


OWN_WORDS_ROSTER = ROSTER + "emil,Emil,E,e@x.org\nfrank,Frank,F,f@x.org\n"


@pytest.fixture(scope="session")
def own_words_class(tmp_path_factory) -> GradedDownload:
    """own_words_download graded with OWN_WORDS_ROSTER (frank submitted nothing); no TA graded anything yet."""
    work = tmp_path_factory.mktemp("own-words-class")
    download = own_words_download(work / "download.zip", carl=own_words_sample("half"))
    return graded_download(work, download, OWN_WORDS_ROSTER)
