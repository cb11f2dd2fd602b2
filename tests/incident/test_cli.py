"""`llero incident`, `llero agents` and `llero keys rotate-signing` as an operator runs them."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.audit.events import AuditEvent
from llero.cli.main import cli
from llero.storage.db import Database
from tests.conftest import MakeUser
from tests.incident.helpers import audit_records, create_agent


@pytest.fixture
def environ(
    data_dir: Path, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    return {"LLERO_DATA_DIR": str(data_dir), "LLERO_DATABASE_URL": database.url}


def llero(environ: dict[str, str], *arguments: str) -> Result:
    return CliRunner().invoke(cli, list(arguments), env=environ, input="")


def test_revoke_all_command_ends_running_tokens(
    environ: dict[str, str], client: TestClient, make_user: MakeUser, database: Database
) -> None:
    viewer = make_user(role=Role.VIEWER)

    result = llero(environ, "incident", "revoke-all")

    assert result.exit_code == 0, result.output
    # Each fixture user holds one sign-in session: the admin's and the viewer's.
    assert result.stdout.startswith("revoked 2 sessions, 0 API tokens and 0 one-time codes;")
    assert client.get("/api/users/me").status_code == 401
    assert client.get("/api/users/me", headers=viewer.headers).status_code == 401
    (recorded,) = audit_records(database, AuditEvent.INCIDENT_REVOKE_ALL)
    assert recorded["actor"] == ("system", "cli")


def test_lockdown_command_switches_and_status_reports(
    environ: dict[str, str], client: TestClient, make_user: MakeUser, database: Database
) -> None:
    developer = make_user(role=Role.DEVELOPER)

    on = llero(environ, "incident", "lockdown", "on", "--reason", "leak")
    status = llero(environ, "incident", "status")
    blocked = client.patch("/api/users/me", json={"display_name": "x"}, headers=developer.headers)
    off = llero(environ, "incident", "lockdown", "off")

    assert (on.exit_code, on.stdout) == (0, "lockdown is on\n")
    assert status.stdout.startswith("lockdown: on (leak)\n")
    assert blocked.status_code == 423
    assert (off.exit_code, off.stdout) == (0, "lockdown is off\n")
    records = audit_records(database, AuditEvent.SETTINGS_CHANGED)
    assert [json.loads(item["detail"])["to"] for item in records] == [True, False]


def test_lockdown_command_rejects_unknown_switch(environ: dict[str, str]) -> None:
    result = llero(environ, "incident", "lockdown", "maybe")

    assert result.exit_code == 2
    assert "'maybe' is not one of 'on', 'off'" in result.output


@pytest.mark.parametrize("by", ["name", "id"])
def test_agents_quarantine_and_release_commands(
    environ: dict[str, str], client: TestClient, database: Database, by: str
) -> None:
    agent = create_agent(client)
    reference = agent["name"] if by == "name" else str(agent["id"])

    quarantined = llero(environ, "agents", "quarantine", reference, "--reason", "leak")
    status = client.get(f"/api/agents/{agent['id']}").json()["status"]
    released = llero(environ, "agents", "release", reference)

    assert quarantined.exit_code == 0, quarantined.output
    assert quarantined.stdout == f"agent researcher (id {agent['id']}) is quarantined\n"
    assert status == "quarantined"
    assert released.stdout == f"agent researcher (id {agent['id']}) is released and active\n"
    assert client.get(f"/api/agents/{agent['id']}").json()["status"] == "active"
    (recorded,) = audit_records(database, AuditEvent.AGENT_QUARANTINED)
    assert recorded["actor"] == ("system", "cli")


def test_status_lists_quarantined_agents(environ: dict[str, str], client: TestClient) -> None:
    agent = create_agent(client)
    before = llero(environ, "incident", "status")
    llero(environ, "agents", "quarantine", agent["name"], "--reason", "leak")

    after = llero(environ, "incident", "status")

    assert before.stdout.endswith("quarantined agents: none\n")
    assert after.exit_code == 0, after.output
    assert after.stdout.endswith(f"quarantined agents: researcher (id {agent['id']})\n")


def test_agents_quarantine_unknown_agent_fails(environ: dict[str, str], client: TestClient) -> None:
    result = llero(environ, "agents", "quarantine", "nobody", "--reason", "x")

    assert result.exit_code == 2
    assert result.stderr.endswith("llero: no agent has the name or id 'nobody'\n")


def test_rotate_signing_command_is_audited(
    environ: dict[str, str], client: TestClient, database: Database
) -> None:
    result = llero(environ, "keys", "rotate-signing")

    assert result.exit_code == 0, result.output
    (recorded,) = audit_records(database, AuditEvent.SIGNING_KEY_ROTATED)
    assert recorded["actor"] == ("system", "cli")


def test_rotate_signing_route_switches_this_process(
    client: TestClient, anonymous_client: TestClient, database: Database
) -> None:
    before = anonymous_client.get("/.well-known/jwks.json").json()["keys"]

    response = client.post("/api/keys/signing/rotate", json={"confirm": "rotate"})

    assert response.status_code == 200, response.text
    kids = {key["kid"] for key in anonymous_client.get("/.well-known/jwks.json").json()["keys"]}
    assert kids == {before[0]["kid"], response.json()["kid"]}
    # The token signed with the old key still works, and new tokens use the new key.
    assert client.get("/api/users/me").status_code == 200
    (recorded,) = audit_records(database, AuditEvent.SIGNING_KEY_ROTATED)
    assert json.loads(recorded["detail"]) == {"previous_kid": response.json()["previous_kid"]}
