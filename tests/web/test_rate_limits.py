"""Rate limits per client address, user, API token and agent, in memory and in the Redis on
127.0.0.1:6379: past a limit the response is 429 with Retry-After and the usual error body, logged,
and for credential routes audited once per window."""

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from llero.access.roles import Role
from llero.audit.events import AuditEvent
from llero.audit.keys import attach_keys, load_audit_keys
from llero.audit.service import AuditFilter, query
from llero.config.settings import Settings, load_settings
from llero.errors import RateLimited, SettingsError
from llero.storage.db import Database
from llero.web.app import create_app
from llero.web.ratelimit import LimitExceeded, RateLimiter, RateLimitPolicy, RequestLimits
from tests.conftest import create_test_user

REDIS_URL = "redis://127.0.0.1:6379/0"
SIGNIN = {"email": "nobody@example.com", "password": "not the password of anyone"}

MakeApp = Callable[..., FastAPI]


def _limited(settings: Settings, **limits: Any) -> Settings:
    defaults = {
        "rate_limit_enabled": True,
        "rate_limit_key_prefix": f"llero-test-{secrets.token_hex(6)}",
        "rate_limit_address": "1000/minute",
        "rate_limit_auth": "3/minute",
        "rate_limit_read": "5/minute",
        "rate_limit_write": "5/minute",
        "rate_limit_export": "2/minute",
        "rate_limit_agent": "4/minute",
    }
    return settings.model_copy(update={**defaults, **limits})


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test runs on both storages; Redis keys are removed by the prefix afterwards."""
    if request.param == "memory":
        yield "memory://"
        return
    yield REDIS_URL


@pytest.fixture
def make_app(settings: Settings, database: Database, storage: str) -> Iterator[MakeApp]:
    prefixes: list[str] = []

    def make(**limits: Any) -> FastAPI:
        limited = _limited(settings, **limits)
        limited = limited.model_copy(update={"rate_limit_storage": SecretStr(storage)})
        prefixes.append(limited.rate_limit_key_prefix)
        return create_app(limited, database)

    yield make
    if storage == REDIS_URL:
        client = redis.Redis.from_url(REDIS_URL)
        for prefix in prefixes:
            for key in client.scan_iter(match=f"*{prefix}*"):
                client.delete(key)
        client.close()


def _audited(app: FastAPI, event: AuditEvent) -> list[Any]:
    database: Database = app.state.database
    with database.transaction() as session:
        attach_keys(session, load_audit_keys(app.state.settings.keys_dir))
        return query(session, AuditFilter(events=(event,))).records


def test_signin_flood_gets_429_with_retry_after(make_app: MakeApp) -> None:
    app = make_app()

    with (
        TestClient(app, raise_server_exceptions=False) as client,
        structlog.testing.capture_logs() as logs,
    ):
        statuses = [client.post("/api/auth/signin", json=SIGNIN).status_code for _ in range(3)]
        refused = client.post("/api/auth/signin", json=SIGNIN)

    assert 429 not in statuses
    assert refused.status_code == 429
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert refused.json() == {
        "error": "rate_limited",
        "message": (
            "too many requests: the sign-in and token requests from this client address reached "
            "LLERO_RATE_LIMIT_AUTH (3 per 1 minute); retry after "
            + ("1 second" if retry_after == 1 else f"{retry_after} seconds")
        ),
        "request_id": refused.headers["x-request-id"],
    }
    exceeded = [entry for entry in logs if entry["event"] == "rate_limit:exceeded"]
    assert exceeded[0]["group"] == "auth"
    assert exceeded[0]["scope"] == "address"
    assert exceeded[0]["limit"] == "3 per 1 minute"


def test_signin_flood_audited_once_per_window(make_app: MakeApp) -> None:
    app = make_app()

    with TestClient(app, raise_server_exceptions=False) as client:
        statuses = [client.post("/api/auth/signin", json=SIGNIN).status_code for _ in range(8)]

    assert statuses.count(429) == 5
    (event,) = _audited(app, AuditEvent.RATE_LIMIT_EXCEEDED)
    assert event.actor_kind == "system"
    assert event.actor_id == "rate_limiter"
    assert event.detail_data() == {
        "group": "auth",
        "limit": "3 per 1 minute",
        "permission": "auth:signin",
        "scope": "address",
    }


def test_forwarded_for_ignored_from_untrusted_peer(make_app: MakeApp) -> None:
    app = make_app()

    with TestClient(app, raise_server_exceptions=False, client=("192.0.2.10", 40000)) as client:
        statuses = [
            client.post(
                "/api/auth/signin", json=SIGNIN, headers={"X-Forwarded-For": f"198.51.100.{n}"}
            ).status_code
            for n in range(30)
        ]

    assert statuses.count(429) == 27


def test_forwarded_for_counted_behind_trusted_proxy(make_app: MakeApp) -> None:
    app = make_app(trusted_proxies=["192.0.2.10"])

    with TestClient(app, raise_server_exceptions=False, client=("192.0.2.10", 40000)) as client:
        # Each attempt names its own account, so the sign-in throttle per account stays out of it.
        distinct = [
            client.post(
                "/api/auth/signin",
                json={**SIGNIN, "email": f"nobody{n}@example.com"},
                headers={"X-Forwarded-For": f"198.51.100.{n}"},
            ).status_code
            for n in range(10)
        ]
        same = [
            client.post(
                "/api/auth/signin", json=SIGNIN, headers={"X-Forwarded-For": "198.51.100.200"}
            ).status_code
            for _ in range(4)
        ]

    assert 429 not in distinct
    assert same[-1] == 429


def test_read_limit_per_user(make_app: MakeApp) -> None:
    app = make_app()
    first = create_test_user(app, role=Role.VIEWER)
    second = create_test_user(app, role=Role.VIEWER)

    with TestClient(app, raise_server_exceptions=False) as client:
        statuses = [client.get("/api/tools", headers=first.headers).status_code for _ in range(6)]
        other = client.get("/api/tools", headers=second.headers)

    assert statuses == [200] * 5 + [429]
    assert other.status_code == 200


def test_api_token_has_own_budget(make_app: MakeApp) -> None:
    app = make_app(rate_limit_write="20/minute")
    owner = create_test_user(app, role=Role.DEVELOPER)

    with (
        TestClient(app, raise_server_exceptions=False) as client,
        structlog.testing.capture_logs() as logs,
    ):
        tokens = [
            client.post(
                "/api/tokens",
                json={"name": f"t{n}", "scopes": ["tool:read"]},
                headers=owner.headers,
            ).json()["token"]
            for n in range(2)
        ]
        first = {"Authorization": f"Bearer {tokens[0]}"}
        second = {"Authorization": f"Bearer {tokens[1]}"}
        answers = [client.get("/api/tools", headers=first) for _ in range(6)]
        other_token = client.get("/api/tools", headers=second)
        session = client.get("/api/tools", headers=owner.headers)

    assert [answer.status_code for answer in answers] == [200] * 5 + [429]
    # The message names the limit and its setting, not the token.
    message = answers[-1].json()["message"]
    assert message.startswith(
        "too many requests: the read requests of this API token reached LLERO_RATE_LIMIT_READ"
    )
    assert tokens[0] not in message
    (exceeded,) = [entry for entry in logs if entry["event"] == "rate_limit:exceeded"]
    # The log names the token's owner.
    assert exceeded["scope"] == "token"
    assert exceeded["user_id"] == owner.id
    assert other_token.status_code == 200
    assert session.status_code == 200


def test_export_group_limited_apart_from_reads(make_app: MakeApp) -> None:
    app = make_app()
    admin = create_test_user(app, role=Role.ADMIN)

    with TestClient(app, raise_server_exceptions=False, headers=admin.headers) as client:
        exports = [client.get("/api/audit/export").status_code for _ in range(3)]
        read = client.get("/api/audit/events")

    assert exports == [200, 200, 429]
    assert read.status_code == 200


def test_address_limit_applies_before_authentication(make_app: MakeApp) -> None:
    app = make_app(rate_limit_address="4/minute")

    with TestClient(app, raise_server_exceptions=False) as client:
        statuses = [
            client.get("/api/tools", headers={"Authorization": "Bearer forged"}).status_code
            for _ in range(5)
        ]

    assert statuses == [401] * 4 + [429]


def test_agent_limit_per_agent(make_app: MakeApp) -> None:
    app = make_app()
    limiter: RequestLimits = app.state.rate_limiter

    for _ in range(4):
        limiter.limiter.check_agent(7)
    with pytest.raises(LimitExceeded) as raised:
        limiter.limiter.check_agent(7)
    limiter.limiter.check_agent(8)

    assert raised.value.counter.scope == "agent"
    assert raised.value.counter.identity == "7"
    assert 1 <= raised.value.retry_after <= 60
    assert raised.value.message.startswith(
        "too many requests: the model calls of this agent reached LLERO_RATE_LIMIT_AGENT"
    )


def test_two_apps_share_redis_counters(settings: Settings, database: Database) -> None:
    shared = _limited(settings, rate_limit_storage=SecretStr(REDIS_URL))
    first, second = create_app(shared, database), create_app(shared, database)
    try:
        with (
            TestClient(first, raise_server_exceptions=False) as one,
            TestClient(second, raise_server_exceptions=False) as two,
        ):
            statuses = [
                client.post("/api/auth/signin", json=SIGNIN).status_code
                for client in (one, two, one, two)
            ]
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"*{shared.rate_limit_key_prefix}*"):
            client.delete(key)
        client.close()

    assert statuses[-1] == 429
    assert 429 not in statuses[:3]


def test_unreachable_storage_lets_requests_pass() -> None:
    policy = RateLimitPolicy.from_settings(_limited(Settings(_env_file=None)))  # type: ignore[call-arg]
    # Port 1 on loopback has no listener, so every call fails at once.
    limiter = RateLimiter("redis://127.0.0.1:1/0", policy, key_prefix="unreachable")

    with structlog.testing.capture_logs() as logs:
        for _ in range(10):
            limiter.check_agent(1)

    failures = [entry for entry in logs if entry["event"] == "rate_limit:storage_failed"]
    assert len(failures) == 1
    assert failures[0]["log_level"] == "error"
    assert "127.0.0.1:1" not in str(failures[0])


def test_disabled_limits_install_nothing(settings: Settings, database: Database) -> None:
    app = create_app(settings, database)

    assert not hasattr(app.state, "rate_limiter")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LLERO_RATE_LIMIT_AUTH", "ten per minute"),
        ("LLERO_RATE_LIMIT_READ", "5/fortnight"),
        ("LLERO_RATE_LIMIT_STORAGE", "http://user:Pl4ntedRedisPass@127.0.0.1/"),
    ],
)
def test_bad_rate_limit_setting_stops_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None)

    assert raised.value.message.startswith(f"invalid setting {variable}:")
    assert "Pl4ntedRedisPass" not in raised.value.message


@pytest.mark.parametrize(("seconds", "ending"), [(1, "after 1 second"), (45, "after 45 seconds")])
def test_rate_limited_message_counts_seconds(seconds: int, ending: str) -> None:
    assert str(RateLimited(seconds)).endswith(ending)
