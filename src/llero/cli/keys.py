"""`llero keys`: rotate the token signing key, and rotate, list and retire the vault's KEKs."""

import json
import sys
import time
from datetime import datetime
from typing import IO, Any

import click

from llero.cli.database import CLI_ORIGIN, audited_transaction, cli_settings, opened_vault
from llero.incident.service import rotate_signing
from llero.vault import kek_admin
from llero.vault.kek_admin import KekState, KekStatus, RotationStart
from llero.vault.keyring import KEK_ID_PATTERN
from llero.vault.rotation import DEFAULT_BATCH_SIZE

MAX_BATCH_SIZE = 10_000
# Without a terminal, one progress line at most this often, so a log keeps a few lines per
# minute rather than one per batch.
PROGRESS_LINE_SECONDS = 5.0


@click.group()
def keys() -> None:
    """Manage the keys under data/keys."""


@keys.command(name="rotate-signing")
def rotate_signing_command() -> None:
    """Make a new access token signing key the current one.

    Tokens signed by the previous keys keep verifying until they expire. Restart every
    `llero serve` process afterwards: a process that still has the old key ring rejects tokens
    signed with the new key. The rotation is recorded as signing_key:rotated.
    """
    settings = cli_settings()
    with audited_transaction(settings) as session:
        kid, _ = rotate_signing(session, CLI_ORIGIN, settings.keys_dir)
    click.echo(f"new signing key {kid} is current; restart llero serve to use it")


@keys.command(name="status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def status_command(as_json: bool) -> None:
    """Show every vault KEK, which one is current, and how many records each one wraps.

    Records are the envelopes of secret values and keys and of sealed fields (email addresses,
    TOTP seeds, chat messages, ...), counted per encrypted column. Recorded as
    kek:status_viewed.
    """
    settings = cli_settings()
    with opened_vault(settings) as (database, keyring):
        status = kek_admin.read_status(database, keyring, CLI_ORIGIN)
    if as_json:
        click.echo(json.dumps(_status_document(status), indent=2))
        return
    _print_status(status)


@keys.command(name="rotate")
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH_SIZE),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Records re-wrapped per database transaction.",
)
@click.option(
    "--retire",
    is_flag=True,
    help="Afterwards, retire every older KEK that no record needs any more.",
)
def rotate_command(batch_size: int, retire: bool) -> None:
    """Make a new KEK current and re-wrap every record's data key under it.

    Runs online: each batch is one short transaction, and `llero serve` keeps reading and
    writing, switching to the new KEK within a second. Only the wrapped data keys change, so no
    value is decrypted. Progress goes to standard error.

    If an earlier rotation did not finish (records are still wrapped by an older KEK), this
    resumes it under the current KEK instead of adding another. Recorded as kek:added,
    kek:rotation_started and kek:rotation_finished, and kek:retired for each KEK retired.
    """
    settings = cli_settings()
    with opened_vault(settings) as (database, keyring):
        start = kek_admin.start_rotation(database, keyring, CLI_ORIGIN)
        click.echo(_describe_start(start))
        progress = _Progress(start.pending, sys.stderr)
        result = kek_admin.run_rotation(
            database, keyring, CLI_ORIGIN, batch_size=batch_size, on_batch=progress.advance
        )
        progress.close()
        click.echo(
            f"re-wrapped {result.rewrapped} records in {result.batches} batches to KEK "
            f"{result.target_kek_id}"
        )
        if retire:
            retired = kek_admin.retire_unused(database, keyring, settings.keys_dir, CLI_ORIGIN)
            for record in retired:
                click.echo(f"retired KEK {record.id} (version {record.version})")
        status = kek_admin.kek_status(database, keyring.manifest())
    for kek in status.keks:
        if kek.state == "active":
            click.echo(_advice(kek))


def _describe_start(start: RotationStart) -> str:
    if start.added:
        return f"added KEK {start.target.id} (version {start.target.version}), now current"
    return f"resuming the rotation to KEK {start.target.id}: {start.pending} records left"


def _advice(kek: KekState) -> str:
    """Return what to do next with an older KEK that is not retired."""
    if kek.records:
        # A server that had not switched yet sealed these after the batches had passed them.
        return (
            f"KEK {kek.id} still wraps {kek.records} records sealed during the rotation; run "
            "`llero keys rotate` again to re-wrap them"
        )
    return f"KEK {kek.id} is no longer needed; retire it with `llero keys retire {kek.id}`"


def _kek_id(context: click.Context, parameter: click.Parameter, value: str) -> str:
    if not KEK_ID_PATTERN.fullmatch(value):
        raise click.BadParameter("must be 16 lower-case hex digits, as `llero keys status` shows")
    return value


@keys.command(name="retire")
@click.argument("kek_id", metavar="KEK_ID", callback=_kek_id)
def retire_command(kek_id: str) -> None:
    """Retire the KEK KEK_ID once no record is wrapped by it any more.

    Refuses, naming the reason, while any record still needs it, or when it is the current KEK.
    Waits a few seconds when the current KEK is brand new, so that running servers have switched
    to it. The KEK's key file is deleted; database backups made before the rotation need it, so
    copy it away first if those must stay restorable. Recorded as kek:retired.
    """
    settings = cli_settings()
    with opened_vault(settings) as (database, keyring):
        record = kek_admin.retire(database, keyring, settings.keys_dir, CLI_ORIGIN, kek_id)
    click.echo(f"retired KEK {record.id} (version {record.version})")


class _Progress:
    """Reports re-wrapped records on standard error: one line redrawn on a terminal, otherwise a
    line every PROGRESS_LINE_SECONDS and a last one at the end."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self._total = total
        self._stream = stream
        self._terminal = stream.isatty()
        self._done = 0
        self._column = ""
        self._printed_at: float | None = None

    def advance(self, column: str, count: int) -> None:
        self._done += count
        self._column = column
        now = time.monotonic()
        if self._terminal:
            self._stream.write(f"\r{self._line()}")
            self._stream.flush()
        elif self._printed_at is None or now - self._printed_at >= PROGRESS_LINE_SECONDS:
            self._printed_at = now
            self._stream.write(f"{self._line()}\n")

    def close(self) -> None:
        if self._done == 0:
            return
        ending = "\r" if self._terminal else ""
        self._stream.write(f"{ending}{self._line()}\n")
        self._stream.flush()

    def _line(self) -> str:
        # Records sealed under an older KEK during the rotation are re-wrapped too, so the count
        # can pass the total taken at the start.
        total = max(self._total, self._done)
        percent = 100 * self._done // total if total else 100
        return f"re-wrapped {self._done} of {total} records ({percent}%), at {self._column}"


def _print_status(status: KekStatus) -> None:
    click.echo(
        f"{'KEK':<16}  {'VERSION':>7}  {'SOURCE':<7}  {'STATE':<7}  {'CREATED':<25}  RECORDS"
    )
    for kek in status.keks:
        click.echo(
            f"{kek.id:<16}  {_field(kek, 'version'):>7}  {_field(kek, 'source'):<7}  "
            f"{kek.state:<7}  {_field(kek, 'created_at'):<25}  {kek.records}"
        )
    click.echo("")
    width = max(len(name) for name in status.columns)
    click.echo(f"{'COLUMN':<{width}}  {'KEK':<16}  RECORDS")
    for name, counts in status.columns.items():
        for kek_id, count in sorted(counts.items()):
            click.echo(f"{name:<{width}}  {kek_id:<16}  {count}")
    click.echo("")
    if status.pending:
        click.echo(
            f"rotation unfinished: {status.pending} records are wrapped by older KEKs; run "
            "`llero keys rotate` to finish it"
        )
    else:
        click.echo(f"every record is wrapped by the current KEK {status.current}")


def _field(kek: KekState, name: str) -> str:
    if kek.record is None:
        return "-"
    value = getattr(kek.record, name)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _status_document(status: KekStatus) -> dict[str, Any]:
    return {
        "current": status.current,
        "pending": status.pending,
        "keks": [
            {
                "id": kek.id,
                "state": kek.state,
                "version": kek.record.version if kek.record else None,
                "source": kek.record.source.value if kek.record else None,
                "created_at": _time(kek.record.created_at) if kek.record else None,
                "retired_at": _time(kek.record.retired_at) if kek.record else None,
                "records": kek.records,
            }
            for kek in status.keks
        ],
        "columns": status.columns,
    }


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
