"""The egress rules: address checks as pure functions, and refusals end to end on 127.0.0.1."""

import ipaddress
import socket
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from llero.egress import (
    EgressPolicy,
    EgressRefused,
    Endpoint,
    GuardedBackend,
    GuardedSession,
    IPAddress,
    check_address,
    check_url,
    guarded_client,
    is_special,
)

POLICY = EgressPolicy.of(["api.openai.com", "api.anthropic.com"], ["127.0.0.1:11434"])
TIMEOUT = httpx.Timeout(5.0)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # noqa: S104 - a value under test
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "::",
    ],
)
def test_is_special_for_private_and_reserved(address: str) -> None:
    assert is_special(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "162.159.140.245", "2606:4700::6810:84e5"])
def test_is_special_false_for_public(address: str) -> None:
    assert not is_special(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://api.openai.com/v1", "plain http"),
        ("https://evil.example.com/v1", "not on the egress allowlist"),
        ("https://user:pw@api.openai.com/v1", "user name or password"),
        ("ftp://api.openai.com/", "scheme must be https"),
        ("https://api.openai.com/v1#x", "fragment"),
        ("https://127.0.0.1:8443/v1", "not on the egress allowlist"),
        ("http://127.0.0.1:11435/v1", "plain http"),
        ("https://api.openai.com:99999/", "invalid port"),
        ("https://åpi.openai.com/", "ASCII"),
        ("//api.openai.com/v1", "scheme must be https"),
    ],
)
def test_check_url_rejects_with_reason(url: str, problem: str) -> None:
    with pytest.raises(EgressRefused) as raised:
        check_url(url, POLICY)
    assert problem in raised.value.message


def test_check_url_accepts_allowlist_and_exact_endpoint() -> None:
    assert check_url("https://api.openai.com/v1", POLICY).port == 443
    assert check_url("https://API.Anthropic.com", POLICY).host == "api.anthropic.com"
    local = check_url("http://127.0.0.1:11434/v1", POLICY)
    assert (local.scheme, local.port) == ("http", 11434)


def test_check_url_rejects_listed_private_literal() -> None:
    policy = EgressPolicy.of(["10.0.0.5"], [])
    with pytest.raises(EgressRefused, match="private, loopback or reserved"):
        check_url("https://10.0.0.5/v1", policy)


def test_check_address_needs_exact_endpoint() -> None:
    loopback = ipaddress.ip_address("127.0.0.1")
    check_address(loopback, "127.0.0.1", 11434, POLICY)
    with pytest.raises(EgressRefused, match="no admin allowed"):
        check_address(loopback, "127.0.0.1", 11435, POLICY)
    check_address(ipaddress.ip_address("8.8.8.8"), "api.openai.com", 443, POLICY)


def test_endpoint_parse_rejects_missing_port() -> None:
    assert Endpoint.parse("[::1]:8080") == Endpoint("::1", 8080)
    with pytest.raises(ValueError, match="host:port"):
        Endpoint.parse("127.0.0.1")


# --- End to end against local servers ---------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    # The Cookie header of each request, or None when it had none.
    cookies_received: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        _Handler.cookies_received.append(self.headers.get("Cookie"))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return
        body = b'{"ok": true}'
        self.send_response(200)
        if self.path == "/cookie":
            self.send_header("Set-Cookie", "provider_session=planted-by-provider; Path=/")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.do_GET()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def local_server() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


async def _no_dns(host: str, port: int) -> Sequence[IPAddress]:
    raise AssertionError(f"the test must not resolve {host}")


async def test_guarded_client_reaches_allowed_endpoint(local_server: int) -> None:
    policy = EgressPolicy.of([], [f"127.0.0.1:{local_server}"])
    async with guarded_client(policy, timeout=TIMEOUT, resolver=_no_dns) as client:
        response = await client.get(f"http://127.0.0.1:{local_server}/")
    assert response.json() == {"ok": True}


async def test_guarded_client_refuses_unlisted_port(local_server: int) -> None:
    policy = EgressPolicy.of([], [f"127.0.0.1:{local_server + 1}"])
    async with guarded_client(policy, timeout=TIMEOUT, resolver=_no_dns) as client:
        with pytest.raises(EgressRefused, match="no admin allowed"):
            await client.get(f"http://127.0.0.1:{local_server}/")


async def test_guarded_client_refuses_name_resolving_to_loopback(local_server: int) -> None:
    # An allowlisted name whose DNS answer turns private between the save and the call.
    async def rebinding(host: str, port: int) -> Sequence[IPAddress]:
        return [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("127.0.0.1")]

    policy = EgressPolicy.of(["api.openai.com"], [])
    async with guarded_client(policy, timeout=TIMEOUT, resolver=rebinding) as client:
        with pytest.raises(EgressRefused, match=r"resolves to 127\.0\.0\.1"):
            await client.get(f"http://api.openai.com:{local_server}/")


async def test_guarded_client_does_not_follow_redirect(local_server: int) -> None:
    policy = EgressPolicy.of([], [f"127.0.0.1:{local_server}"])
    async with guarded_client(policy, timeout=TIMEOUT, resolver=_no_dns) as client:
        response = await client.get(f"http://127.0.0.1:{local_server}/redirect")
    assert response.status_code == 302
    assert response.next_request is not None


async def _post(session: GuardedSession, url: str) -> tuple[int, bytes]:
    try:
        async with session.post(url, json={"q": 1}, headers={}) as response:
            return response.status, await response.read()
    finally:
        await session.aclose()


async def test_guarded_session_reaches_allowed_endpoint(local_server: int) -> None:
    policy = EgressPolicy.of([], [f"127.0.0.1:{local_server}"])
    session = GuardedSession(policy, timeout=TIMEOUT, resolver=_no_dns)
    assert await _post(session, f"http://127.0.0.1:{local_server}/") == (200, b'{"ok": true}')


async def test_guarded_session_keeps_no_cookies(local_server: int) -> None:
    async def local(host: str, port: int) -> Sequence[IPAddress]:
        return [ipaddress.ip_address("127.0.0.1")]

    # A name, not an IP literal: aiohttp's default jar drops cookies from IP addresses.
    base = f"http://ollama.internal:{local_server}"
    policy = EgressPolicy.of([], [f"ollama.internal:{local_server}"])
    session = GuardedSession(policy, timeout=TIMEOUT, resolver=local)
    _Handler.cookies_received.clear()
    try:
        # The session is shared by every run with this egress policy, for any user.
        async with session.post(f"{base}/cookie", json={}, headers={}) as response:
            assert "provider_session" in response.headers.get("Set-Cookie", "")
        async with session.post(f"{base}/", json={}, headers={}):
            pass
    finally:
        await session.aclose()

    assert _Handler.cookies_received == [None, None]


async def test_guarded_session_connects_to_the_checked_address(local_server: int) -> None:
    async def local(host: str, port: int) -> Sequence[IPAddress]:
        return [ipaddress.ip_address("127.0.0.1")]

    policy = EgressPolicy.of([], [f"ollama.internal:{local_server}"])
    session = GuardedSession(policy, timeout=TIMEOUT, resolver=local)
    status, _body = await _post(session, f"http://ollama.internal:{local_server}/")
    assert status == 200


async def test_guarded_session_refuses_unlisted_port(local_server: int) -> None:
    policy = EgressPolicy.of([], [f"127.0.0.1:{local_server + 1}"])
    session = GuardedSession(policy, timeout=TIMEOUT, resolver=_no_dns)
    with pytest.raises(EgressRefused, match="no admin allowed"):
        await _post(session, f"http://127.0.0.1:{local_server}/")


async def test_guarded_session_refuses_name_resolving_to_loopback(local_server: int) -> None:
    async def rebinding(host: str, port: int) -> Sequence[IPAddress]:
        return [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("127.0.0.1")]

    policy = EgressPolicy.of(["api.openai.com"], [])
    session = GuardedSession(policy, timeout=TIMEOUT, resolver=rebinding)
    with pytest.raises(EgressRefused, match=r"resolves to 127\.0\.0\.1"):
        await _post(session, f"http://api.openai.com:{local_server}/")


async def test_guarded_session_does_not_follow_redirect(local_server: int) -> None:
    policy = EgressPolicy.of([], [f"127.0.0.1:{local_server}"])
    session = GuardedSession(policy, timeout=TIMEOUT, resolver=_no_dns)
    status, _body = await _post(session, f"http://127.0.0.1:{local_server}/redirect")
    assert status == 302


async def test_guarded_backend_refuses_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "llero.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    try:
        with pytest.raises(EgressRefused, match="Unix sockets"):
            await GuardedBackend(POLICY, _no_dns).connect_unix_socket(str(path))
    finally:
        listener.close()
