"""Sign-in throttling: progressive delays, then temporary locks, per account and per address.

Time is moved on the app's identity clock instead of sleeping; each attempt of an attacker
advances it by one second, so 1,000 attempts span about 17 minutes.
"""

import dataclasses
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from llero.access.roles import Role
from llero.audit.events import AuditEvent
from llero.audit.service import AuditFilter, query
from llero.config.settings import Settings
from llero.identity.context import IdentityContext
from llero.identity.errors import TooManyAttempts
from llero.identity.models import LoginThrottle, ThrottleScope
from llero.identity.throttle import (
    MAX_DELAY,
    MAX_LOCKOUT,
    ThrottleLimits,
    ThrottlePolicy,
    purge_expired,
)
from llero.storage.db import Database
from llero.web.app import create_app
from tests.conftest import FixtureUser, create_test_user
from tests.identity.helpers import (
    PASSWORD,
    FrozenClock,
    freeze_clock,
    password_hash,
    totp_code,
)

WRONG_PASSWORD = "plum kettle orbit lantern harbor"
PROXY = "127.0.0.1"
ATTEMPTS = 1000


@pytest.fixture
def proxied_app(settings: Settings, database: Database) -> FastAPI:
    """An app behind a trusted proxy at 127.0.0.1, so X-Forwarded-For names the client."""
    return create_app(settings.model_copy(update={"trusted_proxies": [PROXY]}), database)


@pytest.fixture
def proxied_client(proxied_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(
        proxied_app, raise_server_exceptions=False, client=(PROXY, 50000)
    ) as test_client:
        yield test_client


def _attempt(
    client: TestClient, clock: FrozenClock, email: str, address: str, password: str
) -> httpx.Response:
    clock.advance(timedelta(seconds=1))
    return _post_sign_in(client, email, password, address)


def _post_sign_in(
    client: TestClient, email: str, password: str, address: str = "198.51.100.1"
) -> httpx.Response:
    return client.post(
        "/api/auth/signin",
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": address},
    )


def _attack(
    client: TestClient, clock: FrozenClock, email: str, addresses: list[str]
) -> Counter[int]:
    statuses: Counter[int] = Counter()
    for index in range(ATTEMPTS):
        clock.advance(timedelta(seconds=1))
        response = _post_sign_in(client, email, WRONG_PASSWORD, addresses[index % len(addresses)])
        statuses[response.status_code] += 1
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
    return statuses


def _lock_account(client: TestClient, clock: FrozenClock, email: str) -> httpx.Response:
    """Fail until the account is locked, waiting out each delay; return the first lock answer."""
    policy: ThrottlePolicy = client.app.state.identity.throttle  # type: ignore[attr-defined]
    for _ in range(policy.account.lock_after):
        response = _post_sign_in(client, email, WRONG_PASSWORD)
        if response.status_code == 429:
            clock.advance(timedelta(seconds=int(response.headers["Retry-After"])))
            response = _post_sign_in(client, email, WRONG_PASSWORD)
        assert response.status_code == 401
    locked = _post_sign_in(client, email, WRONG_PASSWORD)
    assert locked.status_code == 429
    return locked


def _user(app: FastAPI, **options: object) -> FixtureUser:
    return create_test_user(app, password_hash=password_hash(), **options)  # type: ignore[arg-type]


def _body(response: httpx.Response) -> dict[str, object]:
    body = dict(response.json())
    body.pop("request_id")
    return body


def test_thousand_wrong_passwords_one_address(
    proxied_app: FastAPI, proxied_client: TestClient
) -> None:
    clock = freeze_clock(proxied_app)
    user = _user(proxied_app, role=Role.DEVELOPER, mfa=False)

    statuses = _attack(proxied_client, clock, user.email, ["198.51.100.7"])

    # 3 free failures, 6 delayed ones, the tenth locks for 15 minutes, and after it two more
    # 30-second delays fit into the 1,000 seconds.
    assert statuses[401] == 12
    assert statuses[429] == ATTEMPTS - 12
    assert set(statuses) == {401, 429}


def test_thousand_wrong_passwords_fifty_addresses(
    proxied_app: FastAPI, proxied_client: TestClient
) -> None:
    clock = freeze_clock(proxied_app)
    user = _user(proxied_app, role=Role.DEVELOPER, mfa=False)
    addresses = [f"198.51.100.{index}" for index in range(1, 51)]

    statuses = _attack(proxied_client, clock, user.email, addresses)

    # Spreading the guesses over addresses does not help: the account counts them all.
    assert statuses[401] == 12
    assert statuses[429] == ATTEMPTS - 12


def test_spraying_many_emails_locks_address(
    proxied_app: FastAPI, proxied_client: TestClient
) -> None:
    clock = freeze_clock(proxied_app)
    context: IdentityContext = proxied_app.state.identity
    context.throttle = dataclasses.replace(context.throttle, address=ThrottleLimits(3, 10))

    checked = 0
    for index in range(200):
        response = _attempt(
            proxied_client, clock, f"nobody-{index}@example.com", "203.0.113.9", WRONG_PASSWORD
        )
        checked += response.status_code == 401
    other = _attempt(proxied_client, clock, "nobody-x@example.com", "203.0.113.10", WRONG_PASSWORD)

    # Three free, six delayed, the tenth locks the address for 15 minutes, which outlasts the run.
    assert checked == 10
    assert other.status_code == 401


def test_right_password_refused_while_locked(
    proxied_app: FastAPI, proxied_client: TestClient
) -> None:
    clock = freeze_clock(proxied_app)
    user = _user(proxied_app, role=Role.DEVELOPER, mfa=False)
    locked = _lock_account(proxied_client, clock, user.email)

    right = _post_sign_in(proxied_client, user.email, PASSWORD)

    assert right.status_code == 429
    assert _body(right) == _body(locked)
    assert right.headers["Retry-After"] == locked.headers["Retry-After"] == str(15 * 60)


def test_lock_expires_and_success_resets(proxied_app: FastAPI, proxied_client: TestClient) -> None:
    clock = freeze_clock(proxied_app)
    user = _user(proxied_app, role=Role.DEVELOPER, mfa=False)
    _lock_account(proxied_client, clock, user.email)
    clock.advance(timedelta(minutes=15))

    right = _post_sign_in(proxied_client, user.email, PASSWORD)
    wrong = [_post_sign_in(proxied_client, user.email, WRONG_PASSWORD) for _ in range(3)]

    assert right.status_code == 200
    assert [response.status_code for response in wrong] == [401, 401, 401]


def test_locked_unknown_email_answers_alike(
    proxied_app: FastAPI, proxied_client: TestClient
) -> None:
    clock = freeze_clock(proxied_app)
    user = _user(proxied_app, role=Role.DEVELOPER, mfa=False)

    known = _lock_account(proxied_client, clock, user.email)
    unknown = _lock_account(proxied_client, clock, "nobody@example.com")

    assert _body(known) == _body(unknown)
    assert known.headers["Retry-After"] == unknown.headers["Retry-After"]
    assert set(known.headers) == set(unknown.headers)


def test_address_failures_do_not_lock_others(
    proxied_app: FastAPI, proxied_client: TestClient
) -> None:
    clock = freeze_clock(proxied_app)
    user = _user(proxied_app, role=Role.DEVELOPER, mfa=False)
    _lock_account(proxied_client, clock, "victim@example.com")

    response = _post_sign_in(proxied_client, user.email, PASSWORD)

    # The account of victim@ is locked, the shared address only delayed after 11 failures, and
    # the delay has passed while waiting out the account's delays.
    assert response.status_code == 200


def test_forwarded_for_ignored_without_trusted_proxy(
    app: FastAPI, anonymous_client: TestClient
) -> None:
    clock = freeze_clock(app)
    context: IdentityContext = app.state.identity
    context.throttle = dataclasses.replace(context.throttle, address=ThrottleLimits(1, 3))

    statuses = []
    for index in range(4):
        clock.advance(timedelta(seconds=1))
        response = anonymous_client.post(
            "/api/auth/signin",
            json={"email": f"nobody-{index}@example.com", "password": WRONG_PASSWORD},
            headers={"X-Forwarded-For": f"198.51.100.{index}"},
        )
        statuses.append(response.status_code)

    # The header is the client's own claim here, so all four count against the one peer.
    assert statuses == [401, 401, 401, 429]


def test_wrong_codes_lock_second_factor(
    proxied_app: FastAPI, proxied_client: TestClient, database: Database
) -> None:
    clock = freeze_clock(proxied_app)
    user = _user(proxied_app, role=Role.ADMIN, mfa=True)

    # Each password step and each wrong code counts against the account; waiting 31 seconds
    # between attempts outlasts every delay, so only the lock after ten failures refuses.
    statuses = []
    for _ in range(3):
        clock.advance(timedelta(seconds=31))
        started = _post_sign_in(proxied_client, user.email, PASSWORD)
        assert started.status_code == 200
        challenge = started.json()["challenge"]
        for _ in range(3):
            clock.advance(timedelta(seconds=31))
            right = totp_code(database, user.id, clock())
            wrong = f"{(int(right) + 1) % 1_000_000:06d}"
            response = proxied_client.post(
                "/api/auth/signin/mfa", json={"challenge": challenge, "code": wrong}
            )
            statuses.append(response.status_code)
    right_code = proxied_client.post(
        "/api/auth/signin/mfa",
        json={"challenge": challenge, "code": totp_code(database, user.id, clock())},
    )
    password_step = _post_sign_in(proxied_client, user.email, PASSWORD)

    assert statuses == [401] * 7 + [429, 429]
    assert right_code.status_code == 429
    assert password_step.status_code == 429


def test_throttled_attempt_audited(
    proxied_app: FastAPI, proxied_client: TestClient, database: Database
) -> None:
    clock = freeze_clock(proxied_app)
    user = _user(proxied_app, role=Role.DEVELOPER, mfa=False)
    _lock_account(proxied_client, clock, user.email)

    with database.reader() as session:
        records = query(session, AuditFilter(events=(AuditEvent.USER_LOGIN_FAILED,))).records

    reasons = Counter(record.detail_data()["reason"] for record in records)
    # Six attempts came during a delay (after failures 4 to 9) and one during the lock.
    assert reasons == {"wrong_password": 10, "locked": 7}
    refusals = [record.detail_data() for record in records]
    refusals = [detail for detail in refusals if detail["reason"] == "locked"]
    assert {detail["throttle_scope"] for detail in refusals} == {"account"}
    assert max(detail["retry_after_seconds"] for detail in refusals) == 15 * 60
    assert {record.client_address for record in records} == {"198.51.100.1"}
    assert {record.actor_id for record in records} == {str(user.id)}


@pytest.mark.parametrize(
    ("scope", "failures", "expected"),
    [
        (ThrottleScope.ACCOUNT, 3, None),
        (ThrottleScope.ACCOUNT, 4, timedelta(seconds=1)),
        (ThrottleScope.ACCOUNT, 6, timedelta(seconds=4)),
        (ThrottleScope.ACCOUNT, 9, MAX_DELAY),
        (ThrottleScope.ACCOUNT, 10, timedelta(minutes=15)),
        (ThrottleScope.ACCOUNT, 11, MAX_DELAY),
        (ThrottleScope.ACCOUNT, 20, timedelta(minutes=30)),
        (ThrottleScope.ACCOUNT, 10_000, MAX_LOCKOUT),
        (ThrottleScope.CLIENT_ADDRESS, 20, None),
        (ThrottleScope.CLIENT_ADDRESS, 21, timedelta(seconds=1)),
        (ThrottleScope.CLIENT_ADDRESS, 100, timedelta(minutes=15)),
    ],
)
def test_default_waits(
    settings: Settings, scope: ThrottleScope, failures: int, expected: timedelta | None
) -> None:
    policy = ThrottlePolicy.from_settings(settings)

    assert policy.wait_after(scope, failures) == expected


def _stored_subjects(database: Database) -> set[str]:
    with database.reader() as session:
        return set(session.scalars(select(LoginThrottle.subject_hash)))


def _store_row(
    database: Database, subject: str, window_started_at: datetime, locked_until: datetime | None
) -> None:
    with database.transaction() as session:
        session.add(
            LoginThrottle(
                scope=ThrottleScope.ACCOUNT,
                subject_hash=subject,
                failure_count=10,
                window_started_at=window_started_at,
                locked_until=locked_until,
            )
        )


def test_expired_rows_purged_by_next_attempt(
    proxied_app: FastAPI, proxied_client: TestClient
) -> None:
    clock = freeze_clock(proxied_app)
    database: Database = proxied_app.state.database
    for index in range(20):
        email = f"nobody-{index}@example.com"
        _attempt(proxied_client, clock, email, "203.0.113.9", WRONG_PASSWORD)
    assert len(_stored_subjects(database)) == 21
    clock.advance(timedelta(hours=24))

    response = _attempt(
        proxied_client, clock, "somebody@example.com", "203.0.113.10", WRONG_PASSWORD
    )

    assert response.status_code == 401
    # Only the account and the address of the last attempt are left.
    with database.reader() as session:
        scopes = sorted(session.scalars(select(LoginThrottle.scope)))
    assert scopes == [ThrottleScope.ACCOUNT, ThrottleScope.CLIENT_ADDRESS]


def test_purge_keeps_running_windows_and_locks(database: Database, settings: Settings) -> None:
    policy = ThrottlePolicy.from_settings(settings)
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    window_ended = now - policy.window
    _store_row(database, "window-ended", window_ended, None)
    _store_row(database, "lock-expired", window_ended, now - timedelta(seconds=1))
    _store_row(database, "still-locked", window_ended, now + timedelta(minutes=5))
    _store_row(database, "window-running", window_ended + timedelta(seconds=1), None)

    with database.transaction() as session:
        deleted = purge_expired(session, policy, now)

    assert deleted == 2
    assert _stored_subjects(database) == {"still-locked", "window-running"}


def test_purge_deletes_one_batch_at_most(database: Database, settings: Settings) -> None:
    policy = ThrottlePolicy.from_settings(settings)
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    for index in range(5):
        _store_row(database, f"expired-{index}", now - policy.window, None)

    with database.transaction() as session:
        first = purge_expired(session, policy, now, limit=2)
    with database.transaction() as session:
        second = purge_expired(session, policy, now, limit=2)

    assert (first, second) == (2, 2)
    assert len(_stored_subjects(database)) == 1


@pytest.mark.parametrize(("seconds", "ending"), [(1, "in 1 second"), (30, "in 30 seconds")])
def test_wait_message_counts_seconds(seconds: int, ending: str) -> None:
    assert str(TooManyAttempts(seconds)).endswith(ending)
