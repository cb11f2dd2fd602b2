"""Fixtures for the HTTP edge tests: an app with the probe routes and a client for it."""

from collections.abc import Iterator

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llero.config.settings import Settings
from llero.storage.db import Database
from tests.web.probes import build_probe_app


@pytest.fixture(autouse=True)
def _captured_logs() -> Iterator[list[structlog.typing.EventDict]]:
    """Keep log events in memory. Unconfigured structlog renders each exception as a rich
    traceback with local variables, which takes seconds per 500 response."""
    with structlog.testing.capture_logs() as events:
        yield events


@pytest.fixture
def probe_app(settings: Settings, database: Database) -> FastAPI:
    return build_probe_app(settings, database)


@pytest.fixture
def probe_client(probe_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(probe_app, raise_server_exceptions=False) as client:
        yield client
