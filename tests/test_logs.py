"""The log file gets redacted JSON lines from structlog and the standard library alike, rotates by
size and by age, keeps the configured number of files, and every file is mode 0600."""

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llero.config.settings import LogFormat, Settings
from llero.errors import SettingsError
from llero.logs import PrivateRotatingFileHandler, close_logging, configure_logging
from llero.storage.db import Database
from llero.web.app import create_app
from tests.conftest import FixtureUser

PLANTED = {
    "openai": "sk-proj-Pl4ntedLogOpenAi0123456789abcdef",
    "anthropic": "sk-ant-api03-Pl4ntedLogAnthropic-0123456789",
    "jwt": "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJQbDRudGVkIn0.UGw0bnRlZFNpZ25hdHVyZQ",
    "llero": "llero_pat_Pl4ntedLogLleroToken0123456789abcdefghijkABCDEF",
    "bearer": "Pl4ntedLogBearerValue",
    "password": "Pl4nted log passphrase",
    "cookie": "Pl4ntedLogCookieValue",
}


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    close_logging()
    structlog.reset_defaults()


def _configure(settings: Settings, path: Path, **changes: Any) -> Settings:
    configured = settings.model_copy(update={"log_file": path, **changes})
    configure_logging(configured)
    return configured


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _fail_with_key() -> None:
    raise RuntimeError(f"provider answered 401 for {PLANTED['openai']}")


@pytest.mark.usefixtures("restore_logging")
def test_planted_secrets_never_reach_file(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Earlier tests in the same process may have configured these loggers through logging.config
    # (a test server started with uvicorn's own log config stops their propagation, say).
    for name in ("uvicorn", "uvicorn.error", "sqlalchemy.pool"):
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
    path = tmp_path / "llero.log"
    _configure(settings, path)
    log = structlog.get_logger("llero.test")

    log.info(f"calling the provider with {PLANTED['anthropic']}")
    log.info("signed in", password=PLANTED["password"], api_key=PLANTED["openai"])
    log.info("request", headers={"Authorization": f"Bearer {PLANTED['bearer']}"})
    log.info("nested", context={"outer": [{"note": f"token {PLANTED['jwt']}"}]})
    log.info("cookie", cookie=f"llero_session={PLANTED['cookie']}")
    log.warning("token rejected", token_prefix=PLANTED["llero"][:30], value=PLANTED["llero"])
    try:
        _fail_with_key()
    except RuntimeError:
        log.exception("provider_failed")
    logging.getLogger("uvicorn.error").warning(
        "bad header %s from client", f"Authorization: Bearer {PLANTED['bearer']}"
    )
    try:
        _fail_with_key()
    except RuntimeError:
        logging.getLogger("sqlalchemy.pool").exception("checkout failed")
    close_logging()

    text = path.read_text(encoding="utf-8")
    for name, value in PLANTED.items():
        assert value not in text, name
    entries = _lines(path)
    assert len(entries) == 9
    assert all({"timestamp", "level", "event"} <= entry.keys() for entry in entries)
    assert entries[1]["password"] == "[redacted]"
    assert "Traceback" in entries[6]["exception"]
    assert "_fail_with_key" in entries[6]["exception"]
    assert entries[7]["logger"] == "uvicorn.error"
    assert "Traceback" in entries[8]["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_request_log_carries_fields_not_query_token(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "llero.log"
    app = create_app(_configure(settings, path), database)

    with TestClient(app) as client:
        response = client.get(f"/api/tools?access_token={PLANTED['llero']}")
    close_logging()

    assert PLANTED["llero"] not in path.read_text(encoding="utf-8")
    (entry,) = [entry for entry in _lines(path) if entry["event"] == "request"]
    assert entry["request_id"] == response.headers["x-request-id"]
    assert entry["route"] == "/api/tools"
    assert entry["status"] == 401
    assert entry["duration_ms"] >= 0
    assert entry["level"] == "info"


@pytest.mark.usefixtures("restore_logging")
def test_failed_request_logs_redacted_traceback(
    app: FastAPI, admin: FixtureUser, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "llero.log"
    _configure(settings, path)

    async def fail() -> None:
        _fail_with_key()

    app.add_api_route("/probe/provider", fail)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/probe/provider", headers=admin.headers)
    close_logging()

    assert response.status_code == 500
    assert PLANTED["openai"] not in path.read_text(encoding="utf-8")
    (failure,) = [entry for entry in _lines(path) if entry["event"] == "request_failed"]
    assert failure["request_id"] == response.headers["x-request-id"]
    assert "provider answered 401 for [redacted]" in failure["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_revoke_all_log_keeps_counts(
    app: FastAPI, admin: FixtureUser, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "llero.log"
    _configure(settings, path)

    with TestClient(app) as client:
        response = client.post(
            "/api/incident/revoke-all", json={"confirm": "revoke-all"}, headers=admin.headers
        )
    close_logging()

    assert response.status_code == 200, response.text
    (entry,) = [entry for entry in _lines(path) if entry["event"] == "incident:revoke_all"]
    assert entry["session_count"] == response.json()["sessions"]
    assert entry["api_token_count"] == response.json()["api_tokens"]
    assert isinstance(entry["code_count"], int)


@pytest.mark.usefixtures("restore_logging")
def test_console_format_redacts_too(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(settings, tmp_path / "llero.log", log_format=LogFormat.CONSOLE)

    structlog.get_logger("llero.test").info("dev line", api_key=PLANTED["openai"])
    close_logging()

    stderr = capsys.readouterr().err
    assert "dev line" in stderr
    assert "api_key=[redacted]" in stderr
    assert PLANTED["openai"] not in stderr
    assert not stderr.lstrip().startswith("{")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("restore_logging")
def test_file_rotates_by_size_keeping_backups(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "llero.log"
    old_umask = os.umask(0o022)
    try:
        _configure(settings, path, log_file_max_bytes=2048, log_file_backups=3)
        log = structlog.get_logger("llero.test")
        for index in range(200):
            log.info("filler", index=index, padding="x" * 40)
    finally:
        os.umask(old_umask)
    close_logging()

    files = sorted(tmp_path.glob("llero.log*"))
    assert [file.name for file in files] == [
        "llero.log",
        "llero.log.1",
        "llero.log.2",
        "llero.log.3",
    ]
    assert all(_mode(file) == 0o600 for file in files)
    assert all(file.stat().st_size <= 2048 for file in files)
    # The newest records are in the live file, the oldest kept ones in the last backup.
    assert _lines(path)[-1]["index"] == 199
    assert _lines(files[-1])[0]["index"] < _lines(files[1])[0]["index"]


@pytest.mark.usefixtures("restore_logging")
def test_file_rotates_when_interval_ends(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "llero.log"
    _configure(settings, path, log_file_rotate_hours=1)
    (handler,) = [
        found
        for found in logging.getLogger().handlers
        if isinstance(found, PrivateRotatingFileHandler)
    ]
    log = structlog.get_logger("llero.test")
    log.info("before")

    handler.rollover_at -= 3600
    log.info("after")
    close_logging()

    assert [entry["event"] for entry in _lines(tmp_path / "llero.log.1")] == ["before"]
    assert [entry["event"] for entry in _lines(path)] == ["after"]
    assert _mode(tmp_path / "llero.log.1") == 0o600
    assert handler.rollover_at > 0


@pytest.mark.usefixtures("restore_logging")
def test_existing_file_narrowed_to_owner(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "llero.log"
    path.write_text("")
    path.chmod(0o644)

    _configure(settings, path)
    close_logging()

    assert _mode(path) == 0o600


@pytest.mark.usefixtures("restore_logging")
def test_symlinked_log_file_rejected(settings: Settings, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    link = tmp_path / "llero.log"
    link.symlink_to(target)

    with pytest.raises(SettingsError) as raised:
        _configure(settings, link)

    assert raised.value.message.startswith("invalid setting LLERO_LOG_FILE: cannot open")
    assert target.read_text() == ""


@pytest.mark.usefixtures("restore_logging")
def test_missing_log_directory_rejected(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as raised:
        _configure(settings, tmp_path / "missing" / "llero.log")

    assert "its directory must exist" in raised.value.message


@pytest.mark.usefixtures("restore_logging")
def test_other_libraries_log_from_warning(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "llero.log"
    _configure(settings, path, log_level="debug")

    # alembic sets its own logger to info, as its default logging configuration does.
    monkeypatch.setattr(logging.getLogger("alembic.runtime.migration"), "level", logging.INFO)
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    logging.getLogger("httpx").info("HTTP Request: GET http://127.0.0.1/")
    logging.getLogger("httpx").warning("retrying")
    structlog.get_logger("llero.test").debug("llero detail")
    close_logging()

    assert [entry["event"] for entry in _lines(path)] == ["retrying", "llero detail"]


@pytest.mark.usefixtures("restore_logging")
def test_print_logger_fallback_still_redacts(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(settings, tmp_path / "llero.log")
    # What capture_logs leaves behind when the configuration was reset inside its block.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory())

    structlog.get_logger("llero.test").info("fallback", api_key=PLANTED["openai"])

    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(line)["api_key"] == "[redacted]"
    assert PLANTED["openai"] not in line
