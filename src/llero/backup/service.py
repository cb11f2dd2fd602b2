"""Create, verify and restore encrypted backups of one Llero data directory.

A backup contains a consistent snapshot of the database and every key file under data/keys
except the backup key itself. It is encrypted as it is written (see ``llero.backup.stream``), so no
plaintext copy is left beside it. The SQLite snapshot is made in a scratch directory inside the
data directory, which is as private as the database it copies, and deleted afterwards.
"""

import base64
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from alembic.script import ScriptDirectory
from sqlalchemy import inspect

import llero
from llero.audit.chain import format_time
from llero.audit.context import Origin, Target
from llero.audit.events import AuditEvent
from llero.audit.keys import attach_keys, load_audit_keys
from llero.audit.service import VerifyResult, record_as, verify_chain
from llero.backup.archive import ArchiveWriter, read_archive, read_file_blocks
from llero.backup.snapshot import (
    POSTGRES_SECTION,
    SQLITE_SECTION,
    SnapshotFailed,
    dialect_of,
    postgres_dump,
    postgres_restore,
    sqlite_path,
    sqlite_snapshot,
)
from llero.backup.stream import BackupInvalid, EncryptingWriter, Writable, decrypt_chunks
from llero.config.keyfiles import (
    BACKUP_KEY,
    make_private_dir,
    read_symmetric_key,
    write_private_file,
)
from llero.config.settings import Settings
from llero.crypto import Secret
from llero.errors import Refused
from llero.storage import migrate
from llero.storage.base import utc_now
from llero.storage.db import Database

KEYS_PREFIX = "keys/"
FORMAT_NAME = "llero-backup"
SIDECAR_SUFFIX = ".sha256"

Progress = Callable[[int], None]


def _no_progress(_: int) -> None:
    return None


@dataclass(frozen=True)
class BackupMade:
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class BackupChecked:
    info: dict[str, Any]
    size: int
    sha256: str
    # True when a .sha256 file beside the backup matched, None when there was none.
    checksum_file_matched: bool | None


@dataclass(frozen=True)
class BackupRestored:
    info: dict[str, Any]
    chain: VerifyResult


def backup_key(settings: Settings, key_file: Path | None = None) -> Secret[bytes]:
    """Return the backup key from ``key_file``, LLERO_BACKUP_KEY, or data/keys/backup.key."""
    if key_file is not None:
        return Secret(read_symmetric_key(key_file).material)
    if settings.backup_key is not None:
        return Secret(base64.b64decode(settings.backup_key.get_secret_value().strip()))
    return Secret(read_symmetric_key(settings.keys_dir / BACKUP_KEY).material)


# --- Backup ------------------------------------------------------------------------------------


class _HashingWriter:
    """Write to a file and keep the SHA-256 and size of everything written."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)


def create_backup(
    settings: Settings, output: Path, key: Secret[bytes], progress: Progress = _no_progress
) -> BackupMade:
    """Write an encrypted backup to ``output``, a new file, and its checksum beside it.

    ``progress`` is called with the number of database bytes read since its last call. Raises
    Refused when ``output`` exists, SnapshotFailed when the database cannot be read; a failed
    backup leaves no file behind.
    """
    url = settings.resolved_database_url
    dialect = dialect_of(url)
    info = _backup_info(settings, dialect)
    try:
        handle = _create_private(output)
    except FileExistsError:
        raise Refused(f"{output} already exists; choose a new file name") from None

    try:
        with handle:
            hashing = _HashingWriter(handle)
            writer = EncryptingWriter(hashing, key)
            archive = ArchiveWriter(writer, info)
            for name, path in _key_files(settings.keys_dir):
                archive.add(KEYS_PREFIX + name, [path.read_bytes()])
            _add_database(archive, settings, dialect, progress)
            archive.finish()
            writer.close()
            handle.flush()
            os.fsync(handle.fileno())
        sha256 = hashing.digest.hexdigest()
        _write_checksum(output, sha256)
    except BaseException:
        output.unlink(missing_ok=True)
        raise
    return BackupMade(output, hashing.size, sha256)


def record_backup(settings: Settings, origin: Origin, made: BackupMade) -> None:
    """Record backup:created in the backed-up database."""
    with _audited(settings) as session:
        record_as(
            session,
            origin,
            AuditEvent.BACKUP_CREATED,
            Target.of("backup", made.path.name[:128]),
            {"bytes": made.size, "sha256": made.sha256},
        )


def _backup_info(settings: Settings, dialect: str) -> dict[str, Any]:
    database = Database(settings.resolved_database_url)
    try:
        revision = migrate.current_revision(database.engine)
    finally:
        database.dispose()
    if revision != migrate.head_revision():
        raise Refused("the database is not at the latest migration; run `llero migrate` first")
    return {
        "format": FORMAT_NAME,
        "created_at": format_time(utc_now()),
        "llero_version": llero.__version__,
        "dialect": dialect,
        "revision": revision,
    }


def _add_database(
    archive: ArchiveWriter, settings: Settings, dialect: str, progress: Progress
) -> None:
    url = settings.resolved_database_url
    if dialect == "sqlite":
        scratch = Path(tempfile.mkdtemp(prefix=".backup-", dir=settings.data_dir))
        try:
            with sqlite_snapshot(url, scratch) as copy, copy.open("rb") as snapshot:
                archive.add(SQLITE_SECTION, _reported(read_file_blocks(snapshot), progress))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    with postgres_dump(url) as dump:
        archive.add(POSTGRES_SECTION, _reported(read_file_blocks(dump), progress))


def _reported(blocks: Iterator[bytes], progress: Progress) -> Iterator[bytes]:
    for block in blocks:
        progress(len(block))
        yield block


def _key_files(keys_dir: Path) -> Iterator[tuple[str, Path]]:
    """Yield every key file under ``keys_dir`` but the backup key and hidden lock files."""
    for path in sorted(keys_dir.rglob("*")):
        relative = path.relative_to(keys_dir).as_posix()
        if not path.is_file() or path.is_symlink() or relative == BACKUP_KEY:
            continue
        if any(part.startswith(".") for part in path.relative_to(keys_dir).parts):
            continue
        yield relative, path


def _create_private(path: Path) -> BinaryIO:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags, 0o600), "wb")


def _write_checksum(output: Path, sha256: str) -> None:
    sidecar = output.with_name(output.name + SIDECAR_SUFFIX)
    sidecar.unlink(missing_ok=True)
    write_private_file(sidecar, f"{sha256}  {output.name}\n".encode())


# --- Verify ------------------------------------------------------------------------------------


class _HashingReader:
    def __init__(self, handle: BinaryIO, progress: Progress) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0
        self.progress = progress

    def read(self, count: int) -> bytes:
        data = self.handle.read(count)
        self.digest.update(data)
        self.size += len(data)
        self.progress(len(data))
        return data


def verify_backup(
    path: Path,
    key: Secret[bytes],
    progress: Progress = _no_progress,
    sink: Callable[[str], Writable | None] | None = None,
) -> BackupChecked:
    """Decrypt and check every byte of a backup; raise BackupInvalid naming the first problem.

    ``sink`` receives the sections as they are authenticated; without it they are discarded.
    """
    try:
        handle = path.open("rb")
    except OSError as error:
        raise BackupInvalid(f"cannot read {path}: {error.strerror}") from None
    with handle:
        reader = _HashingReader(handle, progress)
        info = read_archive(decrypt_chunks(reader, key), sink or _discard)
    if info.get("format") != FORMAT_NAME:
        raise BackupInvalid("backup.json does not describe a Llero backup")
    sha256 = reader.digest.hexdigest()
    return BackupChecked(info, reader.size, sha256, _checksum_matches(path, sha256))


def _discard(_: str) -> None:
    return None


def _checksum_matches(path: Path, sha256: str) -> bool | None:
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not sidecar.is_file():
        return None
    recorded = sidecar.read_text(encoding="utf-8", errors="replace").split()
    if not recorded or recorded[0].lower() != sha256:
        raise BackupInvalid(
            f"the SHA-256 of {path.name} differs from {sidecar.name}: the file was changed"
        )
    return True


# --- Restore -----------------------------------------------------------------------------------


def restore_backup(
    settings: Settings,
    path: Path,
    key: Secret[bytes],
    origin: Origin,
    progress: Progress = _no_progress,
) -> BackupRestored:
    """Restore a backup into the empty data directory (and database) of ``settings``.

    The whole file is verified first, so a changed or truncated backup writes nothing. Then the
    key files and the database are restored, migrated to the latest revision, backup:restored
    is recorded and the audit chain is verified. Raises Refused for a target that is not empty,
    BackupInvalid for a bad backup.
    """
    url = settings.resolved_database_url
    dialect = dialect_of(url)
    _check_target_empty(settings, dialect)
    checked = verify_backup(path, key, progress)
    _check_compatible(checked.info, dialect)

    make_private_dir(settings.data_dir)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=settings.data_dir))
    try:
        _restore_sections(settings, path, key, dialect, staging)
        _move_into_place(settings, dialect, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    if settings.backup_key is None and not (settings.keys_dir / BACKUP_KEY).exists():
        write_private_file(settings.keys_dir / BACKUP_KEY, base64.b64encode(key.reveal()))

    database = Database(url)
    try:
        migrate.upgrade(database.engine)
    finally:
        database.dispose()
    with _audited(settings) as session:
        record_as(
            session,
            origin,
            AuditEvent.BACKUP_RESTORED,
            Target.of("backup", path.name[:128]),
            {"created_at": str(checked.info.get("created_at")), "sha256": checked.sha256},
        )
    with _audited(settings) as session:
        chain = verify_chain(session)
    return BackupRestored(checked.info, chain)


def _check_target_empty(settings: Settings, dialect: str) -> None:
    data_dir = settings.data_dir
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise Refused(
            f"refusing to restore into {data_dir}: it is not empty; restore into a new or empty "
            "data directory (LLERO_DATA_DIR)"
        )
    if dialect == "sqlite" and sqlite_path(settings.resolved_database_url).exists():
        raise Refused("refusing to restore: the SQLite database file exists already")
    if dialect == "postgresql":
        database = Database(settings.resolved_database_url)
        try:
            tables = inspect(database.engine).get_table_names()
        finally:
            database.dispose()
        if tables:
            raise Refused(
                "refusing to restore: the PostgreSQL database in LLERO_DATABASE_URL has tables; "
                "restore into a new, empty database"
            )


def _check_compatible(info: dict[str, Any], dialect: str) -> None:
    if info.get("dialect") != dialect:
        raise Refused(
            f"the backup contains a {info.get('dialect')} database but LLERO_DATABASE_URL names "
            f"{dialect}; restore into the same kind of database"
        )
    scripts = ScriptDirectory(str(migrate.MIGRATIONS_DIR))
    revision = info.get("revision")
    try:
        known = isinstance(revision, str) and scripts.get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic raises several types for an unknown revision
        known = False
    if not known:
        raise Refused(
            f"the backup is at migration {revision!r}, which this Llero does not know; restore "
            "it with the Llero version that made it or a newer one"
        )


def _restore_sections(
    settings: Settings, path: Path, key: Secret[bytes], dialect: str, staging: Path
) -> None:
    opened: list[BinaryIO] = []

    def sink(name: str, database_target: Writable | None) -> Writable | None:
        if name in {SQLITE_SECTION, POSTGRES_SECTION}:
            if name != (SQLITE_SECTION if dialect == "sqlite" else POSTGRES_SECTION):
                raise BackupInvalid(f"the backup contains {name}, which does not match its dialect")
            if database_target is not None:
                return database_target
        if not name.startswith(KEYS_PREFIX) and name != SQLITE_SECTION:
            return None
        target = staging / name
        make_private_dir(target.parent)
        handle = _create_private(target)
        opened.append(handle)
        return handle

    try:
        if dialect == "postgresql":
            with postgres_restore(settings.resolved_database_url) as restore_input:
                verify_backup(path, key, sink=lambda name: sink(name, restore_input))
        else:
            verify_backup(path, key, sink=lambda name: sink(name, None))
    finally:
        for handle in opened:
            handle.close()


def _move_into_place(settings: Settings, dialect: str, staging: Path) -> None:
    keys = staging / "keys"
    if not keys.is_dir():
        raise BackupInvalid("the backup contains no key files")
    keys.rename(settings.keys_dir)
    if dialect == "sqlite":
        target = sqlite_path(settings.resolved_database_url)
        make_private_dir(target.parent)
        (staging / SQLITE_SECTION).rename(target)


@contextmanager
def _audited(settings: Settings) -> Iterator[Any]:
    keys = load_audit_keys(settings.keys_dir)
    database = Database(settings.resolved_database_url)
    try:
        with database.transaction() as session:
            attach_keys(session, keys)
            yield session
    finally:
        database.dispose()


__all__ = [
    "BackupChecked",
    "BackupInvalid",
    "BackupMade",
    "BackupRestored",
    "SnapshotFailed",
    "backup_key",
    "create_backup",
    "record_backup",
    "restore_backup",
    "verify_backup",
]
