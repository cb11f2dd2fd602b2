"""The two ways CLI commands open the database: an audited transaction, or the database with
every key attached. And the security alerts that CLI commands raise."""

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session

from llero.audit.context import Origin
from llero.audit.keys import attach_keys, attach_keys_to_factory, load_audit_keys
from llero.config.settings import Settings
from llero.identity.service import active_admin_emails
from llero.incident.alerts import SecurityAlerts, security_alerts_from
from llero.logs import ensure_logging
from llero.storage import migrate
from llero.storage.db import Database
from llero.vault.fields import attach_field_keys, load_field_keys
from llero.vault.kek_sources import load_vault_keyring
from llero.vault.keyring import Keyring

# The actor of CLI commands in the audit trail, since no user signs in to the CLI.
CLI_ORIGIN = Origin.system("cli")


def cli_settings() -> Settings:
    """Load the settings of the running command and send the service logs to stderr."""
    # Imported here because llero.cli.main imports the command modules that use this one.
    from llero.cli.main import settings_from  # noqa: PLC0415

    settings = settings_from(click.get_current_context())
    ensure_logging(settings)
    return settings


@contextmanager
def audited_transaction(settings: Settings) -> Iterator[Session]:
    """Yield a session on the migrated database with the audit keys attached.

    Commits on success and rolls back on any error, audit failures included. Raises
    KeyFileError when data/keys/audit.key is unusable, before anything is changed.
    """
    from llero.cli.main import fail  # noqa: PLC0415 - same reason as in cli_settings

    keys = load_audit_keys(settings.keys_dir)
    database = Database(settings.resolved_database_url)
    try:
        if migrate.current_revision(database.engine) != migrate.head_revision():
            fail("the database is not at the latest migration; run `llero init` or `llero migrate`")
        with database.transaction() as session:
            attach_keys(session, keys)
            yield session
    finally:
        database.dispose()


@contextmanager
def opened_vault(settings: Settings) -> Iterator[tuple[Database, Keyring]]:
    """Yield the migrated database, keyed as the server keys it, and the vault's keyring.

    The audit keys and the field keys are attached to every session the database makes. The
    keyring comes from the KEK source the settings select. It is sealed when the base key is
    missing or its key service fails, and such a failure is recorded as at a server start.
    """
    from llero.cli.main import fail  # noqa: PLC0415 - same reason as in cli_settings

    audit_keys = load_audit_keys(settings.keys_dir)
    database = Database(settings.resolved_database_url)
    try:
        if migrate.current_revision(database.engine) != migrate.head_revision():
            fail("the database is not at the latest migration; run `llero init` or `llero migrate`")
        attach_keys_to_factory(database.sessions, audit_keys)
        keyring = load_vault_keyring(settings, database)
        attach_field_keys(database.sessions, load_field_keys(settings.keys_dir, keyring))
        yield database, keyring
    finally:
        database.dispose()


def cli_security_alerts(settings: Settings) -> SecurityAlerts:
    """Return the alerts of a command, which mail the active admins while mail is on.

    The addresses are read on the mail channel's thread through a database opened with the
    field keys, so a sealed vault or a missing key file only keeps the mail from going out.
    Call ``close`` before the command exits, or queued alerts are lost.
    """
    return security_alerts_from(settings, lambda: _admin_addresses(settings))


def _admin_addresses(settings: Settings) -> list[str]:
    # Not opened_vault: it exits the command on an old schema, and this runs on the alert
    # thread, where a failure must only be logged.
    database = Database(settings.resolved_database_url)
    try:
        keyring = load_vault_keyring(settings, database)
        attach_field_keys(database.sessions, load_field_keys(settings.keys_dir, keyring))
        with database.reader() as session:
            return active_admin_emails(session)
    finally:
        database.dispose()
