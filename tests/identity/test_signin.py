"""Sign-in: the same answer for every wrong credential, hashes upgraded on success, a second
factor that each code passes once, and a challenge that dies after a few wrong codes."""

import asyncio
import time
from datetime import timedelta

import bcrypt
import httpx
import pytest
import structlog
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from llero.access.roles import Role
from llero.identity import service
from llero.identity.models import AuthSession, User, UserStatus
from llero.identity.passwords import hash_scheme
from llero.identity.service import MFA_CHALLENGE_MAX_FAILURES
from llero.storage.db import Database
from tests.conftest import MakeUser
from tests.identity.helpers import (
    PASSWORD,
    bearer,
    freeze_clock,
    loosen_throttle,
    password_hash,
    sign_in,
    totp_code,
    user_row,
)

WRONG_PASSWORD = "plum kettle orbit lantern harbor"


def _without_request_id(response: httpx.Response) -> dict[str, object]:
    body = dict(response.json())
    body.pop("request_id")
    return body


def _mfa_challenge(anonymous_client: TestClient, email: str) -> str:
    response = sign_in(anonymous_client, email)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "mfa_required"
    return str(response.json()["challenge"])


def test_signin_returns_tokens(anonymous_client: TestClient, make_user: MakeUser) -> None:
    user = make_user(role=Role.DEVELOPER, mfa=False, password_hash=password_hash())

    response = sign_in(anonymous_client, user.email)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "signed_in"
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"].startswith("llero_rt_")
    assert 899 <= body["expires_in"] <= 900
    assert body["mfa_enrollment_required"] is False
    assert "set-cookie" not in response.headers
    me = anonymous_client.get("/api/users/me", headers=bearer(body["access_token"]))
    assert me.json()["id"] == user.id


def test_signin_records_last_login(
    app: FastAPI, anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    clock = freeze_clock(app)
    user = make_user(role=Role.VIEWER, mfa=False, password_hash=password_hash())
    assert user_row(database, user.id).last_login_at is None

    response = sign_in(anonymous_client, user.email)

    assert response.status_code == 200
    assert user_row(database, user.id).last_login_at == clock()


def test_signin_email_case_and_spacing_normalised(
    anonymous_client: TestClient, make_user: MakeUser
) -> None:
    user = make_user(
        role=Role.VIEWER, mfa=False, password_hash=password_hash(), email="Ann@Example.COM"
    )

    response = sign_in(anonymous_client, "ann@example.com")

    assert response.status_code == 200
    assert response.json()["status"] == "signed_in", user


@pytest.mark.parametrize(
    ("email", "password", "state"),
    [
        ("nobody@example.com", PASSWORD, "unknown email"),
        ("user@example.com", WRONG_PASSWORD, "wrong password"),
        ("not an address", PASSWORD, "malformed email"),
        ("disabled@example.com", PASSWORD, "disabled user"),
        ("pending@example.com", PASSWORD, "pending user without password"),
    ],
)
def test_signin_failures_answer_alike(
    anonymous_client: TestClient, make_user: MakeUser, email: str, password: str, state: str
) -> None:
    make_user(role=Role.VIEWER, mfa=False, password_hash=password_hash(), email="user@example.com")
    make_user(
        role=Role.VIEWER,
        mfa=False,
        password_hash=password_hash(),
        email="disabled@example.com",
        status=UserStatus.DISABLED,
    )
    make_user(role=Role.VIEWER, mfa=False, email="pending@example.com", status=UserStatus.PENDING)

    response = sign_in(anonymous_client, email, password)

    assert response.status_code == 401, state
    assert response.headers["www-authenticate"] == "Bearer"
    assert _without_request_id(response) == {
        "error": "invalid_credentials",
        "message": "the email or password is incorrect",
    }


def test_signin_unknown_email_costs_a_verification(
    anonymous_client: TestClient, make_user: MakeUser
) -> None:
    make_user(role=Role.VIEWER, mfa=False, password_hash=password_hash(), email="user@example.com")
    sign_in(anonymous_client, "warm@example.com")

    def timed(email: str, password: str) -> float:
        started = time.perf_counter()
        sign_in(anonymous_client, email, password)
        return time.perf_counter() - started

    unknown = min(timed("nobody@example.com", PASSWORD) for _ in range(3))
    wrong = min(timed("user@example.com", WRONG_PASSWORD) for _ in range(3))

    # Both pay one argon2id verification (about 0.2 s); without it the unknown email would
    # answer in a few milliseconds.
    assert unknown > wrong * 0.5
    assert wrong > unknown * 0.5


def test_signin_upgrades_bcrypt_hash(
    anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    user = make_user(role=Role.VIEWER, mfa=False, password_hash=legacy)

    response = sign_in(anonymous_client, user.email)

    assert response.status_code == 200
    stored = user_row(database, user.id).password_hash
    assert stored is not None
    assert hash_scheme(stored) == "argon2id"
    assert sign_in(anonymous_client, user.email).status_code == 200


def test_signin_upgrades_weak_argon2_parameters(
    anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    user = make_user(role=Role.VIEWER, mfa=False, password_hash=weak)

    response = sign_in(anonymous_client, user.email)

    assert response.status_code == 200
    stored = user_row(database, user.id).password_hash
    assert stored != weak
    assert stored is not None
    assert "m=65536,t=3,p=1" in stored


def test_signin_keeps_current_hash(
    anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    user = make_user(role=Role.VIEWER, mfa=False, password_hash=password_hash())

    sign_in(anonymous_client, user.email)

    assert user_row(database, user.id).password_hash == password_hash()


async def _health_during_signins(app: FastAPI, email: str) -> tuple[list[float], bool, list[int]]:
    """Start four sign-ins, then time health checks while they verify the password.

    Returns the latencies, whether a sign-in was still running after the last health check, and
    the sign-ins' status codes.
    """
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await client.get("/healthz")
        body = {"email": email, "password": PASSWORD}
        signins = [
            asyncio.create_task(client.post("/api/auth/signin", json=body)) for _ in range(4)
        ]
        await asyncio.sleep(0.02)
        latencies = []
        for _ in range(3):
            started = time.perf_counter()
            health = await client.get("/healthz")
            latencies.append(time.perf_counter() - started)
            assert health.status_code == 200
        still_running = not all(task.done() for task in signins)
        results = await asyncio.gather(*signins)
    return latencies, still_running, [result.status_code for result in results]


def test_signin_leaves_event_loop_free(app: FastAPI, make_user: MakeUser) -> None:
    user = make_user(role=Role.VIEWER, mfa=False, password_hash=password_hash())

    latencies, still_running, statuses = asyncio.run(_health_during_signins(app, user.email))

    assert statuses == [200] * 4
    # Four argon2id verifications take about a second of CPU on two cores. Had one run on the
    # event loop, each health check would have waited for it.
    assert still_running
    assert sorted(latencies)[1] < 0.1


def test_signin_with_mfa_needs_second_step(
    anonymous_client: TestClient, make_user: MakeUser
) -> None:
    user = make_user(role=Role.ADMIN, mfa=True, password_hash=password_hash())

    response = sign_in(anonymous_client, user.email)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "mfa_required"
    assert "access_token" not in body
    assert "refresh_token" not in body
    assert set(body["methods"]) == {"totp", "recovery_code"}


def test_mfa_totp_code_signs_in(
    app: FastAPI, anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    clock = freeze_clock(app)
    user = make_user(role=Role.ADMIN, mfa=True, password_hash=password_hash())
    challenge = _mfa_challenge(anonymous_client, user.email)

    response = anonymous_client.post(
        "/api/auth/signin/mfa",
        json={"challenge": challenge, "code": totp_code(database, user.id, clock())},
    )

    assert response.status_code == 200
    assert response.json()["status"] == "signed_in"
    tools = anonymous_client.get("/api/tools", headers=bearer(response.json()["access_token"]))
    assert tools.status_code == 200


def test_replayed_totp_code_refused(
    app: FastAPI, anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    clock = freeze_clock(app)
    user = make_user(role=Role.ADMIN, mfa=True, password_hash=password_hash())
    code = totp_code(database, user.id, clock())
    first = anonymous_client.post(
        "/api/auth/signin/mfa",
        json={"challenge": _mfa_challenge(anonymous_client, user.email), "code": code},
    )
    clock.advance(timedelta(seconds=20))

    replay = anonymous_client.post(
        "/api/auth/signin/mfa",
        json={"challenge": _mfa_challenge(anonymous_client, user.email), "code": code},
    )

    assert first.status_code == 200
    assert replay.status_code == 401
    assert _without_request_id(replay) == {
        "error": "invalid_credentials",
        "message": "the code is incorrect or the sign-in has expired; sign in again",
    }


def test_earlier_totp_step_refused_after_later_one(
    app: FastAPI, anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    clock = freeze_clock(app)
    user = make_user(role=Role.ADMIN, mfa=True, password_hash=password_hash())
    later = totp_code(database, user.id, clock() + timedelta(seconds=30))
    earlier = totp_code(database, user.id, clock())
    anonymous_client.post(
        "/api/auth/signin/mfa",
        json={"challenge": _mfa_challenge(anonymous_client, user.email), "code": later},
    )

    response = anonymous_client.post(
        "/api/auth/signin/mfa",
        json={"challenge": _mfa_challenge(anonymous_client, user.email), "code": earlier},
    )

    assert response.status_code == 401


def test_mfa_challenge_used_once(
    app: FastAPI, anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    clock = freeze_clock(app)
    user = make_user(role=Role.ADMIN, mfa=True, password_hash=password_hash())
    challenge = _mfa_challenge(anonymous_client, user.email)
    anonymous_client.post(
        "/api/auth/signin/mfa",
        json={"challenge": challenge, "code": totp_code(database, user.id, clock())},
    )
    clock.advance(timedelta(seconds=30))

    again = anonymous_client.post(
        "/api/auth/signin/mfa",
        json={"challenge": challenge, "code": totp_code(database, user.id, clock())},
    )

    assert again.status_code == 401


def test_mfa_challenge_expires(
    app: FastAPI, anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    clock = freeze_clock(app)
    user = make_user(role=Role.ADMIN, mfa=True, password_hash=password_hash())
    challenge = _mfa_challenge(anonymous_client, user.email)
    clock.advance(timedelta(minutes=5))

    response = anonymous_client.post(
        "/api/auth/signin/mfa",
        json={"challenge": challenge, "code": totp_code(database, user.id, clock())},
    )

    assert response.status_code == 401


def test_mfa_challenge_dies_after_wrong_codes(
    app: FastAPI, anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    clock = freeze_clock(app)
    # The account's throttle would delay the fifth wrong code; this test is about the challenge.
    loosen_throttle(app)
    user = make_user(role=Role.ADMIN, mfa=True, password_hash=password_hash())
    challenge = _mfa_challenge(anonymous_client, user.email)
    right = totp_code(database, user.id, clock())
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(MFA_CHALLENGE_MAX_FAILURES):
        failed = anonymous_client.post(
            "/api/auth/signin/mfa", json={"challenge": challenge, "code": wrong}
        )
        assert failed.status_code == 401

    response = anonymous_client.post(
        "/api/auth/signin/mfa", json={"challenge": challenge, "code": right}
    )

    assert response.status_code == 401


def test_recovery_code_signs_in_once(
    app: FastAPI, client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    freeze_clock(app)
    user = make_user(role=Role.DEVELOPER, mfa=False, password_hash=password_hash())
    codes = _enroll_totp(app, anonymous_client, user.access_token)
    challenge = _mfa_challenge(anonymous_client, user.email)

    first = anonymous_client.post(
        "/api/auth/signin/mfa", json={"challenge": challenge, "recovery_code": codes[0].upper()}
    )
    second = anonymous_client.post(
        "/api/auth/signin/mfa",
        json={
            "challenge": _mfa_challenge(anonymous_client, user.email),
            "recovery_code": codes[0],
        },
    )

    assert first.status_code == 200
    assert second.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"code": "123456", "recovery_code": "abcde-abcde-abcde-abcde-abcdef"},
        {},
    ],
)
def test_mfa_step_needs_exactly_one_factor(
    anonymous_client: TestClient, body: dict[str, str]
) -> None:
    response = anonymous_client.post("/api/auth/signin/mfa", json={"challenge": "x" * 43, **body})

    assert response.status_code == 422
    assert (
        response.json()["message"]
        == "body: Value error, give exactly one of code and recovery_code"
    )


def test_signin_logs_reason_without_password(
    anonymous_client: TestClient, make_user: MakeUser
) -> None:
    user = make_user(role=Role.VIEWER, mfa=False, password_hash=password_hash())

    with structlog.testing.capture_logs() as events:
        sign_in(anonymous_client, user.email, WRONG_PASSWORD)

    failures = [event for event in events if event["event"] == "user:login_failed"]
    assert failures == [
        {
            "event": "user:login_failed",
            "reason": "wrong_password",
            "user_id": user.id,
            "log_level": "info",
        }
    ]
    assert WRONG_PASSWORD not in repr(events)


def test_disabled_between_steps_cannot_finish(
    app: FastAPI, anonymous_client: TestClient, make_user: MakeUser, database: Database
) -> None:
    clock = freeze_clock(app)
    user = make_user(role=Role.ADMIN, mfa=True, password_hash=password_hash())
    challenge = _mfa_challenge(anonymous_client, user.email)
    with database.transaction() as session:
        session.execute(update(User).where(User.id == user.id).values(status=UserStatus.DISABLED))

    response = anonymous_client.post(
        "/api/auth/signin/mfa",
        json={"challenge": challenge, "code": totp_code(database, user.id, clock())},
    )

    assert response.status_code == 401


@pytest.mark.parametrize(
    "change",
    [{"status": UserStatus.DISABLED}, {"password_hash": "changed by an admin meanwhile"}],
    ids=["disabled", "password_changed"],
)
def test_signin_refused_after_account_change(
    anonymous_client: TestClient,
    make_user: MakeUser,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    change: dict[str, str],
) -> None:
    user = make_user(role=Role.VIEWER, mfa=False, password_hash=password_hash())

    async def verify_then_change(password: str, stored: str) -> bool:
        # An admin acts while the argon2id verification of the right password runs.
        with database.transaction() as session:
            session.execute(update(User).where(User.id == user.id).values(**change))
        return password == PASSWORD

    monkeypatch.setattr(service, "verify_password_async", verify_then_change)
    sessions_before = _session_count(database, user.id)

    response = sign_in(anonymous_client, user.email)

    assert response.status_code == 401
    assert "access_token" not in response.json()
    assert _session_count(database, user.id) == sessions_before


def _session_count(database: Database, user_id: int) -> int:
    with database.reader() as session:
        query = select(func.count(AuthSession.id)).where(AuthSession.user_id == user_id)
        return int(session.scalar(query) or 0)


def _enroll_totp(app: FastAPI, client: TestClient, access_token: str) -> list[str]:
    """Enroll TOTP for the token's user over HTTP; return the recovery codes."""
    import pyotp  # noqa: PLC0415 - only this helper reads otpauth URIs

    headers = bearer(access_token)
    started = client.post("/api/auth/mfa/totp", headers=headers)
    assert started.status_code == 200, started.text
    totp = pyotp.parse_uri(started.json()["provisioning_uri"])
    code = totp.at(app.state.identity.now())
    confirmed = client.post("/api/auth/mfa/totp/confirm", headers=headers, json={"code": code})
    assert confirmed.status_code == 200, confirmed.text
    return list(confirmed.json()["recovery_codes"])
