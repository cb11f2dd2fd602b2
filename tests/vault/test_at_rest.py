"""Confidential and secret values never reach the database in clear.

The test plants values through the HTTP API (an email address, a user agent, a client address,
TOTP seeds pending and confirmed) and through the vault service (a provider key, which has no
route yet). It then reads the raw SQLite file and its WAL, or a pg_dump of the PostgreSQL test
database, and searches them for each value as text and as hex. A display name, which is internal
and stored in clear, is planted too: finding it shows that the search can find a value.
"""

import secrets
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import make_url

from llero.crypto import Secret
from llero.storage.db import Database
from llero.vault.envelope import Binding, open_plaintext
from llero.vault.errors import CiphertextInvalid
from llero.vault.fields import FIELD_VERSION, sealed_fields
from llero.vault.keyring import Keyring
from llero.vault.models import SecretKind
from llero.vault.service import VaultService
from tests.identity.helpers import PASSWORD, bearer, freeze_clock

# A TEST-NET-3 address (RFC 5737): only a string in the ASGI scope, never a peer on a network.
CLIENT = ("203.0.113.77", 50000)


@dataclass(frozen=True)
class Planted:
    email: str
    user_agent: str
    pending_email: str
    display_name: str
    provider_key: str


def _planted() -> Planted:
    tag = secrets.token_hex(6)
    return Planted(
        email=f"planted.{tag}@example.com",
        user_agent=f"PlantedAgent/{tag} (at-rest test)",
        pending_email=f"pending.{tag}@example.com",
        display_name=f"Planted Name {tag}",
        provider_key=f"sk-live-PLANTED-{tag}{secrets.token_hex(12)}",
    )


def _create_user(client: TestClient, email: str, display_name: str) -> str:
    created = client.post(
        "/api/users", json={"email": email, "display_name": display_name, "role": "developer"}
    )
    assert created.status_code == 201, created.text
    code: str = created.json()["enrollment_code"]
    enrolled = client.post("/api/auth/enroll", json={"code": code, "password": PASSWORD})
    assert enrolled.status_code == 200, enrolled.text
    return email


def _sign_in(app: FastAPI, email: str, user_agent: str) -> str:
    with TestClient(app, client=CLIENT, headers={"User-Agent": user_agent}) as browser:
        response = browser.post("/api/auth/signin", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _start_totp(client: TestClient, token: str) -> str:
    response = client.post("/api/auth/mfa/totp", headers=bearer(token))
    assert response.status_code == 200, response.text
    uri = response.json()["provisioning_uri"]
    return parse_qs(urlparse(uri).query)["secret"][0]


def _plant(app: FastAPI, client: TestClient, planted: Planted) -> list[str]:
    """Store every planted value; return the values that must not be found."""
    clock = freeze_clock(app)
    _create_user(client, planted.email, planted.display_name)
    token = _sign_in(app, planted.email, planted.user_agent)
    seed = _start_totp(client, token)
    confirmed = client.post(
        "/api/auth/mfa/totp/confirm",
        headers=bearer(token),
        json={"code": pyotp.TOTP(seed).at(clock.moment)},
    )
    assert confirmed.status_code == 200, confirmed.text

    _create_user(client, planted.pending_email, "Pending")
    pending_seed = _start_totp(client, _sign_in(app, planted.pending_email, planted.user_agent))

    VaultService(app.state.database, app.state.keyring).create_secret(
        name=f"openai-{secrets.token_hex(4)}",
        kind=SecretKind.PROVIDER_API_KEY,
        value=Secret(planted.provider_key),
    )
    return [
        planted.email,
        planted.pending_email,
        planted.user_agent,
        CLIENT[0],
        seed,
        pending_seed,
        planted.provider_key,
    ]


# NOTE: audit records keep the client address and user agent of each action in clear, for
# investigators, so the scan leaves the audit table out; every other table is searched.
AUDIT_TABLE = "audit_events"


def _raw_bytes(database: Database, scratch: Path) -> bytes:
    url = make_url(database.url)
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database))
        files = [path, path.with_name(path.name + "-wal")]
        assert files[1].exists(), "the test database runs in WAL mode"
        copy = scratch / "copy.db"
        database.engine.dispose()
        with sqlite3.connect(path) as source, sqlite3.connect(copy) as target:
            source.backup(target)
        with sqlite3.connect(copy) as target:
            # Out of WAL mode, so VACUUM rewrites the file itself rather than a WAL beside it.
            target.execute("PRAGMA journal_mode=DELETE")
            target.execute(f"DELETE FROM {AUDIT_TABLE}")  # noqa: S608 - a constant name
        with sqlite3.connect(copy) as target:
            target.execute("VACUUM")
        return copy.read_bytes()
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        pytest.fail("pg_dump is not installed; it is needed to search the PostgreSQL database")
    dump_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
    result = subprocess.run(
        [pg_dump, "--no-owner", f"--exclude-table-data={AUDIT_TABLE}", "--dbname", dump_url],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return result.stdout


def _forms(value: str) -> list[bytes]:
    encoded = value.encode("utf-8")
    return [encoded, encoded.lower(), encoded.hex().encode("ascii")]


def test_planted_values_not_in_raw_database(
    app: FastAPI, client: TestClient, database: Database, tmp_path: Path
) -> None:
    planted = _planted()
    hidden = _plant(app, client, planted)

    raw = _raw_bytes(database, tmp_path)

    # The control: an internal value stored in clear is found, so the search works.
    assert planted.display_name.encode("utf-8") in raw
    for value in hidden:
        for form in _forms(value):
            assert form not in raw, f"a planted value was found in the database: {value[:12]}..."


def test_every_sealed_value_opens_only_at_its_binding(
    app: FastAPI, client: TestClient, database: Database
) -> None:
    _plant(app, client, _planted())
    keyring: Keyring = app.state.keyring
    opened = 0

    with database.reader() as session:
        for field in sealed_fields():
            model = field.model
            envelope_column = getattr(model, field.envelope)
            for row_id, data in session.execute(
                select(model.id, envelope_column).where(envelope_column.is_not(None))
            ):
                own = Binding(field.table, row_id, field.field, FIELD_VERSION)
                open_plaintext(keyring, data, own)
                opened += 1
                with pytest.raises(CiphertextInvalid):
                    open_plaintext(keyring, data, Binding(field.table, row_id, "moved", 1))
                with pytest.raises(CiphertextInvalid):
                    open_plaintext(keyring, data, Binding(field.table, row_id + 1, field.field, 1))

    # Two users with an email each, one seed and one pending seed, and the sessions' two fields.
    assert opened >= 2 + 2 + 2 * 2
