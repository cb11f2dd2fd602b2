"""The browser's session cookie: set with the __Host- prefix, HttpOnly, Secure and SameSite=Strict,
accepted for reads, and for writes only with a matching X-CSRF-Token header."""

from http.cookies import SimpleCookie

import httpx
import pytest
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.identity.authentication import CSRF_COOKIE, SESSION_COOKIE
from tests.conftest import FixtureUser, MakeUser
from tests.identity.helpers import password_hash, sign_in


@pytest.fixture
def developer(make_user: MakeUser) -> FixtureUser:
    return make_user(role=Role.DEVELOPER, mfa=False, password_hash=password_hash())


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    """Return each Set-Cookie header of ``response`` by cookie name."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


def _cookie_header(session: str, csrf: str | None = None) -> dict[str, str]:
    # The test client talks plain HTTP and so never sends a Secure cookie by itself.
    value = f"{SESSION_COOKIE}={session}"
    if csrf is not None:
        value += f"; {CSRF_COOKIE}={csrf}"
    return {"cookie": value}


@pytest.fixture
def cookie_signin(anonymous_client: TestClient, developer: FixtureUser) -> httpx.Response:
    response = sign_in(anonymous_client, developer.email, session_cookie=True)
    assert response.status_code == 200
    return response


def test_session_cookie_flags(cookie_signin: httpx.Response) -> None:
    cookies = _set_cookies(cookie_signin)

    session = SimpleCookie(cookies[SESSION_COOKIE])[SESSION_COOKIE]
    assert session.value == cookie_signin.json()["access_token"]
    assert session["path"] == "/"
    assert session["secure"] is True
    assert session["httponly"] is True
    assert session["samesite"] == "strict"
    assert session["domain"] == ""
    assert int(session["max-age"]) == cookie_signin.json()["expires_in"]


def test_csrf_cookie_readable_by_page(cookie_signin: httpx.Response) -> None:
    csrf = SimpleCookie(_set_cookies(cookie_signin)[CSRF_COOKIE])[CSRF_COOKIE]

    assert csrf.value == cookie_signin.json()["csrf_token"]
    assert len(csrf.value) >= 43
    assert csrf["secure"] is True
    assert csrf["httponly"] == ""
    assert csrf["samesite"] == "strict"
    assert csrf["path"] == "/"


def test_no_cookies_unless_asked(anonymous_client: TestClient, developer: FixtureUser) -> None:
    response = sign_in(anonymous_client, developer.email)

    assert response.headers.get_list("set-cookie") == []
    assert response.json()["csrf_token"] is None


def test_cookie_authenticates_read(
    anonymous_client: TestClient, cookie_signin: httpx.Response
) -> None:
    response = anonymous_client.get(
        "/api/users/me", headers=_cookie_header(cookie_signin.json()["access_token"])
    )

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("csrf_cookie", "csrf_header"),
    [
        pytest.param(None, None, id="neither"),
        pytest.param("same-value-0123456789", None, id="cookie only"),
        pytest.param(None, "same-value-0123456789", id="header only"),
        pytest.param("value-in-cookie-01234", "value-in-header-01234", id="mismatch"),
        pytest.param("", "", id="both empty"),
    ],
)
def test_cookie_write_needs_matching_csrf_token(
    anonymous_client: TestClient,
    cookie_signin: httpx.Response,
    csrf_cookie: str | None,
    csrf_header: str | None,
) -> None:
    headers = _cookie_header(cookie_signin.json()["access_token"], csrf_cookie)
    if csrf_header is not None:
        headers["X-CSRF-Token"] = csrf_header

    response = anonymous_client.post("/api/tools", json={"name": "csrf_probe"}, headers=headers)

    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"
    assert (
        anonymous_client.get(
            "/api/tools", headers=_cookie_header(cookie_signin.json()["access_token"])
        ).json()["total"]
        == 0
    )


def test_cookie_write_with_csrf_token_accepted(
    anonymous_client: TestClient, cookie_signin: httpx.Response
) -> None:
    body = cookie_signin.json()
    headers = _cookie_header(body["access_token"], body["csrf_token"])
    headers["X-CSRF-Token"] = body["csrf_token"]

    response = anonymous_client.post("/api/tools", json={"name": "csrf_ok"}, headers=headers)

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/api/agents/1"), ("PATCH", "/api/users/me"), ("DELETE", "/api/tokens/1")],
)
def test_every_unsafe_method_needs_csrf(
    anonymous_client: TestClient, cookie_signin: httpx.Response, method: str, path: str
) -> None:
    headers = _cookie_header(cookie_signin.json()["access_token"])

    response = anonymous_client.request(method, path, headers=headers)

    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"


def test_bearer_header_needs_no_csrf(anonymous_client: TestClient, developer: FixtureUser) -> None:
    response = anonymous_client.post(
        "/api/tools", json={"name": "bearer_write"}, headers=developer.headers
    )

    assert response.status_code == 201


def test_invalid_cookie_rejected(anonymous_client: TestClient) -> None:
    response = anonymous_client.get("/api/users/me", headers=_cookie_header("not-a-token"))

    assert response.status_code == 401


def test_refresh_sets_new_cookies(
    anonymous_client: TestClient, cookie_signin: httpx.Response
) -> None:
    response = anonymous_client.post(
        "/api/auth/refresh",
        json={"refresh_token": cookie_signin.json()["refresh_token"], "session_cookie": True},
    )

    cookies = _set_cookies(response)
    assert set(cookies) == {SESSION_COOKIE, CSRF_COOKIE}
    session = SimpleCookie(cookies[SESSION_COOKIE])[SESSION_COOKIE]
    assert session.value == response.json()["access_token"]


def test_signout_clears_cookies(
    anonymous_client: TestClient, cookie_signin: httpx.Response
) -> None:
    response = anonymous_client.post(
        "/api/auth/signout", json={"refresh_token": cookie_signin.json()["refresh_token"]}
    )

    cookies = _set_cookies(response)
    assert set(cookies) == {SESSION_COOKIE, CSRF_COOKIE}
    for header in cookies.values():
        assert "Max-Age=0" in header
        assert "Secure" in header
        assert "Path=/" in header
