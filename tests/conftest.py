import shutil
from pathlib import Path

import pytest

from coursekit.engine import grading
from coursekit.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from coursekit.notebooks import read_notebook

REPOSITORY = Path(__file__).resolve().parent.parent
MASTER_PATH = REPOSITORY / "source" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb"
RELEASE_PATH = REPOSITORY / "release" / ASSIGNMENT_ID / f"{NOTEBOOK_NAME}.ipynb"


@pytest.fixture(scope="session")
def prototype_course(tmp_path_factory) -> Path:
    """A throwaway course whose release and gradebook nbgrader generated from source/."""
    root = tmp_path_factory.mktemp("prototype")
    grading.prepare_course(template_root=REPOSITORY, course_root=root)
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
