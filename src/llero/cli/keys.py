"""`llero keys`: rotate the key that signs access tokens."""

import click

from llero.cli.database import CLI_ORIGIN, audited_transaction, cli_settings
from llero.incident.service import rotate_signing


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
