"""`llero secrets`: store, list, replace and delete secrets from the shell.

A value is read from standard input or from a file, never from the command line, where it would
show in process lists and shell history. On a terminal the value is asked for without echo.
The commands work on the database directly, as Llero itself (audited as the system actor "cli"),
so they act on every secret whoever owns it. No command ever prints a value.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import click
from sqlalchemy.orm import Session

from llero.academy import service
from llero.academy.service import Caller, SecretView
from llero.audit.context import Origin
from llero.audit.keys import attach_keys_to_factory, load_audit_keys
from llero.config.settings import Settings
from llero.crypto import Secret
from llero.errors import InvalidInput, Violation
from llero.logs import ensure_logging
from llero.storage import migrate
from llero.storage.db import Database
from llero.vault.kek_sources import load_vault_keyring
from llero.vault.models import SecretKind
from llero.vault.service import MAX_VALUE_BYTES, VaultService

NEEDS = (
    "Needs a data directory set up by `llero init` at the latest migration, and the vault's "
    "master key (master.key, LLERO_MASTER_KEY, or the key service of LLERO_VAULT_KEK_SOURCE)."
)
ORIGIN = Origin.system("cli")


@dataclass(frozen=True)
class _Context:
    session: Session
    vault: VaultService


def _settings() -> Settings:
    # Imported here because llero.cli.main imports this module to register the group.
    from llero.cli.main import settings_from  # noqa: PLC0415

    settings = settings_from(click.get_current_context())
    ensure_logging(settings)
    return settings


@contextmanager
def _opened(settings: Settings) -> Iterator[_Context]:
    """Yield a session and a vault; commit on success, roll back on any error."""
    database = Database(settings.resolved_database_url)
    try:
        if migrate.current_revision(database.engine) != migrate.head_revision():
            raise click.ClickException(
                "the database is not at the latest migration; run `llero init` or `llero migrate`"
            )
        attach_keys_to_factory(database.sessions, load_audit_keys(settings.keys_dir))
        vault = VaultService(database, load_vault_keyring(settings, database))
        with database.transaction() as session:
            yield _Context(session, vault)
    finally:
        database.dispose()


def _read_value(value_file: Path | None) -> Secret[str]:
    """Read a value from ``value_file`` ("-" is standard input), or ask for it on a terminal."""
    if value_file is None:
        if sys.stdin.isatty():
            entered: str = click.prompt(
                "Secret value", hide_input=True, confirmation_prompt=True, err=True
            )
            return Secret(entered)
        return Secret(_read_stream(sys.stdin))
    with click.open_file(str(value_file), encoding="utf-8") as handle:
        text = _read_stream(handle)
    return Secret(text)


def _read_stream(stream: IO[str]) -> str:
    # One character more than the largest value, so a longer input is detected, not truncated.
    text = stream.read(MAX_VALUE_BYTES + 1)
    # A file or `echo` ends the value with a newline that is not part of it.
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise InvalidInput(
            "the value is empty; pipe it on standard input or pass --value-file",
            details=[Violation("value", "empty")],
        )
    return text


def _describe(view: SecretView) -> str:
    hint = f"…{view.hint}" if view.hint else "(no hint)"
    expiry = view.expires_at.isoformat() if view.expires_at else "never"
    return (
        f"{view.id}\t{view.name}\t{view.kind}\tversion {view.current_version}\t{hint}\t"
        f"expires {expiry}"
    )


value_file_option = click.option(
    "--value-file",
    type=click.Path(dir_okay=False, path_type=Path, allow_dash=True),
    help="Read the value from this file; '-' or no option reads standard input.",
)
expires_option = click.option(
    "--expires-at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z"]),
    help="When the value stops being usable, with a time zone, e.g. 2030-01-31T18:00+00:00.",
)


@click.group()
def secrets() -> None:
    """Store, list, replace and delete secrets. Values are never printed."""


@secrets.command(epilog=NEEDS)
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice([kind.value for kind in SecretKind]),
    default=SecretKind.GENERIC.value,
    show_default=True,
    help="What the secret is for; a grant's purpose must match it.",
)
@click.option("--description", default="", help="What the secret is; at most 4096 characters.")
@click.option("--owner-id", type=click.IntRange(1, 2**31 - 1), help="The owning user's id.")
@value_file_option
@expires_option
def create(  # noqa: PLR0917 - click passes every option as an argument
    name: str,
    kind: str,
    description: str,
    owner_id: int | None,
    value_file: Path | None,
    expires_at: datetime | None,
) -> None:
    """Store a new secret called NAME. The value comes from standard input or --value-file."""
    settings = _settings()
    value = _read_value(value_file)
    new = service.NewSecret(
        name=name,
        kind=SecretKind(kind),
        value=value,
        description=description,
        owner_user_id=owner_id,
        expires_at=expires_at,
    )
    with _opened(settings) as opened:
        view = service.create_secret(opened.session, opened.vault, Caller.system(), ORIGIN, new)
    click.echo(f"created {_describe(view)}")


@secrets.command(name="list", epilog=NEEDS)
def list_command() -> None:
    """List every secret: id, name, kind, current version, hint and expiry."""
    settings = _settings()
    with _opened(settings) as opened:
        page = service.list_secrets(opened.session, Caller.system(), limit=service.LIST_LIMIT_MAX)
        for view in page.items:
            click.echo(_describe(view))
        offset = page.limit
        while offset < page.total:
            more = service.list_secrets(
                opened.session, Caller.system(), limit=service.LIST_LIMIT_MAX, offset=offset
            )
            for view in more.items:
                click.echo(_describe(view))
            offset += more.limit


@secrets.command(epilog=NEEDS)
@click.argument("secret")
@value_file_option
@expires_option
def rotate(secret: str, value_file: Path | None, expires_at: datetime | None) -> None:
    """Replace the value of SECRET (a name or id) with a new current version."""
    settings = _settings()
    value = _read_value(value_file)
    with _opened(settings) as opened:
        secret_id = service.find_secret_id(opened.session, Caller.system(), secret)
        view = service.rotate_secret(
            opened.session,
            opened.vault,
            Caller.system(),
            ORIGIN,
            secret_id=secret_id,
            value=value,
            expires_at=expires_at,
        )
    click.echo(f"rotated {_describe(view)}")


@secrets.command(epilog=NEEDS)
@click.argument("secret")
@click.option("--yes", is_flag=True, help="Delete without asking on a terminal.")
def delete(secret: str, yes: bool) -> None:
    """Delete SECRET (a name or id) and its key, so none of its values can be decrypted again."""
    settings = _settings()
    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete secret {secret} and destroy its key?", abort=True, err=True)
    with _opened(settings) as opened:
        secret_id = service.find_secret_id(opened.session, Caller.system(), secret)
        service.delete_secret(opened.session, opened.vault, Caller.system(), ORIGIN, secret_id)
    click.echo(f"deleted secret {secret_id}")
