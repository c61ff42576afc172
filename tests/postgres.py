"""A real, throwaway PostgreSQL server for tests: Debian's binaries, a cluster in a temporary folder.

PostgreSQL refuses to run as root, so as root the server runs as the
`postgres` system user that Debian's package creates. The cluster listens on
127.0.0.1 on a free port with trust authentication (anyone on this machine
may connect as `postgres`, as fits a server that lives for one test session),
keeps its unix sockets in its own folder and skips fsync, so it starts in
about a second and writes fast. Clients connect over TCP, never as root.
"""
from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

INSTALL_HINT = "install PostgreSQL's server (`apt-get install postgresql`; .ci/run does it)"
SERVER_USER = "postgres"
DRIVER = "postgresql+psycopg"   # the driver pyproject.toml installs (psycopg 3)


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server binaries are missing or the server would not start."""


def server_binaries() -> Path:
    """The bin/ folder of the newest PostgreSQL server Debian installed (or initdb on PATH)."""
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name)
                     if Path(path).parent.name.isdigit() else 0)
    for folder in reversed(folders):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    raise PostgresUnavailable(f"no initdb/pg_ctl in /usr/lib/postgresql/*/bin or on PATH; {INSTALL_HINT}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One cluster: `start()`, then `new_database()` as often as needed, then `stop()`."""

    def __init__(self) -> None:
        self.binaries = server_binaries()
        self.as_server_user: list[str] = []
        self.owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self.owner = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresUnavailable(f"there is no `{SERVER_USER}` user to run the server as; "
                                          f"{INSTALL_HINT}") from None
            self.as_server_user = ["runuser", "-u", SERVER_USER, "--"]
        # Not under pytest's tmp_path: its folders are private to root, and the server user must reach this one.
        self.folder = Path(tempfile.mkdtemp(prefix="coursekit-postgres-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = 0
        self.names = itertools.count(1)

    def server_command(self, tool: str, *arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_server_user, str(self.binaries / tool), *arguments], cwd=self.folder,
                              capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        if self.owner is not None:
            os.chown(self.folder, self.owner.pw_uid, self.owner.pw_gid)
        initialized = self.server_command("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                                          "--encoding=UTF8", "--no-locale", "--no-sync")
        if initialized.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {initialized.stderr.strip()[-1500:]}")
        # A port found free may be taken before the server binds it: try a few.
        for _ in range(3):
            self.port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.folder} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            started = self.server_command("pg_ctl", "start", "--wait", "--timeout=60", "-D", str(self.data),
                                          "-l", str(self.log), "-o", options)
            if started.returncode == 0:
                return
        raise PostgresUnavailable(f"PostgreSQL did not start: {started.stderr.strip()[-500:]}\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def url(self, database: str) -> str:
        return f"{DRIVER}://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, hint: str = "test") -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        name = f"{''.join(c if c.isalnum() else '_' for c in hint.lower())[:40]}_{next(self.names)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def execute(self, statement: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database,
                             autocommit=True, connect_timeout=10) as connection:
            connection.execute(statement)

    def stop(self) -> None:
        if self.port and (self.data / "postmaster.pid").exists():
            self.server_command("pg_ctl", "stop", "--wait", "--timeout=60", "-m", "immediate", "-D", str(self.data))
        shutil.rmtree(self.folder, ignore_errors=True)
