"""Fixtures for the vault: a key directory made as `llero init` makes it, and its keyring; the
external backends' endpoints (the Vault test server, moto's server, a closed port), and a
database whose sessions can write audit records. Every endpoint is on 127.0.0.1."""

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import select

from llero.audit.events import AuditEvent
from llero.audit.keys import attach_keys_to_factory, load_audit_keys
from llero.audit.models import AuditRecord
from llero.config.keyfiles import create_key_files, make_private_dir
from llero.storage.db import Database
from llero.vault.keyring import Keyring, load_keyring
from tests.vault.hashicorp_server import VaultTestServer

PLANTED = "sk-live-PLANTED-7d41c0a9e35b42f8b6d1e0c2a9f83b57"
REGION = "eu-west-1"
FAKE_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
FAKE_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "keys"
    make_private_dir(path.parent)
    create_key_files(path)
    return path


@pytest.fixture
def keyring(keys_dir: Path) -> Keyring:
    return load_keyring(keys_dir)


@pytest.fixture
def vault_server() -> Iterator[VaultTestServer]:
    server = VaultTestServer()
    server.state.transit_keys["llero"] = bytes(range(32))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but not listening, so a connection is refused at once
    and nothing else can take the port meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and no instance metadata, so boto3 can reach nothing but the endpoint
    each test names on 127.0.0.1."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@pytest.fixture
def moto_endpoint(aws_environment: None) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    yield f"http://{host}:{port}"
    server.stop()


def aws_client(endpoint: str, service: str) -> object:
    """A client of the test's own, to look at what Llero left in moto."""
    return boto3.session.Session().client(service, region_name=REGION, endpoint_url=endpoint)


@pytest.fixture
def audited_database(database: Database, keys_dir: Path) -> Database:
    attach_keys_to_factory(database.sessions, load_audit_keys(keys_dir))
    return database


def backend_failures(database: Database) -> list[tuple[str | None, dict[str, object]]]:
    """Return (target id, detail) of every vault:backend_failed record, oldest first."""
    with database.reader() as session:
        rows = session.execute(
            select(AuditRecord.target_id, AuditRecord.detail)
            .where(AuditRecord.event == AuditEvent.VAULT_BACKEND_FAILED.value)
            .order_by(AuditRecord.sequence)
        ).all()
    return [(target_id, json.loads(detail)) for target_id, detail in rows]
