"""The application factory: settings, database, middleware, error handlers and routers."""

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import llero
from llero.academy.egress_routes import router as egress_router
from llero.academy.provider_routes import router as provider_router
from llero.academy.routes import router as academy_router
from llero.academy.usage_routes import budget_router, usage_router
from llero.audit.keys import attach_keys_to_factory, load_audit_keys
from llero.audit.routes import router as audit_router
from llero.barracks.routes import router as barracks_router
from llero.command.brokers import LiveAcademy
from llero.command.compat import router as compat_router
from llero.command.engine import Engine
from llero.command.routes import router as command_router
from llero.config.keyfiles import MASTER_KEY
from llero.config.settings import KekSourceKind, Settings
from llero.forge.routes import router as forge_router
from llero.identity.email_routes import router as email_router
from llero.identity.routes import mount as mount_identity
from llero.incident.alert_mail import admin_addresses_in
from llero.incident.alerts import security_alerts_from
from llero.incident.routes import router as incident_router
from llero.logs import ensure_logging, get_logger
from llero.storage.db import Database
from llero.vault.backends import build_value_store
from llero.vault.fields import attach_field_keys, load_field_keys
from llero.vault.kek_sources import load_vault_keyring
from llero.vault.routes import router as vault_router
from llero.vault.service import VaultService
from llero.vault.unseal import UnsealThrottle
from llero.web import health
from llero.web.errors import install_error_handlers
from llero.web.middleware import (
    BodyLimitMiddleware,
    CorsMiddleware,
    EdgeMiddleware,
    HostMiddleware,
)
from llero.web.ratelimit import RateLimiter, RequestLimits
from llero.web.sealed import SealedVaultMiddleware

log = get_logger("llero.web")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # Provider connections are kept alive between runs; close them with the server's loop.
    await app.state.command_engine.aclose()
    # Alerts raised just before the stop are still sent, within the channels' timeouts.
    await asyncio.to_thread(app.state.alerts.close)
    # A worker process owns its database; it checkpoints SQLite's log one last time here.
    if getattr(app.state, "disposes_database", False):
        await asyncio.to_thread(app.state.database.dispose)
    log.info("server_stopped", process_id=os.getpid())


def create_app(settings: Settings, database: Database | None = None) -> FastAPI:
    """Build the app; the caller owns ``database`` when it passes one in."""
    app = FastAPI(
        title="Llero",
        lifespan=_lifespan,
        version=llero.__version__,
        # The built-in document and docs pages are replaced: the document by a route that names
        # its permission, the pages because they load scripts from a CDN that the CSP forbids.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    ensure_logging(settings)
    app.state.settings = settings
    app.state.database = database or Database(settings.resolved_database_url)
    # Every session of the app can record audit events; without the key nothing starts, so an
    # action can never run unaudited.
    attach_keys_to_factory(app.state.database.sessions, load_audit_keys(settings.keys_dir))
    # The vault's key-encryption keys. Without a master key, or when the external key service
    # fails, the keyring is sealed: nothing that needs encryption works until it is unsealed.
    app.state.keyring = load_vault_keyring(settings, app.state.database)
    # Every session gets the keyring, with the blind index key, to seal and open confidential
    # fields.
    attach_field_keys(
        app.state.database.sessions, load_field_keys(settings.keys_dir, app.state.keyring)
    )
    # Where secret values live (LLERO_VAULT_BACKEND). Routes use app.state.vault, so every
    # secret goes to the one configured store.
    app.state.value_store = build_value_store(settings, app.state.keyring)
    app.state.vault = VaultService(app.state.database, app.state.keyring, app.state.value_store)
    app.state.unseal_throttle = UnsealThrottle()
    if app.state.keyring.sealed and settings.vault_kek_source is KekSourceKind.FILE:
        # An external key source logs its own failure; this line is for a missing master key.
        log.warning(
            "vault_sealed",
            message="the vault is sealed: no master key in LLERO_MASTER_KEY or "
            f"{settings.keys_dir / MASTER_KEY}; only /healthz, /readyz and POST "
            "/api/vault/unseal answer until it is unsealed with the base64 master key",
        )

    if settings.rate_limit_enabled:
        app.state.rate_limiter = RequestLimits(RateLimiter.from_settings(settings))
    # Security alerts leave on background threads, to the webhook and by mail to the active
    # admins. Without either they are only logged.
    app.state.alerts = security_alerts_from(settings, admin_addresses_in(app.state.database))

    install_error_handlers(app)
    # Routes are matched in order, and /v1/chat/completions is the busiest one.
    app.include_router(compat_router)
    mount_identity(app, settings)
    app.include_router(email_router)
    app.include_router(health.router)
    app.include_router(vault_router)
    app.include_router(forge_router, prefix="/api")
    app.include_router(barracks_router, prefix="/api")
    app.include_router(provider_router, prefix="/api")
    app.include_router(egress_router, prefix="/api")
    app.include_router(usage_router, prefix="/api")
    app.include_router(budget_router, prefix="/api")
    app.include_router(academy_router, prefix="/api")
    app.include_router(command_router, prefix="/api")
    academy = LiveAcademy(settings, app.state.database, app.state.vault)
    limits = getattr(app.state, "rate_limiter", None)
    app.state.command_engine = Engine(
        app.state.database,
        app.state.keyring,
        academy,
        agent_limiter=None if limits is None else limits.limiter.check_agent,
    )
    app.include_router(audit_router, prefix="/api")
    app.include_router(incident_router, prefix="/api")

    # Starlette runs the middleware added last first, so this list reads innermost to outermost.
    app.add_middleware(SealedVaultMiddleware, keyring=app.state.keyring)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, max_depth=settings.max_json_depth
    )
    app.add_middleware(CorsMiddleware, allowed_origins=settings.allowed_origins)
    app.add_middleware(HostMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(EdgeMiddleware, tls=settings.tls_enabled)
    return app
