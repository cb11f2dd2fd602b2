"""CORS answers exactly one configured origin, https://app.example.com, compared byte for byte.

Any other origin, including look-alikes and case variants, gets no Access-Control-* header at
all. Its preflights are rejected with 403, and its state-changing requests are rejected before
the route runs.
"""

import httpx
import pytest
from fastapi.testclient import TestClient

from llero.storage.db import Database
from tests.web.probes import ALLOWED_ORIGIN, category_count

FOREIGN_ORIGINS = [
    "https://app.example.com.evil.com",
    "http://app.example.com",
    "https://app.example.com:8443",
    "https://evil-app.example.com",
    "https://app.example.co",
    "https://evil.com",
    "null",
    "HTTPS://APP.EXAMPLE.COM",
    "https://APP.example.com",
    "https://app.example.com/",
    "https://app.example.com, https://evil.com",
]


def _cors_headers(response: httpx.Response) -> list[str]:
    return [name for name in response.headers if name.lower().startswith("access-control-")]


def _preflight(
    client: TestClient, origin: str, method: str = "POST", headers: str | None = None
) -> httpx.Response:
    request_headers = {"origin": origin, "access-control-request-method": method}
    if headers is not None:
        request_headers["access-control-request-headers"] = headers
    return client.options("/probe/echo", headers=request_headers)


def test_allowed_origin_gets_its_exact_origin(probe_client: TestClient) -> None:
    response = probe_client.get("/healthz", headers={"origin": ALLOWED_ORIGIN})

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "Origin" in [part.strip() for part in response.headers["vary"].split(",")]
    assert "access-control-allow-credentials" not in response.headers


def test_allowed_origin_may_change_state(probe_client: TestClient, database: Database) -> None:
    response = probe_client.post("/probe/category", headers={"origin": ALLOWED_ORIGIN})

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert category_count(database) == 1


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_foreign_origin_gets_no_cors_headers_on_read(probe_client: TestClient, origin: str) -> None:
    response = probe_client.get("/healthz", headers={"origin": origin})

    assert response.status_code == 200
    assert _cors_headers(response) == []


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_foreign_origin_preflight_rejected(probe_client: TestClient, origin: str) -> None:
    response = _preflight(probe_client, origin)

    assert response.status_code == 403
    assert response.json()["error"] == "origin_not_allowed"
    assert _cors_headers(response) == []


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_foreign_origin_state_change_rejected(
    probe_client: TestClient, database: Database, origin: str, method: str
) -> None:
    response = probe_client.request(method, "/probe/category", headers={"origin": origin})

    assert response.status_code == 403
    assert response.json()["error"] == "origin_not_allowed"
    assert _cors_headers(response) == []
    assert category_count(database) == 0


def test_same_origin_state_change_allowed(probe_client: TestClient, database: Database) -> None:
    # TestClient's own origin: what a browser sends for a page served by Llero itself.
    response = probe_client.post("/probe/category", headers={"origin": "http://testserver"})

    assert response.status_code == 200
    assert _cors_headers(response) == []
    assert category_count(database) == 1


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_allowed_preflight_lists_methods_and_headers(probe_client: TestClient, method: str) -> None:
    response = _preflight(probe_client, ALLOWED_ORIGIN, method, "Content-Type, Authorization")

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    allowed_methods = {
        m.strip() for m in response.headers["access-control-allow-methods"].split(",")
    }
    assert allowed_methods == {"GET", "POST", "PUT", "DELETE"}
    allowed_headers = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert allowed_headers == {"content-type", "authorization"}
    assert response.headers["vary"] == "Origin"
    assert int(response.headers["access-control-max-age"]) <= 600


@pytest.mark.parametrize("method", ["PATCH", "TRACE", "CONNECT", "HEAD", "OPTIONS", "get", "FOO"])
def test_preflight_for_unlisted_method_rejected(probe_client: TestClient, method: str) -> None:
    response = _preflight(probe_client, ALLOWED_ORIGIN, method)

    assert response.status_code == 403
    assert _cors_headers(response) == []


@pytest.mark.parametrize(
    "headers",
    ["X-Api-Key", "Content-Type, X-Custom", "Cookie", "authorization, x-forwarded-for"],
)
def test_preflight_for_unlisted_header_rejected(probe_client: TestClient, headers: str) -> None:
    response = _preflight(probe_client, ALLOWED_ORIGIN, "POST", headers)

    assert response.status_code == 403
    assert _cors_headers(response) == []
