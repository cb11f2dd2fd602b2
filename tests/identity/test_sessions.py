"""Sign-in sessions: refresh tokens rotate on every use, a replayed one revokes its whole family,
sessions end when idle or old, and signing out or revoking a session ends it."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx
import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.types import Message, Receive, Scope, Send

from llero.access.permissions import NotAuthenticated
from llero.access.roles import Role
from llero.audit.context import RequestContext
from llero.identity.models import AuthSession
from llero.identity.sessions import refresh_session
from llero.storage.db import Database
from tests.conftest import FixtureUser, MakeUser
from tests.identity.helpers import bearer, freeze_clock, password_hash, sign_in


@pytest.fixture
def developer(make_user: MakeUser) -> FixtureUser:
    return make_user(role=Role.DEVELOPER, mfa=False, password_hash=password_hash())


def _refresh(client: TestClient, token: str) -> httpx.Response:
    return client.post("/api/auth/refresh", json={"refresh_token": token})


def _session_row(database: Database, session_id: int) -> AuthSession:
    with database.reader() as session:
        row = session.scalars(select(AuthSession).where(AuthSession.id == session_id)).one()
        session.expunge(row)
        return row


def test_refresh_rotates_token(anonymous_client: TestClient, developer: FixtureUser) -> None:
    signed_in = sign_in(anonymous_client, developer.email).json()

    refreshed = _refresh(anonymous_client, signed_in["refresh_token"])

    assert refreshed.status_code == 200
    body = refreshed.json()
    assert body["refresh_token"] != signed_in["refresh_token"]
    assert body["session_id"] == signed_in["session_id"]
    me = anonymous_client.get("/api/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200


def test_refresh_token_reuse_revokes_family(
    anonymous_client: TestClient, developer: FixtureUser, database: Database
) -> None:
    first = sign_in(anonymous_client, developer.email).json()
    second = _refresh(anonymous_client, first["refresh_token"]).json()

    with structlog.testing.capture_logs() as events:
        replay = _refresh(anonymous_client, first["refresh_token"])
    after = _refresh(anonymous_client, second["refresh_token"])

    assert replay.status_code == 401
    assert replay.json()["error"] == "unauthenticated"
    assert after.status_code == 401
    warnings = [event for event in events if event["event"] == "token:family_revoked"]
    assert warnings == [
        {
            "event": "token:family_revoked",
            "reason": "refresh_token_reused",
            "user_id": developer.id,
            "session_id": first["session_id"],
            "log_level": "warning",
        }
    ]
    row = _session_row(database, first["session_id"])
    assert row.revoked_reason == "refresh_token_reused"


def test_reuse_leaves_other_sessions(anonymous_client: TestClient, developer: FixtureUser) -> None:
    stolen = sign_in(anonymous_client, developer.email).json()
    other = sign_in(anonymous_client, developer.email).json()
    _refresh(anonymous_client, stolen["refresh_token"])

    _refresh(anonymous_client, stolen["refresh_token"])

    assert _refresh(anonymous_client, other["refresh_token"]).status_code == 200


def test_session_ends_after_idle_limit(
    app: FastAPI, anonymous_client: TestClient, developer: FixtureUser
) -> None:
    clock = freeze_clock(app)
    idle = app.state.identity.limits.idle
    token = sign_in(anonymous_client, developer.email).json()["refresh_token"]
    clock.advance(idle - timedelta(minutes=1))
    token = _refresh(anonymous_client, token).json()["refresh_token"]
    clock.advance(idle)

    response = _refresh(anonymous_client, token)

    assert response.status_code == 401


def test_session_ends_at_absolute_limit(
    app: FastAPI, anonymous_client: TestClient, developer: FixtureUser
) -> None:
    clock = freeze_clock(app)
    limits = app.state.identity.limits
    started = clock()
    token = sign_in(anonymous_client, developer.email).json()["refresh_token"]
    statuses = []
    while clock() - started < limits.absolute:
        clock.advance(limits.idle - timedelta(minutes=5))
        response = _refresh(anonymous_client, token)
        statuses.append((clock() - started < limits.absolute, response.status_code))
        if response.status_code == 200:
            token = response.json()["refresh_token"]

    # Every refresh inside the absolute limit is accepted, and the first one after it is not.
    assert len(statuses) > 2
    assert all(status == 200 for inside, status in statuses if inside)
    assert statuses[-1] == (False, 401)


def test_refresh_expiry_never_passes_session_end(
    app: FastAPI, anonymous_client: TestClient, developer: FixtureUser
) -> None:
    clock = freeze_clock(app)
    step = app.state.identity.limits.idle / 2
    body = sign_in(anonymous_client, developer.email).json()
    session_end = _time(body["session_expires_at"])
    while clock() + step < session_end:
        clock.advance(step)
        body = _refresh(anonymous_client, body["refresh_token"]).json()

    # The last refresh was less than one idle period before the end, so the end limits it.
    assert _time(body["refresh_expires_at"]) == session_end


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_signout_kills_session(
    anonymous_client: TestClient, developer: FixtureUser, database: Database
) -> None:
    signed_in = sign_in(anonymous_client, developer.email).json()

    response = anonymous_client.post(
        "/api/auth/signout", json={"refresh_token": signed_in["refresh_token"]}
    )

    assert response.status_code == 204
    assert response.headers["clear-site-data"] == '"cookies"'
    assert _refresh(anonymous_client, signed_in["refresh_token"]).status_code == 401
    assert _session_row(database, signed_in["session_id"]).revoked_reason == "signed_out"
    # The session's access token names it, so it stops at once too.
    after = anonymous_client.get("/api/auth/sessions", headers=bearer(signed_in["access_token"]))
    assert after.status_code == 401
    sessions = anonymous_client.get(
        "/api/auth/sessions", headers=bearer(developer.access_token)
    ).json()["items"]
    assert signed_in["session_id"] not in [item["id"] for item in sessions]


@pytest.mark.parametrize("token", ["llero_rt_garbage", "x" * 128])
def test_signout_with_unknown_token_is_harmless(anonymous_client: TestClient, token: str) -> None:
    response = anonymous_client.post("/api/auth/signout", json={"refresh_token": token})

    assert response.status_code == 204


@pytest.mark.parametrize(
    "token", ["", "llero_rt_" + "A" * 49, "llero_pat_" + "A" * 49, "not a token"]
)
def test_malformed_refresh_token_rejected(anonymous_client: TestClient, token: str) -> None:
    response = _refresh(anonymous_client, token)

    assert response.status_code in {401, 422}
    assert response.status_code == (422 if token == "" else 401)


def test_disabled_user_cannot_refresh(
    client: TestClient, anonymous_client: TestClient, developer: FixtureUser
) -> None:
    token = sign_in(anonymous_client, developer.email).json()["refresh_token"]

    client.patch(f"/api/users/{developer.id}", json={"status": "disabled"})

    assert _refresh(anonymous_client, token).status_code == 401


def test_sessions_list_shows_own_sessions_only(
    anonymous_client: TestClient, developer: FixtureUser, make_user: MakeUser
) -> None:
    other = make_user(role=Role.VIEWER, mfa=False, password_hash=password_hash())
    mine = sign_in(anonymous_client, developer.email).json()
    sign_in(anonymous_client, other.email)

    response = anonymous_client.get("/api/auth/sessions", headers=bearer(mine["access_token"]))

    assert response.status_code == 200
    items = response.json()["items"]
    # The newest first, then the session the fixture signed in with.
    assert [item["id"] for item in items] == [mine["session_id"], developer.session_id]
    assert items[0]["user_agent"] == "testclient"
    assert "refresh_token" not in items[0]


def test_revoke_own_session(anonymous_client: TestClient, developer: FixtureUser) -> None:
    lost = sign_in(anonymous_client, developer.email).json()
    current = sign_in(anonymous_client, developer.email).json()

    response = anonymous_client.delete(
        f"/api/auth/sessions/{lost['session_id']}", headers=bearer(current["access_token"])
    )

    assert response.status_code == 204
    assert _refresh(anonymous_client, lost["refresh_token"]).status_code == 401
    assert _refresh(anonymous_client, current["refresh_token"]).status_code == 200


def test_revoke_other_users_session_not_found(
    anonymous_client: TestClient, developer: FixtureUser, make_user: MakeUser
) -> None:
    other = make_user(role=Role.VIEWER, mfa=False, password_hash=password_hash())
    theirs = sign_in(anonymous_client, other.email).json()

    response = anonymous_client.delete(
        f"/api/auth/sessions/{theirs['session_id']}", headers=developer.headers
    )

    assert response.status_code == 404
    assert _refresh(anonymous_client, theirs["refresh_token"]).status_code == 200


def test_admin_revokes_all_user_sessions(
    client: TestClient, anonymous_client: TestClient, developer: FixtureUser
) -> None:
    first = sign_in(anonymous_client, developer.email).json()
    second = sign_in(anonymous_client, developer.email).json()

    response = client.post(f"/api/users/{developer.id}/sessions/revoke")

    assert response.status_code == 200
    # The two sign-ins above and the fixture's own session.
    assert response.json() == {"revoked": 3}
    assert _refresh(anonymous_client, first["refresh_token"]).status_code == 401
    assert _refresh(anonymous_client, second["refresh_token"]).status_code == 401
    me = anonymous_client.get("/api/users/me", headers=bearer(second["access_token"]))
    assert me.status_code == 401
    # A sign-in after the revocation works again.
    assert sign_in(anonymous_client, developer.email).status_code == 200


def test_refresh_records_client(
    anonymous_client: TestClient, developer: FixtureUser, database: Database
) -> None:
    signed_in = anonymous_client.post(
        "/api/auth/signin",
        json={"email": developer.email, "password": "plum kettle orbit lantern harbour"},
        headers={"user-agent": "probe/1.0\x1b[31m" + "x" * 400},
    ).json()

    row = _session_row(database, signed_in["session_id"])

    assert row.user_agent.startswith("probe/1.0[31m")
    assert "\x1b" not in row.user_agent
    assert len(row.user_agent) == 256
    assert row.client_address == "testclient"


def test_concurrent_refresh_one_wins(
    app: FastAPI, anonymous_client: TestClient, developer: FixtureUser, database: Database
) -> None:
    token = sign_in(anonymous_client, developer.email).json()["refresh_token"]
    barrier = threading.Barrier(4)

    def attempt() -> str:
        barrier.wait()
        try:
            refresh_session(database, app.state.identity, token, RequestContext())
        except NotAuthenticated as error:
            return error.reason
        return "refreshed"

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = sorted(pool.map(lambda _: attempt(), range(4)))

    # Exactly one exchange succeeds; the others are reuse, which ends the session.
    assert outcomes == ["refresh_token_reused"] * 3 + ["refreshed"]


def test_tokens_never_logged(anonymous_client: TestClient, developer: FixtureUser) -> None:
    with structlog.testing.capture_logs() as events:
        signed_in = sign_in(anonymous_client, developer.email).json()
        refreshed = _refresh(anonymous_client, signed_in["refresh_token"]).json()
        _refresh(anonymous_client, signed_in["refresh_token"])
        anonymous_client.get("/api/users/me", headers=bearer(refreshed["access_token"]))

    logged = repr(events)
    assert events
    for secret in (
        signed_in["access_token"],
        signed_in["refresh_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
        "plum kettle orbit lantern harbour",
    ):
        assert secret not in logged


def test_revocation_committed_before_response(
    app: FastAPI, admin: FixtureUser, developer: FixtureUser, database: Database
) -> None:
    """A client that acts on the response must find the change stored: a token revoked with
    a 200 must fail on the very next request."""
    seen_at_response: list[int] = []

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                with database.reader() as session:
                    revoked = select(AuthSession.id).where(
                        AuthSession.user_id == developer.id, AuthSession.revoked_at.is_not(None)
                    )
                    seen_at_response.append(len(session.scalars(revoked).all()))
            await send(message)

        await app(scope, receive, send_and_record)

    with TestClient(recording, headers=admin.headers) as admin_client:
        response = admin_client.post(f"/api/users/{developer.id}/sessions/revoke")

    assert response.status_code == 200
    assert seen_at_response == [response.json()["revoked"]]
