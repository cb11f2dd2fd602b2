"""Consistent database snapshots and their restore: SQLite's online backup API, or pg_dump.

Both read one consistent view of the database while the server keeps running: SQLite's backup
copies the pages of one read transaction, and pg_dump works inside one repeatable-read
transaction. The PostgreSQL tools run by argument vector, never through a shell, and get the
password through PGPASSWORD, never on their command line, where any local user could read it
from the process list.
"""

import os
import shutil
import sqlite3
import subprocess  # nosec B404
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sqlalchemy.engine import URL, make_url

from llero.errors import LleroError

SQLITE_SECTION = "database/llero.sqlite3"
POSTGRES_SECTION = "database/llero.pgdump"
READ_BLOCK = 1024 * 1024


class SnapshotFailed(LleroError):
    """The database could not be dumped or restored."""

    code = "snapshot_failed"


def dialect_of(database_url: str) -> str:
    """Return "sqlite" or "postgresql"; raise SnapshotFailed for another database."""
    backend = make_url(database_url).get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise SnapshotFailed(f"backups support SQLite and PostgreSQL, not {backend}")
    return backend


def sqlite_path(database_url: str) -> Path:
    database = make_url(database_url).database
    if not database or database == ":memory:":
        raise SnapshotFailed("an in-memory SQLite database cannot be backed up")
    return Path(database)


@contextmanager
def sqlite_snapshot(database_url: str, scratch_dir: Path) -> Iterator[Path]:
    """Yield a consistent copy of the SQLite database in ``scratch_dir``; delete it afterwards."""
    source_path = sqlite_path(database_url)
    if not source_path.is_file():
        raise SnapshotFailed(f"the SQLite database {source_path} does not exist")
    copy = scratch_dir / "snapshot.sqlite3"
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    try:
        with target:
            # All pages in one step, so the copy is one consistent read transaction.
            source.backup(target)
    finally:
        target.close()
        source.close()
    try:
        yield copy
    finally:
        copy.unlink(missing_ok=True)


@contextmanager
def postgres_dump(database_url: str) -> Iterator[IO[bytes]]:
    """Yield the stdout of pg_dump in its custom format; raise SnapshotFailed if it fails."""
    url = make_url(database_url)
    command = [_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges"]
    # A fixed program with arguments taken from the parsed database URL.
    with subprocess.Popen(  # noqa: S603  # nosec B603
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_postgres_environment(url)
    ) as process:
        if process.stdout is None:
            raise SnapshotFailed("pg_dump started without an output pipe")
        try:
            yield process.stdout
        except BaseException:
            process.kill()
            raise
        _, errors = process.communicate()
        if process.returncode != 0:
            raise SnapshotFailed(f"pg_dump failed: {_first_line(errors)}")


@contextmanager
def postgres_restore(database_url: str) -> Iterator[IO[bytes]]:
    """Yield the stdin of pg_restore, which restores what is written in one transaction.

    Raises SnapshotFailed when pg_restore fails. When the block raises, pg_restore is killed
    before it commits, so the database is left as it was.
    """
    url = make_url(database_url)
    command = [
        _tool("pg_restore"),
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
        f"--dbname={url.database}",
    ]
    # A fixed program with arguments taken from the parsed database URL.
    with subprocess.Popen(  # noqa: S603  # nosec B603
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_postgres_environment(url),
    ) as process:
        if process.stdin is None:
            raise SnapshotFailed("pg_restore started without an input pipe")
        try:
            yield process.stdin
            process.stdin.close()
        except BaseException:
            process.kill()
            raise
        errors = process.stderr.read() if process.stderr else b""
        process.wait()
    if process.returncode != 0:
        raise SnapshotFailed(f"pg_restore failed: {_first_line(errors)}")


def _postgres_environment(url: URL) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    settings = {
        "PGHOST": url.host,
        "PGPORT": None if url.port is None else str(url.port),
        "PGUSER": url.username,
        "PGPASSWORD": url.password if isinstance(url.password, str) else None,
        "PGDATABASE": url.database,
    }
    environment.update({name: value for name, value in settings.items() if value})
    return environment


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SnapshotFailed(f"{name} is not installed; install the PostgreSQL client tools")
    return path


def _first_line(errors: bytes) -> str:
    text = errors.decode("utf-8", "replace").strip()
    return text.splitlines()[0][:300] if text else "no error output"
