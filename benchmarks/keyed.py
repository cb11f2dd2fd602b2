"""Open a benchmark's data directory the way the server does: field keys and audit keys attached."""

from llero.audit.keys import attach_keys_to_factory, load_audit_keys
from llero.config.settings import Settings
from llero.storage.db import Database
from llero.vault.fields import attach_field_keys, load_field_keys
from llero.vault.kek_sources import load_vault_keyring


def keyed_database(settings: Settings) -> Database:
    """Return the database of ``settings`` with sealed fields and audit records writable."""
    database = Database(settings.resolved_database_url)
    keyring = load_vault_keyring(settings, database)
    attach_field_keys(database.sessions, load_field_keys(settings.keys_dir, keyring))
    attach_keys_to_factory(database.sessions, load_audit_keys(settings.keys_dir))
    return database
