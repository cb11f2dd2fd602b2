"""`llero incident`: revoke every credential at once, and switch the lockdown on and off.

The commands work on the database directly, so they work while no admin can sign in and while
the server is stopped. Each records its audit event as the system actor "cli". They never prompt.
"""

import click

from llero.cli.database import CLI_ORIGIN, audited_transaction, cli_settings
from llero.incident import service
from llero.storage.base import utc_now

NEEDS = (
    "Needs a data directory set up by `llero init` (its keys/audit.key, and LLERO_DATA_DIR or "
    "LLERO_DATABASE_URL) at the latest migration."
)


@click.group()
def incident() -> None:
    """Contain an incident: revoke every credential, lock the system down."""


@incident.command(name="revoke-all", epilog=NEEDS)
def revoke_all() -> None:
    """Revoke every session, refresh token, API token and one-time code, and every access token.

    Access tokens issued before now are rejected from the next request on, by every server that
    uses this database. Everyone, admins included, must sign in again.
    """
    settings = cli_settings()
    with audited_transaction(settings) as session:
        revoked = service.revoke_all(session, CLI_ORIGIN, utc_now())
    click.echo(
        f"revoked {revoked.sessions} sessions, {revoked.api_tokens} API tokens and "
        f"{revoked.one_time_codes} one-time codes; access tokens issued before "
        f"{revoked.not_before:%Y-%m-%d %H:%M:%S} UTC are rejected"
    )


@incident.command(epilog=NEEDS)
@click.argument("switch", type=click.Choice(["on", "off"]))
@click.option("--reason", default="", help="Why, shown to admins; at most 200 characters.")
def lockdown(switch: str, reason: str) -> None:
    """Switch the lockdown on or off.

    While it is on, every change by a user who is not an admin gets 423. Reading, signing in and
    signing out still work.
    """
    settings = cli_settings()
    with audited_transaction(settings) as session:
        state = service.set_lockdown(
            session, CLI_ORIGIN, enabled=switch == "on", reason=reason, now=utc_now()
        )
    click.echo(f"lockdown is {'on' if state.enabled else 'off'}")


@incident.command(epilog=NEEDS)
def status() -> None:
    """Print whether the lockdown is on, when access tokens were last revoked, and which agents
    are quarantined."""
    settings = cli_settings()
    with audited_transaction(settings) as session:
        state = service.read_state(session)
        lockdown_on = state is not None and state.lockdown
        reason = state.lockdown_reason if state else ""
        revoked = state.tokens_not_before if state else None
        quarantined = service.quarantined_agents(session)
    click.echo(f"lockdown: {'on' if lockdown_on else 'off'}" + (f" ({reason})" if reason else ""))
    when = "never" if revoked is None else f"{revoked:%Y-%m-%d %H:%M:%S} UTC"
    click.echo(f"all credentials last revoked: {when}")
    agents = ", ".join(f"{name} (id {agent_id})" for agent_id, name in quarantined)
    click.echo(f"quarantined agents: {agents or 'none'}")
