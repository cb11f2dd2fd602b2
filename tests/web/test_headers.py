"""Security headers on every response: success, client errors, middleware refusals and the 500.

Expected values are written out here rather than imported from llero.web.headers, so a change to
a header value fails this test and has to be made on purpose.
"""

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from llero.config.settings import Settings
from llero.storage.db import Database
from tests.web.probes import ALLOWED_ORIGIN, build_probe_app

API_CSP = "default-src 'none'; frame-ancestors 'none'"
PAGE_CSP = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)

EXPECTED_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "x-xss-protection": "0",
    "x-permitted-cross-domain-policies": "none",
}

# Features no Llero page uses; each must be switched off for every origin.
DENIED_FEATURES = ("camera", "microphone", "geolocation", "payment", "usb", "display-capture")

Call = Callable[[TestClient], httpx.Response]

RESPONSES: list[tuple[str, Call, int]] = [
    ("ok", lambda c: c.get("/healthz"), 200),
    ("not_found", lambda c: c.get("/no-such-route"), 404),
    ("method_not_allowed", lambda c: c.delete("/healthz"), 405),
    (
        "body_too_large",
        lambda c: c.post(
            "/probe/echo",
            content=b" " * (2 * 1024 * 1024),
            headers={"content-type": "application/json"},
        ),
        413,
    ),
    ("validation_error", lambda c: c.post("/probe/echo", json={"name": 1, "count": 1}), 422),
    (
        "invalid_json",
        lambda c: c.post("/probe/echo", content=b"{", headers={"content-type": "application/json"}),
        400,
    ),
    ("invalid_host", lambda c: c.get("/healthz", headers={"host": "evil.com"}), 400),
    (
        "origin_refused",
        lambda c: c.post("/probe/category", headers={"origin": "https://evil.com"}),
        403,
    ),
    (
        "preflight",
        lambda c: c.options(
            "/probe/echo",
            headers={"origin": ALLOWED_ORIGIN, "access-control-request-method": "POST"},
        ),
        204,
    ),
    ("domain_error", lambda c: c.post("/probe/category-refuse"), 409),
    ("internal_error", lambda c: c.get("/probe/fail"), 500),
]


def _permissions_policy(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["permissions-policy"]
    return dict(item.strip().split("=", 1) for item in policy.split(","))


@pytest.mark.parametrize(
    ("call", "status"),
    [pytest.param(call, status, id=name) for name, call, status in RESPONSES],
)
def test_security_headers_on_every_response(
    probe_client: TestClient, call: Call, status: int
) -> None:
    response = call(probe_client)

    assert response.status_code == status
    for name, value in EXPECTED_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert response.headers["content-security-policy"] == API_CSP
    for feature in DENIED_FEATURES:
        assert _permissions_policy(response).get(feature) == "()", feature
    assert "strict-transport-security" not in response.headers
    assert "server" not in response.headers
    assert "x-powered-by" not in response.headers


@pytest.mark.parametrize(
    ("call", "status"),
    [pytest.param(call, status, id=name) for name, call, status in RESPONSES if status >= 400],
)
def test_error_responses_carry_request_id(
    probe_client: TestClient, call: Call, status: int
) -> None:
    response = call(probe_client)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_html_response_gets_page_csp(probe_client: TestClient) -> None:
    response = probe_client.get("/probe/page")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == PAGE_CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


def test_page_csp_forbids_plugins_base_and_framing() -> None:
    directives = dict(directive.strip().split(" ", 1) for directive in PAGE_CSP.split(";"))

    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'self'"


def test_server_headers_set_by_route_are_removed(probe_client: TestClient) -> None:
    response = probe_client.get("/probe/branded")

    assert response.status_code == 200
    assert "server" not in response.headers
    assert "x-powered-by" not in response.headers


def test_request_ids_differ_between_requests(probe_client: TestClient) -> None:
    first = probe_client.get("/healthz").headers["x-request-id"]
    second = probe_client.get("/healthz").headers["x-request-id"]

    assert first != second
    assert len(first) == 16


@pytest.fixture
def tls_client(settings: Settings, database: Database, tmp_path: Path) -> Iterator[TestClient]:
    # The app only needs to know that TLS is on; uvicorn, not the app, reads the files.
    tls_settings = settings.model_copy(
        update={"tls_certfile": tmp_path / "cert.pem", "tls_keyfile": tmp_path / "key.pem"}
    )
    app = build_probe_app(tls_settings, database)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(
    ("call", "status"),
    [pytest.param(call, status, id=name) for name, call, status in RESPONSES],
)
def test_hsts_sent_on_every_response_with_tls(
    tls_client: TestClient, call: Call, status: int
) -> None:
    response = call(tls_client)

    assert response.status_code == status
    hsts = [part.strip() for part in response.headers["strict-transport-security"].split(";")]
    max_age = int(hsts[0].removeprefix("max-age="))
    assert max_age >= 365 * 24 * 3600
    assert "includeSubDomains" in hsts
