"""An empty nbgrader gradebook made without nbgrader's `alembic heads` subprocess.

When `nbgrader.api.Gradebook` opens a database without tables it creates them
and stamps the database with the newest migration, which it learns by running
`alembic heads` as a subprocess: a fresh Python that imports alembic and every
migration script, ~2 s of each run that builds a course copy (more on a loaded
machine). Upstream: `get_alembic_version` in nbgrader/api.py, added with
jupyter/nbgrader#764 ("Migrate database with alembic"); no issue about its cost found.

`create_gradebook` makes the same tables from nbgrader's own models and the same
`alembic_version` stamp, reading the head revision from nbgrader's migration
scripts as text (the revision that no other script names as its down_revision).
nbgrader then opens the database as an existing one. Where the head cannot be
determined unambiguously, nothing is created and nbgrader does it its own way.
"""
from __future__ import annotations

import ast
from pathlib import Path

MIGRATIONS = "alembic/versions"


def alembic_head() -> str | None:
    """The revision `alembic heads` names for nbgrader's migrations; None unless there is exactly one."""
    import nbgrader

    revisions: dict[str, object] = {}
    for script in sorted((Path(nbgrader.__file__).parent / MIGRATIONS).glob("*.py")):
        assignments = {}
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                try:
                    assignments[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    continue
        if isinstance(assignments.get("revision"), str):
            revisions[assignments["revision"]] = assignments.get("down_revision")
    named_as_down = set()
    for down in revisions.values():
        named_as_down.update(down if isinstance(down, (tuple, list)) else [down])
    heads = [revision for revision in revisions if revision not in named_as_down]
    return heads[0] if len(heads) == 1 else None


def create_gradebook(*, db_url: str) -> bool:
    """Make an empty gradebook at `db_url` as nbgrader would; False when it exists already or is left to nbgrader."""
    from nbgrader.api import Base
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(db_url, future=True)
    try:
        if inspect(engine).get_table_names():
            return False
        head = alembic_head()
        if head is None:
            return False
        with engine.begin() as connection:
            Base.metadata.create_all(bind=connection)
            # The same statements nbgrader.api.Gradebook runs after `alembic heads`.
            connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL);"))
            connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head);"), {"head": head})
        return True
    finally:
        engine.dispose()
