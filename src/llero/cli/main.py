"""The `llero` command: set up, migrate and serve, and manage tools from the shell.

No command prompts when standard input is not a terminal; anything a command needs comes from
options, environment variables or files.
"""

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy.exc import OperationalError

from llero.audit.keys import attach_keys, load_audit_keys
from llero.cli import serving
from llero.cli.agents import agents
from llero.cli.audit import audit
from llero.cli.backup import backup, restore
from llero.cli.incident import incident
from llero.cli.keys import keys
from llero.cli.secrets import secrets
from llero.cli.tools import tools
from llero.cli.users import create_first_admin, print_enrollment, users
from llero.config.keyfiles import check_key_files, create_key_files, make_private_dir
from llero.config.settings import KekSourceKind, Settings, check_safe_to_serve, load_settings
from llero.errors import LleroError
from llero.identity import service
from llero.logs import ensure_logging
from llero.storage import migrate
from llero.storage.db import Database
from llero.vault.backends import build_key_service
from llero.vault.errors import BackendUnavailable
from llero.vault.fields import attach_field_keys, load_field_keys
from llero.vault.kek_sources import create_wrapped_master_key, load_vault_keyring


def fail(message: str) -> NoReturn:
    click.echo(f"llero: {message}", err=True)
    sys.exit(2)


def settings_from(context: click.Context, **overrides: Any) -> Settings:
    """Load settings once per command; a bad setting ends the command with one line."""
    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except LleroError as error:
        fail(error.message)
    # Log lines go to stderr, redacted, so a command's own output on stdout stays clean.
    ensure_logging(settings)
    return settings


class LleroGroup(click.Group):
    """Turns any domain error raised by a command into one line on stderr and exit status 2.

    A database that cannot be opened (a missing data directory, a server that is down, a wrong
    password) is an operator's setup problem too, so it gets one line instead of a traceback.
    The line names the driver's reason but never the URL, which may contain a password.
    """

    def invoke(self, context: click.Context) -> Any:
        try:
            return super().invoke(context)
        except LleroError as error:
            fail(error.message)
        except OperationalError as error:
            reason = str(error.orig).strip().splitlines()[0] if error.orig else "unknown error"
            fail(
                f"cannot open the database ({reason}); check LLERO_DATA_DIR or "
                "LLERO_DATABASE_URL and run `llero init`"
            )


@click.group(cls=LleroGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llero")
def cli() -> None:
    """Llero: build, store and run function-calling AI agents.

    Settings come from LLERO_* environment variables and an optional .env file in the current
    directory (see the README). Start with `llero init`, then `llero serve`.
    """


@cli.command()
@click.option(
    "--admin-email",
    help="Create the first admin with this email address and print its enrollment code, "
    "unless an admin exists.",
)
@click.pass_context
def init(context: click.Context, admin_email: str | None) -> None:
    """Create the data directory, its database and key files.

    Makes LLERO_DATA_DIR (./data by default) mode 0700, creates the key files under keys/ mode
    0600, and applies every database migration. Running it again keeps existing keys and data
    and applies only new migrations. With --admin-email and no admin yet, it also creates the
    first admin, as `llero users create-admin` does.
    """
    settings = settings_from(context)
    make_private_dir(settings.data_dir)
    file_kek = settings.vault_kek_source is KekSourceKind.FILE
    created = create_key_files(settings.keys_dir, master_key=file_kek)
    if not file_kek:
        created += _wrapped_master_key(settings)
    check_key_files(settings.keys_dir, master_key=file_kek)
    field_keys = load_field_keys(settings.keys_dir, load_vault_keyring(settings))
    database = Database(settings.resolved_database_url)
    try:
        migrate.upgrade(database.engine, field_keys=field_keys)
    finally:
        database.dispose()
    for path in created:
        click.echo(f"created key file {path}")
    revision = migrate.head_revision()
    click.echo(f"data directory {settings.data_dir} is ready (database at migration {revision})")
    _first_admin(settings, admin_email)


def _wrapped_master_key(settings: Settings) -> list[Path]:
    """Have the external key service wrap a new base KEK; fail in one line when it cannot."""
    service = build_key_service(settings)
    if service is None:
        return []
    try:
        path = create_wrapped_master_key(settings.keys_dir, service, settings.vault_kek_source)
    except BackendUnavailable as error:
        fail(error.message)
    return [] if path is None else [path]


def _first_admin(settings: Settings, email: str | None) -> None:
    """Create the first admin when asked and none exists; otherwise say what to do."""
    ensure_logging(settings)
    database = Database(settings.resolved_database_url)
    keyring = load_vault_keyring(settings, database)
    attach_field_keys(database.sessions, load_field_keys(settings.keys_dir, keyring))
    try:
        with database.transaction() as session:
            attach_keys(session, load_audit_keys(settings.keys_dir))
            if service.admin_exists(session):
                if email is not None:
                    click.echo("an admin exists already, so --admin-email was ignored")
                return
            if email is None:
                click.echo("no admin yet: run `llero users create-admin --email ADDRESS`")
                return
            user, issued = create_first_admin(session, email, "")
    finally:
        database.dispose()
    print_enrollment(user, issued)


@cli.command(name="migrate")
@click.pass_context
def migrate_command(context: click.Context) -> None:
    """Apply every pending database migration to LLERO_DATABASE_URL.

    Reads the key files under LLERO_DATA_DIR/keys, because a migration may seal values that an
    earlier version stored in plain text.
    """
    settings = settings_from(context)
    database = Database(settings.resolved_database_url)
    try:
        before = migrate.current_revision(database.engine)
        field_keys = load_field_keys(settings.keys_dir, load_vault_keyring(settings))
        migrate.upgrade(database.engine, field_keys=field_keys)
        after = migrate.current_revision(database.engine)
    finally:
        database.dispose()
    if before == after:
        click.echo(f"database is up to date at migration {after}")
    else:
        click.echo(f"migrated database from {before or 'empty'} to {after}")


@cli.command()
@click.option("--host", help="Address to listen on. [default: LLERO_HOST or 127.0.0.1]")
@click.option("--port", type=int, help="TCP port to listen on. [default: LLERO_PORT or 8000]")
@click.pass_context
def serve(context: click.Context, host: str | None, port: int | None) -> None:
    """Start the HTTP API.

    Needs a data directory made by `llero init`. Refuses to start, with one line naming the
    setting, when a setting is unsafe: a bind beyond loopback without TLS or a trusted proxy, a
    CORS wildcard, debug outside development, or several workers (LLERO_WORKERS) without what
    they must share.
    """
    settings = settings_from(context, host=host, port=port)
    check_safe_to_serve(settings)
    check_key_files(settings.keys_dir, master_key=settings.vault_kek_source is KekSourceKind.FILE)
    database = Database(settings.resolved_database_url, background_checkpoints=True)
    if migrate.current_revision(database.engine) != migrate.head_revision():
        database.dispose()
        fail("the database is not at the latest migration; run `llero migrate`")

    serving.serve(settings, database)


cli.add_command(tools)
cli.add_command(audit)
cli.add_command(users)
cli.add_command(keys)
cli.add_command(secrets)
cli.add_command(incident)
cli.add_command(agents)
cli.add_command(backup)
cli.add_command(restore)


def main() -> None:
    # Every file Llero creates (database, WAL, keys, exports) is private to its owner.
    os.umask(0o077)
    cli(prog_name="llero")
