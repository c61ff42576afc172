"""An empty gradebook made without `alembic heads` is the one nbgrader makes, and nbgrader opens it as is."""
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from nbgrader.api import Gradebook

from coursekit.engine.fast_gradebook import alembic_head, create_gradebook


def schema(path: Path) -> tuple[list, list]:
    with sqlite3.connect(path) as database:
        tables = sorted(database.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall(),
                        key=lambda row: (row[0], row[1]))
        stamp = database.execute("SELECT version_num FROM alembic_version").fetchall()
    return tables, stamp


def test_head_is_what_alembic_heads_prints(tmp_path):
    # nbgrader's own way, with its subprocess: the reference.
    reference = tmp_path / "nbgrader.db"
    Gradebook(f"sqlite:///{reference}").close()
    assert alembic_head() == schema(reference)[1][0][0]


def test_same_gradebook_as_nbgrader_and_nbgrader_opens_it_without_alembic(tmp_path):
    reference = tmp_path / "nbgrader.db"
    Gradebook(f"sqlite:///{reference}").close()
    fast = tmp_path / "fast.db"
    assert create_gradebook(db_url=f"sqlite:///{fast}") is True
    assert create_gradebook(db_url=f"sqlite:///{fast}") is False  # exists: left alone

    # nbgrader opens it without running alembic: with no alembic on PATH it would fail.
    opener = ("import sys\nfrom nbgrader.api import Gradebook\n"
              "with Gradebook(sys.argv[1], course_id='ml-ex2') as gradebook:\n"
              "    gradebook.add_assignment('ex2')\n")
    for database in (reference, fast):
        subprocess.run([sys.executable, "-c", opener, f"sqlite:///{database}"], check=True, timeout=120,
                       env={**os.environ, "PATH": "/nonexistent"})
    assert schema(fast) == schema(reference)
    with Gradebook(f"sqlite:///{fast}", course_id="ml-ex2") as gradebook:
        assert [assignment.name for assignment in gradebook.assignments] == ["ex2"]
