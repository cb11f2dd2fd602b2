"""Verified access tokens are cached, but revocation still takes effect at the next request:
a revoked session, a signed-out session, a disabled user and an expired token all fail at once."""

from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.identity.authentication import VerifiedTokenCache
from llero.identity.context import IdentityContext
from llero.identity.tokens import AccessTokenService, ExpiredToken
from tests.conftest import FixtureUser, MakeUser
from tests.identity.helpers import bearer, freeze_clock, password_hash, sign_in


def _tokens(client: TestClient, user: FixtureUser) -> dict[str, str]:
    response = sign_in(client, user.email)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _status(client: TestClient, access_token: str) -> int:
    return client.get("/api/users/me", headers=bearer(access_token)).status_code


@pytest.fixture
def developer(make_user: MakeUser) -> FixtureUser:
    return make_user(role=Role.DEVELOPER, mfa=False, password_hash=password_hash())


def test_revoked_session_token_stops(anonymous_client: TestClient, developer: FixtureUser) -> None:
    lost = _tokens(anonymous_client, developer)
    kept = _tokens(anonymous_client, developer)
    assert _status(anonymous_client, lost["access_token"]) == 200

    revoked = anonymous_client.delete(
        f"/api/auth/sessions/{lost['session_id']}", headers=bearer(kept["access_token"])
    )

    assert revoked.status_code == 204
    assert _status(anonymous_client, lost["access_token"]) == 401
    assert _status(anonymous_client, kept["access_token"]) == 200


def test_signout_ends_access_token(anonymous_client: TestClient, developer: FixtureUser) -> None:
    tokens = _tokens(anonymous_client, developer)
    assert _status(anonymous_client, tokens["access_token"]) == 200

    anonymous_client.post("/api/auth/signout", json={"refresh_token": tokens["refresh_token"]})

    assert _status(anonymous_client, tokens["access_token"]) == 401


def test_cached_token_sees_disable(
    client: TestClient, anonymous_client: TestClient, developer: FixtureUser
) -> None:
    assert _status(anonymous_client, developer.access_token) == 200

    client.patch(f"/api/users/{developer.id}", json={"status": "disabled"})

    assert _status(anonymous_client, developer.access_token) == 401


def test_cached_token_expires(
    app: FastAPI, anonymous_client: TestClient, developer: FixtureUser
) -> None:
    clock = freeze_clock(app)
    tokens = _tokens(anonymous_client, developer)
    assert _status(anonymous_client, tokens["access_token"]) == 200

    clock.advance(timedelta(minutes=15, seconds=29))
    still = _status(anonymous_client, tokens["access_token"])
    clock.advance(timedelta(seconds=2))
    expired = _status(anonymous_client, tokens["access_token"])

    assert still == 200
    assert expired == 401


def test_token_without_session_rejected(
    app: FastAPI, anonymous_client: TestClient, developer: FixtureUser
) -> None:
    context: IdentityContext = app.state.identity
    token = context.tokens.issue_access_token(subject=str(developer.id), role="developer")

    assert _status(anonymous_client, token.token.reveal()) == 401


def test_token_of_other_users_session_rejected(
    app: FastAPI, anonymous_client: TestClient, developer: FixtureUser, make_user: MakeUser
) -> None:
    other = make_user(role=Role.DEVELOPER, mfa=False)
    context: IdentityContext = app.state.identity
    token = context.tokens.issue_access_token(
        subject=str(developer.id), role="developer", session_id=str(other.session_id)
    )

    assert _status(anonymous_client, token.token.reveal()) == 401


class CountingTokens:
    """An access token service that counts signature verifications."""

    def __init__(self, tokens: AccessTokenService) -> None:
        self.tokens = tokens
        self.verifications = 0

    def verify_access_token(self, token: str) -> object:
        self.verifications += 1
        return self.tokens.verify_access_token(token)

    def usable_until(self, claims: object) -> object:
        return self.tokens.usable_until(claims)  # type: ignore[arg-type]


def test_cache_verifies_once(app: FastAPI, developer: FixtureUser) -> None:
    context: IdentityContext = app.state.identity
    counting = CountingTokens(context.tokens)
    cache = VerifiedTokenCache(counting)  # type: ignore[arg-type]

    for _ in range(5):
        claims = cache.verified(developer.access_token, context.now())

    assert counting.verifications == 1
    assert claims.subject == str(developer.id)
    assert claims.session_id == str(developer.session_id)


def test_cache_bounded_least_recent_dropped(app: FastAPI, make_user: MakeUser) -> None:
    context: IdentityContext = app.state.identity
    counting = CountingTokens(context.tokens)
    cache = VerifiedTokenCache(counting, max_entries=2)  # type: ignore[arg-type]
    first, second, third = (make_user(role=Role.VIEWER).access_token for _ in range(3))

    for token in (first, second, first, third, first):
        cache.verified(token, context.now())

    # second was the least recently used when third arrived, so only it left the cache.
    assert len(cache) == 2
    assert counting.verifications == 3
    cache.verified(second, context.now())
    assert counting.verifications == 4


def test_cache_expired_entry_verified_again(app: FastAPI, developer: FixtureUser) -> None:
    clock = freeze_clock(app)
    context: IdentityContext = app.state.identity
    issued = context.tokens.issue_access_token(
        subject=str(developer.id), role="developer", session_id=str(developer.session_id)
    )
    cache = VerifiedTokenCache(context.tokens)
    cache.verified(issued.token.reveal(), context.now())
    clock.advance(timedelta(minutes=16))

    with pytest.raises(ExpiredToken):
        cache.verified(issued.token.reveal(), context.now())
    assert len(cache) == 0
