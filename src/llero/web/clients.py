"""Who is calling: the client address behind trusted proxies, and the audit context of a request.

X-Forwarded-For is trusted only when the direct peer is a configured trusted proxy. It is then
read from the right up to the first address that is not a trusted proxy, because every hop left
of that one could have been written by the client.
"""

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from fastapi import Request

from llero.access.permissions import principal_of
from llero.audit.context import Actor, Origin, RequestContext
from llero.web.middleware import request_id_of

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# More hops than any real proxy chain; a longer header is read only this far from the right.
MAX_FORWARDED_HOPS = 16


@lru_cache(maxsize=16)
def _networks(proxies: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in proxies)


def _parse(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


def _trusted(address: str, networks: Sequence[_Network]) -> bool:
    parsed = _parse(address)
    return parsed is not None and any(parsed in network for network in networks)


def resolve_client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[str]
) -> str | None:
    """Return the client's address given the socket peer and the X-Forwarded-For headers.

    The result is the peer unless it is a trusted proxy, and otherwise the right-most forwarded
    address that is not a trusted proxy. A malformed entry stops the walk at the last trusted
    hop, because nothing further left can be checked.
    """
    networks = _networks(tuple(trusted_proxies))
    if peer is None or not networks or not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops[-MAX_FORWARDED_HOPS:]):
        parsed = _parse(hop)
        if parsed is None:
            return client
        client = str(parsed)
        if not any(parsed in network for network in networks):
            return client
    return client


def client_address(request: Request) -> str | None:
    """Return the client address of ``request`` by the rule of ``resolve_client_address``."""
    trusted = request.app.state.settings.trusted_proxies
    peer = request.client.host if request.client else None
    return resolve_client_address(peer, request.headers.getlist("x-forwarded-for"), trusted)


def audit_context(request: Request) -> RequestContext:
    """Build the audit context of ``request``: client address, request id and user agent."""
    address = client_address(request)
    try:
        return RequestContext(
            client_address=address,
            request_id=request_id_of(request.scope),
            user_agent=request.headers.get("user-agent"),
        )
    except ValueError:
        # A client name that is not a short identifier (a socket path, say) is left out.
        return RequestContext(
            request_id=request_id_of(request.scope), user_agent=request.headers.get("user-agent")
        )


def origin_of(request: Request) -> Origin:
    """Return the signed-in user of ``request`` with its audit context, for authenticated routes."""
    return Origin(Actor.user(principal_of(request).user_id), audit_context(request))
