"""`llero keys`: rotate the key that signs access tokens."""

import click

from llero.identity.signing_keys import rotate_signing_key


@click.group()
def keys() -> None:
    """Manage the keys under data/keys."""


@keys.command(name="rotate-signing")
def rotate_signing() -> None:
    """Make a new access token signing key the current one.

    Tokens signed by the previous keys keep verifying until they expire. Restart every
    `llero serve` process afterwards: a process that still has the old key ring rejects tokens
    signed with the new key.
    """
    from llero.cli.main import settings_from  # noqa: PLC0415 - main imports this module

    settings = settings_from(click.get_current_context())
    kid = rotate_signing_key(settings.keys_dir)
    click.echo(f"new signing key {kid} is current; restart llero serve to use it")
