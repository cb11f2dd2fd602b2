"""`llero backup`, `llero backup verify` and `llero restore`: encrypted backups from the shell.

The commands never prompt. The backup key comes from --key-file, LLERO_BACKUP_KEY or
data/keys/backup.key, in that order. Progress goes to standard error, results to standard
output.
"""

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import click

from llero.backup import service
from llero.cli.database import CLI_ORIGIN, cli_security_alerts, cli_settings
from llero.storage.base import utc_now

KEY_FILE_HELP = (
    "Read the backup key from this file (base64 of 32 bytes, mode 0600). "
    "[default: LLERO_BACKUP_KEY, else data/keys/backup.key]"
)


@contextmanager
def _progress(label: str, length: int | None) -> Iterator[Callable[[int], None]]:
    with click.progressbar(length=length or 0, label=label, file=sys.stderr) as bar:
        yield cast(Callable[[int], None], bar.update)


def _database_size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


@click.group(invoke_without_command=True)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the backup to this new file. [default: llero-YYYYmmddTHHMMSSZ.backup]",
)
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), help=KEY_FILE_HELP)
@click.pass_context
def backup(context: click.Context, output: Path | None, key_file: Path | None) -> None:
    """Write an encrypted, consistent backup of the database and the key files.

    The server may keep running. The file is encrypted with AES-256-GCM under the backup key
    and its SHA-256 is written beside it as FILE.sha256. Keep the backup key apart from the
    backups: it opens everything in them. `llero backup verify FILE` checks a backup.
    """
    if context.invoked_subcommand is not None:
        return
    settings = cli_settings()
    key = service.backup_key(settings, key_file)
    target = output or Path(f"llero-{utc_now():%Y%m%dT%H%M%SZ}.backup")
    database_file = settings.data_dir / "llero.db"
    with _progress("backing up", _database_size(database_file)) as progress:
        made = service.create_backup(settings, target, key, progress)
    service.record_backup(settings, CLI_ORIGIN, made)
    click.echo(f"wrote {made.path} ({made.size} bytes)")
    click.echo(f"sha256 {made.sha256}")


@backup.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), help=KEY_FILE_HELP)
def verify(file: Path, key_file: Path | None) -> None:
    """Check every byte of the backup FILE without restoring it.

    Exits 0 when it decrypts and matches its manifest (and FILE.sha256, when present), and 2
    naming the problem otherwise.
    """
    settings = cli_settings()
    key = service.backup_key(settings, key_file)
    with _progress("verifying", _database_size(file)) as progress:
        checked = service.verify_backup(file, key, progress)
    click.echo(f"backup ok: {file} made {checked.info.get('created_at')} ({checked.size} bytes)")
    click.echo(f"sha256 {checked.sha256}")
    if checked.checksum_file_matched is None:
        click.echo(f"no {file.name}.sha256 beside it; compare the sha256 with the one recorded")


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), help=KEY_FILE_HELP)
def restore(file: Path, key_file: Path | None) -> None:
    """Restore the backup FILE into an empty data directory, then verify the audit chain.

    LLERO_DATA_DIR must not exist or be empty, and with PostgreSQL the database in
    LLERO_DATABASE_URL must have no tables. The backup is verified whole before anything is
    written. Exits 1 when the restored audit chain is broken.
    """
    settings = cli_settings()
    key = service.backup_key(settings, key_file)
    with _progress("restoring", _database_size(file)) as progress:
        restored = service.restore_backup(settings, file, key, CLI_ORIGIN, progress)
    click.echo(f"restored {file} (made {restored.info.get('created_at')}) into {settings.data_dir}")
    broken = restored.chain.broken
    if broken is not None:
        alerts = cli_security_alerts(settings)
        alerts.audit_chain_broken(broken.sequence, str(broken.reason))
        alerts.close()
        click.echo(f"audit chain broken at record {broken.sequence}: {broken.message}")
        raise SystemExit(1)
    click.echo(f"audit chain ok: {restored.chain.checked} records checked")
