"""Where Llero may send requests: the egress allowlist and the address rules behind it.

Provider calls and webhook tools go to URLs that users type, so an unchecked URL would let a
user make the server reach its own admin ports, the cloud metadata service or the office network
(server-side request forgery). Two checks stop that:

- When a URL is saved, ``check_url`` accepts only https to a host on the allowlist, or plain
  http to a host and port that an admin allowed exactly (a local Ollama, say).
- When a connection opens, ``GuardedBackend`` (httpx, for webhooks) or ``GuardedResolver``
  (aiohttp, for provider calls) resolves the host once, checks every address with
  ``check_address`` and connects to the address it checked, so a DNS answer that changes
  between the check and the call (DNS rebinding) cannot reach a private address.

Provider calls go through aiohttp because they are Llero's hot path: on two cores one call cost
0.50 ms of CPU through httpx and 0.13 ms through aiohttp (the same local server, one
measurement).

Redirects are never followed: a redirect could name any host, so it is reported as an error.
"""

import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpcore
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

from llero.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The official hosts of the providers Llero speaks to out of the box.
DEFAULT_ALLOWED_HOSTS = ("api.openai.com", "api.anthropic.com")
URL_MAX = 2048

# IPv6 prefixes that carry an IPv4 address inside: NAT64 (RFC 6052) and 6to4 (RFC 3056).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
# The instance metadata service of AWS on IPv6 (Nitro instances); a unique local address, so
# is_link_local does not cover it.
_AWS_METADATA_V6 = ipaddress.IPv6Address("fd00:ec2::254")


class EgressRefused(InvalidInput):
    """A URL or address that Llero must not send a request to; the message names the rule."""

    code = "egress_refused"


@dataclass(frozen=True)
class Endpoint:
    """A host and port that an admin allowed, including private and loopback addresses."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Endpoint":
        """Parse ``host:port`` or ``[v6]:port``; raise ValueError naming the problem."""
        parts = urlsplit(f"//{text.strip()}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{text!r} has an invalid port") from None
        if not parts.hostname or port is None:
            raise ValueError(f"{text!r} must be host:port, such as 127.0.0.1:11434")
        return cls(parts.hostname.lower(), port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# A DNS name: dot-separated labels of letters, digits and hyphens (RFC 1123), in punycode.
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
HOST_MAX = 253


def parse_allowed_host(text: str) -> str:
    """Return ``text`` as an allowlist host (lower case); raise ValueError naming the problem.

    An allowlisted host is reached over https only, and never at a private address, so an entry
    that could only ever be private (a private IP literal) is rejected with a pointer to the
    endpoint list instead of being accepted and then refused at every call.
    """
    host = text.strip().lower()
    if not host or len(host) > HOST_MAX:
        raise ValueError(f"{text!r} must be a host name of 1 to {HOST_MAX} characters")
    literal = _literal_address(host)
    if literal is not None:
        if is_special(literal):
            raise ValueError(
                f"{host} is a private, loopback or reserved address; allow it as host:port in "
                "the endpoint list instead"
            )
        return host
    if not all(_HOST_LABEL.fullmatch(label) for label in host.split(".")):
        raise ValueError(
            f"{text!r} must be a plain host name such as api.openai.com, without scheme, port, "
            "path or wildcard; write a non-ASCII name in punycode"
        )
    return host


def parse_allowed_endpoint(text: str) -> Endpoint:
    """Return ``text`` as an allowed endpoint; raise ValueError naming the problem.

    Link-local addresses are rejected: 169.254.169.254 and fd00:ec2::254 are where cloud
    metadata services hand out credentials, and no model server is reached there.
    """
    if any(char in text for char in "/?#@"):
        raise ValueError(f"{text!r} must be host:port only, without scheme, path or user")
    endpoint = Endpoint.parse(text)
    if endpoint.port == 0:
        raise ValueError(f"{text!r} has port 0; use a port from 1 to 65535")
    literal = _literal_address(endpoint.host)
    if literal is None:
        return Endpoint(parse_allowed_host(endpoint.host), endpoint.port)
    if _never_allowed(literal):
        raise ValueError(
            f"{endpoint.host} is a link-local, multicast or unspecified address, where cloud "
            "metadata services answer; it cannot be allowed"
        )
    return endpoint


def _never_allowed(address: IPAddress) -> bool:
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return _never_allowed(embedded)
    return (
        address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address == _AWS_METADATA_V6
    )


@dataclass(frozen=True)
class EgressPolicy:
    """The hosts reachable over https, and the exact endpoints allowed to be private."""

    allowed_hosts: frozenset[str] = frozenset(DEFAULT_ALLOWED_HOSTS)
    allowed_endpoints: frozenset[Endpoint] = frozenset()

    @classmethod
    def of(cls, hosts: Iterable[str], endpoints: Iterable[str]) -> "EgressPolicy":
        return cls(
            frozenset(host.strip().lower() for host in hosts if host.strip()),
            frozenset(Endpoint.parse(item) for item in endpoints if item.strip()),
        )

    def allows_endpoint(self, host: str, port: int) -> bool:
        return Endpoint(host.lower(), port) in self.allowed_endpoints


@dataclass(frozen=True)
class Target:
    """A URL that passed ``check_url``: its scheme, host and effective port."""

    url: str
    scheme: str
    host: str
    port: int


def check_url(url: str, policy: EgressPolicy) -> Target:
    """Return the target of ``url`` when the policy allows it; raise EgressRefused otherwise."""
    if len(url) > URL_MAX:
        raise EgressRefused(f"the URL is longer than {URL_MAX} characters")
    if not url.isascii() or any(char.isspace() for char in url):
        raise EgressRefused(
            "the URL must be ASCII without spaces; write a non-ASCII host in punycode"
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise EgressRefused(f"the URL scheme must be https, not {scheme or 'missing'!r}")
    if parts.username is not None or parts.password is not None:
        raise EgressRefused("the URL must not contain a user name or password")
    if parts.fragment:
        raise EgressRefused("the URL must not contain a fragment")
    host = (parts.hostname or "").lower()
    if not host:
        raise EgressRefused("the URL has no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise EgressRefused("the URL has an invalid port") from None

    if policy.allows_endpoint(host, port):
        return Target(url, scheme, host, port)
    if scheme != "https":
        raise EgressRefused(
            f"plain http is allowed only to endpoints an admin listed; {host}:{port} is not one"
        )
    if host not in policy.allowed_hosts:
        raise EgressRefused(f"the host {host!r} is not on the egress allowlist")
    literal = _literal_address(host)
    if literal is not None and is_special(literal):
        raise EgressRefused(f"the address {host} is private, loopback or reserved")
    return Target(url, scheme, host, port)


def is_special(address: IPAddress) -> bool:
    """Return whether ``address`` is not a public unicast address (private, loopback, ...).

    IPv4 addresses carried inside IPv6 (mapped, NAT64, 6to4) are judged by the IPv4 address.
    """
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return is_special(embedded)
    return not address.is_global or address.is_multicast


def check_address(address: IPAddress, host: str, port: int, policy: EgressPolicy) -> None:
    """Raise EgressRefused when a connection to ``address`` for ``host:port`` is not allowed."""
    if is_special(address) and not policy.allows_endpoint(host, port):
        raise EgressRefused(
            f"{host}:{port} resolves to {address}, a private, loopback or reserved address "
            "that no admin allowed"
        )


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    return None


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]


async def system_resolver(host: str, port: int) -> Sequence[IPAddress]:
    """Resolve ``host`` with the operating system's resolver."""
    import anyio  # noqa: PLC0415 - imported where used, like httpcore does

    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


class GuardedBackend(AsyncNetworkBackend):
    """A network backend that checks every address before it connects, and connects to it.

    httpcore starts TLS with the URL's host name after ``connect_tcp`` returns, so certificates
    are still checked against the name, not the address.
    """

    def __init__(self, policy: EgressPolicy, resolver: Resolver = system_resolver) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> AsyncNetworkStream:
        literal = _literal_address(host)
        addresses = [literal] if literal is not None else await self._resolver(host, port)
        address = _checked_addresses(addresses, host, port, self._policy)
        return await self._inner.connect_tcp(
            str(address), port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> AsyncNetworkStream:
        raise EgressRefused("Llero does not send requests to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose connections pass the egress rules; no proxy, no environment."""

    def __init__(
        self,
        policy: EgressPolicy,
        resolver: Resolver = system_resolver,
        *,
        max_connections: int = 100,
    ) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
            network_backend=GuardedBackend(policy, resolver),
        )


def guarded_client(
    policy: EgressPolicy,
    *,
    timeout: httpx.Timeout,
    resolver: Resolver = system_resolver,
) -> httpx.AsyncClient:
    """Return a client for outbound calls: egress-checked, no redirects, no proxies from env."""
    return httpx.AsyncClient(
        transport=GuardedTransport(policy, resolver),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


def _checked_addresses(
    addresses: Sequence[IPAddress], host: str, port: int, policy: EgressPolicy
) -> IPAddress:
    """Check every address of ``host``; return the one to connect to."""
    if not addresses:
        raise EgressRefused(f"{host} did not resolve to any address")
    # Every address must pass: a resolver result mixing public and private addresses is a known
    # way to slip a private one past a check of the first.
    for address in addresses:
        check_address(address, host, port, policy)
    return addresses[0]


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that checks every address of a host and returns the first.

    aiohttp starts TLS with the URL's host name (``hostname`` below), so certificates are still
    checked against the name, not the address. It does not ask a resolver about IP literals;
    ``GuardedSession`` checks those itself.
    """

    def __init__(self, policy: EgressPolicy, resolver: Resolver = system_resolver) -> None:
        self._policy = policy
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = _checked_addresses(await self._resolver(host, port), host, port, self._policy)
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


class GuardedSession:
    """An aiohttp session for outbound POSTs: egress-checked, no redirects, no proxies."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        timeout: httpx.Timeout,
        resolver: Resolver = system_resolver,
        max_connections: int = 100,
    ) -> None:
        self._policy = policy
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(policy, resolver),
            # Each new connection resolves and checks its host again.
            use_dns_cache=False,
            limit=max_connections,
            keepalive_timeout=30.0,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=timeout.connect, sock_read=timeout.read
            ),
            trust_env=False,
            # A provider's cookies would go with the next call of any user and agent that
            # shares this session, so none is kept.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def post(
        self, url: str, *, json: Any, headers: dict[str, str]
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """Return the context manager of a POST to ``url``; raise EgressRefused first when the
        URL names an IP literal that the policy does not allow."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        literal = _literal_address(host)
        if literal is not None:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            check_address(literal, host, port, self._policy)
        return self._session.post(url, json=json, headers=headers, allow_redirects=False)

    async def aclose(self) -> None:
        await self._session.close()
