"""The client address behind trusted proxies (ASVS V6 throttling and audit rely on it)."""

import pytest

from llero.web.clients import resolve_client_address

PROXIES = ["10.0.0.0/8", "::1"]


@pytest.mark.parametrize(
    ("peer", "forwarded", "proxies", "expected"),
    [
        # No trusted proxies: the header is ignored.
        ("203.0.113.5", ["198.51.100.7"], [], "203.0.113.5"),
        # A peer that is not a trusted proxy cannot speak for anyone else.
        ("203.0.113.5", ["198.51.100.7"], PROXIES, "203.0.113.5"),
        # One trusted hop: the address it saw.
        ("10.0.0.2", ["198.51.100.7"], PROXIES, "198.51.100.7"),
        # Addresses a client wrote on the left are not believed past the first untrusted hop.
        ("10.0.0.2", ["1.1.1.1, 198.51.100.7, 10.0.0.9"], PROXIES, "198.51.100.7"),
        # Several headers count as one list.
        ("10.0.0.2", ["1.1.1.1", "198.51.100.7"], PROXIES, "198.51.100.7"),
        # A malformed hop stops the walk at the last trusted proxy.
        ("10.0.0.2", ["198.51.100.7, not-an-address"], PROXIES, "10.0.0.2"),
        # A trusted peer with no header is the client itself.
        ("10.0.0.2", [], PROXIES, "10.0.0.2"),
        # IPv4-mapped IPv6 peers match IPv4 networks.
        ("::ffff:10.0.0.2", ["198.51.100.7"], PROXIES, "198.51.100.7"),
        ("::1", ["2001:db8::1"], PROXIES, "2001:db8::1"),
    ],
)
def test_resolve_forwarded_for_from_trusted_proxies(
    peer: str, forwarded: list[str], proxies: list[str], expected: str
) -> None:
    assert resolve_client_address(peer, forwarded, proxies) == expected


def test_resolve_all_trusted_hops_gives_left_most() -> None:
    assert resolve_client_address("10.0.0.2", ["10.0.0.3, 10.0.0.4"], PROXIES) == "10.0.0.3"


def test_resolve_without_peer_gives_none() -> None:
    assert resolve_client_address(None, ["198.51.100.7"], PROXIES) is None
