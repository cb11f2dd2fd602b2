"""Run the server: one process, or several worker processes sharing the port (LLERO_WORKERS).

With several workers, uvicorn's supervisor binds the port and starts each worker, which builds
its own app from the same environment (``worker_app``). What the workers must share lives in
the database (audit chain, sessions, throttles, configuration) or in Redis (rate limits).
``check_safe_to_serve`` therefore refuses in-memory rate limits and a log file that several
processes would rotate. ``serve`` refuses a vault that starts sealed, because an unseal request
would reach one worker only.
"""

import gc
import os
from typing import Any

import uvicorn
from fastapi import FastAPI

from llero.config.settings import Settings, load_settings
from llero.errors import LleroError
from llero.logs import configure_logging, get_logger
from llero.storage.db import Database
from llero.vault.kek_sources import load_vault_keyring
from llero.web.app import create_app

log = get_logger("llero.serve")

# uvicorn's own handlers would print unredacted text; without them its records reach the
# handlers of llero.logs.
_UVICORN_OPTIONS: dict[str, Any] = {
    "server_header": False,
    "proxy_headers": False,
    "log_level": "warning",
    "access_log": False,
    "log_config": None,
}


class SealedWithWorkers(LleroError):
    code = "invalid_setting"


def serve(settings: Settings, database: Database) -> None:
    """Serve until stopped; ``database`` is migrated, and disposed of here."""
    listen: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "ssl_certfile": settings.tls_certfile,
        "ssl_keyfile": settings.tls_keyfile,
    }
    if settings.workers == 1:
        app = serving_app(settings, database)
        # uvicorn ends a stop by SIGTERM by raising the signal again, which leaves no finally
        # block to run, so the app's shutdown disposes of the database.
        app.state.disposes_database = True
        try:
            uvicorn.run(app, **listen, **_UVICORN_OPTIONS)
        finally:
            database.dispose()
        return

    try:
        sealed = load_vault_keyring(settings, database).sealed
    finally:
        database.dispose()
    if sealed:
        raise SealedWithWorkers(
            "invalid setting LLERO_WORKERS: the vault would start sealed, and an unseal request "
            "reaches one worker only; give the master key at start or run one worker"
        )
    # Each worker loads the settings again from this environment, command-line options included.
    os.environ["LLERO_HOST"] = settings.host
    os.environ["LLERO_PORT"] = str(settings.port)
    uvicorn.run(
        f"{__name__}:worker_app",
        factory=True,
        workers=settings.workers,
        **listen,
        **_UVICORN_OPTIONS,
    )


def serving_app(settings: Settings, database: Database) -> FastAPI:
    """Build the app of a server process and prepare the process to serve it."""
    configure_logging(settings)
    app = create_app(settings, database)
    log.info(
        "server_starting",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        process_id=os.getpid(),
    )
    # What start-up made lives as long as the server. Frozen, it is left out of the garbage
    # collector's full passes, which took 60 to 90 ms with it, and no request is served then.
    gc.collect()
    gc.freeze()
    return app


def worker_app() -> FastAPI:
    """Build the app in one of several worker processes; uvicorn calls this in each."""
    settings = load_settings()
    database = Database(settings.resolved_database_url, background_checkpoints=True)
    app = serving_app(settings, database)
    app.state.disposes_database = True
    return app
