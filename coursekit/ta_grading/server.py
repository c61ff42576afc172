"""`coursekit ta-grade`: a local Jupyter server with the grading page, on 127.0.0.1 behind a token."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from coursekit.errors import CourseKitError
from coursekit.ta_grading.handlers import URL_PREFIX

EXTENSION = "coursekit.ta_grading"


def server_arguments(*, course_root: Path, port: int, token: str) -> list[str]:
    return [
        f"--ServerApp.root_dir={course_root}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False",
        f"--IdentityProvider.token={token}",
        # Enabled here as well as by the installed config file, so a plain
        # `pip install` without data files still serves the page.
        f"--ServerApp.jpserver_extensions={EXTENSION}=True",
        # The server serves only 127.0.0.1 behind a token; root is how graders run on course machines.
        *(["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []),
    ]


def page_url(*, port: int, base_url: str, token: str) -> str:
    return f"http://127.0.0.1:{port}{base_url.rstrip('/')}{URL_PREFIX}?token={token}"


def serve(*, course_root: Path, port: int, on_ready=print) -> None:
    """Run the server in this process until Ctrl-C; `on_ready` gets the page's URL."""
    if not (course_root / "nbgrader_config.py").exists():
        raise CourseKitError(f"{course_root} has no nbgrader_config.py; pass --course with the course folder.")
    if not (course_root / "gradebook.db").exists() and "db_url" not in (course_root / "nbgrader_config.py").read_text():
        raise CourseKitError(f"{course_root} has no gradebook yet; grade the submissions first (coursekit grade).")
    from jupyter_server.serverapp import ServerApp

    from coursekit.engine.grading import ensure_tools_on_path

    ensure_tools_on_path()  # nbgrader's gradebook runs `alembic` from PATH
    # nbgrader's formgrader in the same server reads nbgrader_config.py from the working folder.
    os.chdir(course_root)
    token = secrets.token_urlsafe(24)
    app = ServerApp.instance()
    try:
        app.initialize(argv=server_arguments(course_root=course_root, port=port, token=token))
    except (OSError, SystemExit):  # jupyter-server exits when the port is taken
        raise CourseKitError(f"cannot start the server on 127.0.0.1:{port}; choose another --port (0: any free one).") from None
    # With --port 0, app.port is the port the system chose. The server binds it in
    # a callback that initialize() queued, so announcing the URL from the next
    # callback means the page answers by the time anyone opens it.
    app.io_loop.add_callback(lambda: on_ready(
        f"Grade free-text questions at:\n    {page_url(port=app.port, base_url=app.base_url, token=token)}\n"
        "Stop with Ctrl-C."))
    app.start()
