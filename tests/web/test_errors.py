"""Unexpected errors: the client gets a bare 500 with a request id, the log gets the detail under
the same id, and nothing the failed request wrote is kept."""

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient

from llero.config.settings import Environment, LogFormat, Settings
from llero.logs import configure_logging
from llero.storage.db import Database
from tests.web.probes import PLANTED_SECRET, build_probe_app, category_count

# Fragments of the probe's exception; none may reach a client.
LEAKS = ("Traceback", "RuntimeError", "SELECT", "password", PLANTED_SECRET, "/srv/llero", ".py")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _log_json_to_stderr(settings: Settings) -> None:
    """Log as `llero serve` does, to the stderr that capsys captures.

    Called in the test body: configure_logging binds the current sys.stderr, and pytest swaps it
    between the setup and call phases.
    """
    configure_logging(settings.model_copy(update={"log_format": LogFormat.JSON}))


def _log_entries(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_unhandled_error_returns_generic_body(probe_client: TestClient) -> None:
    response = probe_client.get("/probe/fail")

    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", request_id)
    assert response.json() == {
        "error": "internal_error",
        "message": "internal error",
        "request_id": request_id,
    }
    for leak in LEAKS:
        assert leak not in response.text, leak


def test_unhandled_error_logged_with_request_id_route_and_stack(
    probe_client: TestClient,
    settings: Settings,
    restore_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _log_json_to_stderr(settings)

    response = probe_client.get("/probe/fail")

    request_id = response.json()["request_id"]
    entries = _log_entries(capsys.readouterr().err)
    failures = [entry for entry in entries if entry["event"] == "request_failed"]
    assert len(failures) == 1
    failure = failures[0]
    assert failure["request_id"] == request_id
    assert failure["route"] == "/probe/fail"
    assert failure["level"] == "error"
    assert failure["method"] == "GET"
    # ISO 8601 in UTC, so lines from several hosts sort and compare without conversion.
    assert failure["timestamp"].endswith("Z")
    assert "Traceback (most recent call last)" in failure["exception"]
    assert "RuntimeError" in failure["exception"]
    assert "in fail" in failure["exception"]

    summaries = [entry for entry in entries if entry["event"] == "request"]
    assert [entry["status"] for entry in summaries] == [500]
    assert summaries[0]["request_id"] == request_id


def test_request_log_names_route_template_not_path(
    probe_client: TestClient,
    settings: Settings,
    restore_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _log_json_to_stderr(settings)

    probe_client.get(f"/no-such-route/{PLANTED_SECRET}?token={PLANTED_SECRET}")

    stderr = capsys.readouterr().err
    summaries = [entry for entry in _log_entries(stderr) if entry["event"] == "request"]
    assert [entry["route"] for entry in summaries] == ["unmatched"]
    assert PLANTED_SECRET not in stderr


def test_unhandled_error_stays_generic_in_debug_mode(
    settings: Settings, database: Database
) -> None:
    debug_settings = settings.model_copy(
        update={"environment": Environment.DEVELOPMENT, "debug": True}
    )
    app = build_probe_app(debug_settings, database)

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/probe/fail")

    assert response.status_code == 500
    assert set(response.json()) == {"error", "message", "request_id"}
    for leak in LEAKS:
        assert leak not in response.text, leak


def test_unhandled_error_rolls_back_writes(probe_client: TestClient, database: Database) -> None:
    response = probe_client.post("/probe/category-fail")

    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert category_count(database) == 0


def test_domain_error_rolls_back_writes(probe_client: TestClient, database: Database) -> None:
    response = probe_client.post("/probe/category-refuse")

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert response.json()["message"] == "probe refused after writing"
    assert category_count(database) == 0


def test_successful_write_is_committed(probe_client: TestClient, database: Database) -> None:
    response = probe_client.post("/probe/category")

    assert response.status_code == 200
    assert category_count(database) == 1


def test_request_log_names_full_template_of_included_route(
    client: TestClient,
    settings: Settings,
    restore_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _log_json_to_stderr(settings)

    client.get("/api/tools/987654")

    summaries = [
        entry for entry in _log_entries(capsys.readouterr().err) if entry["event"] == "request"
    ]
    assert [entry["route"] for entry in summaries] == ["/api/tools/{tool_id}"]
