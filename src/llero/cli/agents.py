"""`llero agents`: quarantine a suspect agent and release it again, from the shell."""

import click

from llero.barracks import quarantine as quarantine_service
from llero.cli.database import CLI_ORIGIN, audited_transaction, cli_security_alerts, cli_settings
from llero.storage.base import utc_now

NEEDS = (
    "Needs a data directory set up by `llero init` (its keys/audit.key, and LLERO_DATA_DIR or "
    "LLERO_DATABASE_URL) at the latest migration."
)


@click.group()
def agents() -> None:
    """Quarantine and release agents."""


@agents.command(epilog=NEEDS)
@click.argument("agent")
@click.option("--reason", required=True, help="Why, recorded in the audit trail.")
def quarantine(agent: str, reason: str) -> None:
    """Quarantine AGENT (a name, or an id): it cannot run and its grants are suspended."""
    settings = cli_settings()
    with audited_transaction(settings) as session:
        found = quarantine_service.find_agent(session, agent)
        quarantine_service.quarantine_agent(
            session, CLI_ORIGIN, found.id, reason=reason, now=utc_now()
        )
        agent_id, name = found.id, found.name
    alerts = cli_security_alerts(settings)
    alerts.agent_quarantined(agent_id, name)
    alerts.close()
    click.echo(f"agent {name} (id {agent_id}) is quarantined")


@agents.command(epilog=NEEDS)
@click.argument("agent")
def release(agent: str) -> None:
    """Release AGENT (a name, or an id) from quarantine; it becomes active again."""
    settings = cli_settings()
    with audited_transaction(settings) as session:
        found = quarantine_service.find_agent(session, agent)
        quarantine_service.release_agent(session, CLI_ORIGIN, found.id, now=utc_now())
        agent_id, name = found.id, found.name
    click.echo(f"agent {name} (id {agent_id}) is released and active")
