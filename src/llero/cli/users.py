"""`llero users`: create the first admin and disable users from the shell.

The commands work on the database directly, like `llero migrate`, so they work before any admin
can sign in and while the server is stopped. They never prompt.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import click
from sqlalchemy.orm import Session

from llero.audit.context import Origin
from llero.audit.keys import attach_keys, load_audit_keys
from llero.config.settings import Settings
from llero.identity import service
from llero.identity.context import IdentityContext
from llero.identity.models import User, UserStatus
from llero.identity.service import IssuedCode
from llero.logs import ensure_logging
from llero.storage import migrate
from llero.storage.base import utc_now
from llero.storage.db import Database
from llero.vault.fields import attach_field_keys, load_field_keys
from llero.vault.kek_sources import load_vault_keyring

NEEDS = (
    "Needs a data directory set up by `llero init` (LLERO_DATA_DIR, or LLERO_DATABASE_URL for "
    "PostgreSQL) at the latest migration."
)
# Who the audit trail names for changes made from the shell.
CLI_ORIGIN = Origin.system("cli")


def _settings() -> Settings:
    # Imported here because llero.cli.main imports this module to register the group.
    from llero.cli.main import settings_from  # noqa: PLC0415

    settings = settings_from(click.get_current_context())
    # The service logs what it changes; those lines go to stderr, and the output to stdout.
    ensure_logging(settings)
    return settings


def _fail(message: str) -> NoReturn:
    from llero.cli.main import fail  # noqa: PLC0415 - same reason as in _settings

    fail(message)


@contextmanager
def _transaction(settings: Settings) -> Iterator[Session]:
    """Yield a session on a migrated database; commit on success, roll back on any error."""
    database = Database(settings.resolved_database_url)
    keyring = load_vault_keyring(settings, database)
    attach_field_keys(database.sessions, load_field_keys(settings.keys_dir, keyring))
    try:
        if migrate.current_revision(database.engine) != migrate.head_revision():
            _fail(
                "the database is not at the latest migration; run `llero init` or `llero migrate`"
            )
        with database.transaction() as session:
            # Every change is audited in its own transaction, so without the key nothing runs.
            attach_keys(session, load_audit_keys(settings.keys_dir))
            yield session
    finally:
        database.dispose()


def print_enrollment(user: User, issued: IssuedCode) -> None:
    """Print the one-time enrollment code of ``user`` and what to do with it."""
    expires = issued.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    click.echo(f"admin {user.email} (user {user.id}) is pending until they enroll")
    click.echo(f"enrollment code, valid until {expires} and shown only now:")
    click.echo(f"  {issued.code.reveal()}")
    click.echo(
        'set the password with POST /api/auth/enroll {"code": ..., "password": ...}, then sign '
        "in and enroll TOTP at POST /api/auth/mfa/totp"
    )


def create_first_admin(session: Session, email: str, display_name: str) -> tuple[User, IssuedCode]:
    return service.create_admin(
        session, CLI_ORIGIN, email=email, display_name=display_name, now=utc_now()
    )


@click.group()
def users() -> None:
    """Create the first admin and disable users."""


@users.command(name="create-admin", epilog=NEEDS)
@click.option("--email", required=True, help="Email address of the new admin.")
@click.option("--display-name", default="", help="Name shown to other users.")
def create_admin(email: str, display_name: str) -> None:
    """Create a pending admin and print a one-time enrollment code.

    The code is valid for 15 minutes and printed only once. The admin sets a password with it,
    then must enroll TOTP before doing anything else. Run the command again for an admin who is
    still pending to print a new code; the old one stops working.
    """
    settings = _settings()
    with _transaction(settings) as session:
        user, issued = create_first_admin(session, email, display_name)
    print_enrollment(user, issued)


@users.command(epilog=NEEDS)
@click.argument("email")
def disable(email: str) -> None:
    """Disable the user with EMAIL and end their sessions and tokens at once.

    The last active admin cannot be disabled.
    """
    settings = _settings()
    context = IdentityContext.from_settings(settings)
    with _transaction(settings) as session:
        user = service.find_user_by_email(session, email)
        service.update_user(
            session, context, CLI_ORIGIN, user_id=user.id, status=UserStatus.DISABLED
        )
        user_id = user.id
    click.echo(f"disabled user {user_id}; their sessions and API tokens are revoked")
