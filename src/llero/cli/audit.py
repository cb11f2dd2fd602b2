"""`llero audit`: verify the audit chain, hash a suspected secret, and export audit records.

The commands work on the database and data/keys/audit.key directly, like `llero migrate`, so the
server need not run. They never prompt.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NoReturn

import click
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from llero.audit.chain import AuditChainError
from llero.audit.context import Actor
from llero.audit.events import ActorKind, AuditEvent
from llero.audit.keys import AuditKeys, attach_keys, load_audit_keys
from llero.audit.parallel import verify_chain_in_parallel
from llero.audit.redaction import audit_hash
from llero.audit.service import (
    AuditFilter,
    VerifyResult,
    export_jsonl,
    purge_older_than,
    record,
    verify_chain,
)
from llero.cli.database import cli_security_alerts
from llero.config.settings import Settings
from llero.errors import InvalidInput
from llero.storage import migrate
from llero.storage.db import Database

NEEDS = (
    "Needs a data directory set up by `llero init`: its keys/audit.key, and its database "
    "(LLERO_DATA_DIR, or LLERO_DATABASE_URL for PostgreSQL) at the latest migration."
)

# The actor that `llero audit export` and `llero audit purge` are recorded under.
CLI_ACTOR = Actor.system("cli")


def _settings() -> Settings:
    # Imported here because llero.cli.main imports this module to register the group.
    from llero.cli.main import settings_from  # noqa: PLC0415

    return settings_from(click.get_current_context())


def _fail(message: str) -> NoReturn:
    from llero.cli.main import fail  # noqa: PLC0415 - same reason as in _settings

    fail(message)


def _keys(settings: Settings) -> AuditKeys:
    return load_audit_keys(settings.keys_dir)


@contextmanager
def _transaction(settings: Settings, keys: AuditKeys) -> Iterator[Session]:
    """Yield a session with the audit keys attached; commit on success, roll back on error."""
    database = Database(settings.resolved_database_url)
    try:
        try:
            revision = migrate.current_revision(database.engine)
        except OperationalError as error:
            # The driver's message can contain the URL and so a password; its type is enough.
            _fail(
                f"cannot open the database ({type(error.orig).__name__}); check LLERO_DATABASE_URL"
            )
        if revision != migrate.head_revision():
            _fail("the database is not at the latest migration; run `llero migrate`")
        with database.transaction() as session:
            attach_keys(session, keys)
            yield session
    finally:
        database.dispose()


@click.group()
def audit() -> None:
    """Verify, search and export the tamper-evident audit trail."""


@audit.command(epilog=NEEDS)
@click.option(
    "--from",
    "start",
    type=click.IntRange(min=1),
    help="First sequence number to check. [default: the first stored record]",
)
@click.option(
    "--to",
    "end",
    type=click.IntRange(min=1),
    help="Last sequence number to check. [default: the last record]",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    help="Processes that check ranges of the chain at once; more than one helps only for "
    "long chains and up to the number of CPUs.",
)
def verify(start: int | None, end: int | None, jobs: int) -> None:
    """Check that no audit record was edited, deleted, inserted or reordered.

    Exits 0 when the chain is intact and 1 when it is broken, naming the first broken record
    and how it broke. Records removed by the retention purge are not missing: the check starts
    at the first stored record.
    """
    if start is not None and end is not None and start > end:
        _fail(f"--from {start} is after --to {end}")
    settings = _settings()
    with _transaction(settings, _keys(settings)) as session:
        # With --jobs the session only checks that the database opens and is migrated, and
        # each process opens its own.
        result = verify_chain(session, start, end) if jobs == 1 else None
    if result is None:
        result = verify_chain_in_parallel(
            settings.resolved_database_url, settings.keys_dir, jobs=jobs, start=start, end=end
        )
    _report(result, settings)


def _report(result: VerifyResult, settings: Settings) -> None:
    if result.broken is not None:
        alerts = cli_security_alerts(settings)
        alerts.audit_chain_broken(result.broken.sequence, str(result.broken.reason))
        alerts.close()
        where = (
            "the chain head"
            if result.broken.sequence is None
            else f"record {result.broken.sequence}"
        )
        click.echo(
            f"audit chain broken at {where} ({result.broken.reason}): {result.broken.message}"
        )
        sys.exit(1)
    if result.checked == 0:
        click.echo("audit chain ok: no records in this range")
        return
    click.echo(
        f"audit chain ok: {result.checked} records checked "
        f"({result.first_sequence} to {result.last_sequence})"
    )


@audit.command(name="hash", epilog="Needs keys/audit.key in LLERO_DATA_DIR.")
@click.argument("value")
def hash_command(value: str) -> None:
    """Print the hash that stands for VALUE where it appeared as a secret in an audit detail.

    Pass - as VALUE to read it from standard input (one trailing newline is removed), which
    keeps a real secret out of the shell history and the process list. Search an export for
    the printed hash, or pass it to `llero audit export --detail-hash`.
    """
    if value == "-":
        value = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not value:
        _fail("VALUE is empty; pass the value to hash, or - to read it from standard input")
    click.echo(audit_hash(value, _keys(_settings())))


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{option} {value!r} is not an ISO 8601 date or time, such as 2026-01-31T12:00Z")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _parse_actor(value: str | None) -> tuple[ActorKind | None, str | None]:
    if value is None:
        return None, None
    kind, _, actor_id = value.partition(":")
    try:
        return ActorKind(kind), actor_id or None
    except ValueError:
        kinds = ", ".join(sorted(ActorKind))
        _fail(f"--actor {value!r} must be KIND or KIND:ID with KIND one of {kinds}")


@contextmanager
def _open_output(output: Path | None) -> Iterator[IO[str]]:
    if output is None:
        yield sys.stdout
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(output, flags, 0o600)
    except FileExistsError:
        _fail(f"{output} already exists; choose a new file name")
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        yield handle


@audit.command(epilog=NEEDS)
@click.option("--since", help="Only records at or after this ISO 8601 time (UTC if no zone).")
@click.option("--until", help="Only records before this ISO 8601 time (UTC if no zone).")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice([event.value for event in AuditEvent]),
    help="Only records of this event; repeat the option for several.",
)
@click.option(
    "--actor", help="Only records of this actor: user:ID, agent:ID, system or system:NAME."
)
@click.option("--detail-hash", help="Only records whose detail contains this `llero audit hash`.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this new file, created mode 0600. [default: standard output]",
)
def export(
    *,
    since: str | None,
    until: str | None,
    events: tuple[str, ...],
    actor: str | None,
    detail_hash: str | None,
    output: Path | None,
) -> None:
    """Write the matching audit records as JSON lines, oldest first.

    Each line has the record's fields, its detail with secrets already replaced by their
    hashes, and previous_hash and record_hash. The export itself is recorded as an
    audit:exported event, committed before the first line is written.
    """
    actor_kind, actor_id = _parse_actor(actor)
    try:
        filters = AuditFilter(
            since=_parse_time(since, "--since"),
            until=_parse_time(until, "--until"),
            events=tuple(AuditEvent(event) for event in events),
            actor_kind=actor_kind,
            actor_id=actor_id,
            detail_hash=detail_hash,
        )
    except InvalidInput as error:
        _fail(f"--{error.details[0].field.replace('_', '-')}: {error.details[0].problem}")
    settings = _settings()
    keys = _keys(settings)
    with _transaction(settings, keys) as session:
        record(
            session,
            AuditEvent.AUDIT_EXPORTED,
            actor=CLI_ACTOR,
            target=None,
            request=None,
            detail=_export_detail(filters, output),
        )
    count = 0
    with _open_output(output) as handle, _transaction(settings, keys) as session:
        for line in export_jsonl(session, filters):
            handle.write(line)
            count += 1
    if output is not None:
        click.echo(f"exported {count} audit records to {output}", err=True)


@audit.command(epilog=NEEDS)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    help="Remove records older than this many days. [default: LLERO_AUDIT_RETENTION_DAYS, 365]",
)
def purge(days: int | None) -> None:
    """Remove the audit records older than the retention period.

    Only the oldest records go, and the rest of the chain still verifies. The records to be
    removed are verified first, and nothing is removed from a broken chain, which is evidence.
    The purge itself is recorded as an audit:purged event.
    """
    settings = _settings()
    days = days or settings.audit_retention_days
    try:
        with _transaction(settings, _keys(settings)) as session:
            result = purge_older_than(session, days, actor=CLI_ACTOR)
    except AuditChainError as error:
        _fail(str(error))
    click.echo(
        f"removed {result.removed} audit records older than {days} days; the chain now starts "
        f"at record {result.first_sequence}"
    )


def _export_detail(filters: AuditFilter, output: Path | None) -> dict[str, object]:
    return {
        **filters.describe(),
        # The operating-system user who ran the command, because the CLI has no signed-in user.
        "uid": os.geteuid(),
        "output": "stdout" if output is None else str(output)[:256],
    }
