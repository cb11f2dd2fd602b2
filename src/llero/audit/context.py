"""Who caused an audit event, what it acted on, and the request it came with.

These values are built by code, not parsed from a client, so an invalid one is a programming
error and raises ValueError. The one exception is the User-Agent header, which any client sets:
it is cut to a fixed length instead of being rejected, so a long header cannot block an action.
"""

import functools
import ipaddress
import re
from dataclasses import dataclass

from llero.audit.events import ActorKind

ACTOR_ID_MAX = 64
TARGET_KIND_MAX = 32
TARGET_ID_MAX = 128
CLIENT_ADDRESS_MAX = 64
REQUEST_ID_MAX = 64
USER_AGENT_MAX = 256

# The name of the process or job when Llero itself acts, such as "cli" or "retention".
DEFAULT_SYSTEM_ACTOR = "llero"

_TARGET_KIND = re.compile(r"[a-z][a-z0-9_]*")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]+")
# A client that is not an IP address: a test client's name or a Unix socket peer.
_CLIENT_NAME = re.compile(r"[A-Za-z0-9._:-]+")


def _check_identifier(value: str, name: str, max_length: int) -> None:
    if not value or len(value) > max_length:
        raise ValueError(f"audit {name} must have 1 to {max_length} characters")
    if not value.isprintable():
        raise ValueError(f"audit {name} must not contain control characters")


@dataclass(frozen=True)
class Actor:
    """The user, agent or system process that caused an event."""

    kind: ActorKind
    id: str | None

    def __post_init__(self) -> None:
        if self.id is None:
            if self.kind is not ActorKind.SYSTEM:
                raise ValueError(f"an audit actor of kind {self.kind} needs an id")
            return
        _check_identifier(self.id, "actor id", ACTOR_ID_MAX)

    @classmethod
    def user(cls, user_id: int | str) -> "Actor":
        return cls(ActorKind.USER, str(user_id))

    @classmethod
    def agent(cls, agent_id: int | str) -> "Actor":
        return cls(ActorKind.AGENT, str(agent_id))

    @classmethod
    def system(cls, name: str = DEFAULT_SYSTEM_ACTOR) -> "Actor":
        return cls(ActorKind.SYSTEM, name)


@dataclass(frozen=True)
class Target:
    """The object an event acted on, such as ``Target("tool", "42")``."""

    kind: str
    id: str

    def __post_init__(self) -> None:
        if len(self.kind) > TARGET_KIND_MAX or not _TARGET_KIND.fullmatch(self.kind):
            raise ValueError(
                f"audit target kind must be 1 to {TARGET_KIND_MAX} lower-case letters, digits "
                "and underscores, starting with a letter"
            )
        _check_identifier(self.id, "target id", TARGET_ID_MAX)

    @classmethod
    def of(cls, kind: str, target_id: int | str) -> "Target":
        return cls(kind, str(target_id))


# Every audited request normalises its client's address, and a client sends many requests.
@functools.lru_cache(maxsize=4096)
def normalise_client_address(address: str) -> str:
    """Return an IP address in its canonical form, or a short client name unchanged.

    Raises ValueError for anything else, so a header value copied without checking is caught.
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        if len(address) > CLIENT_ADDRESS_MAX or not _CLIENT_NAME.fullmatch(address):
            raise ValueError(
                "audit client address must be an IP address or a name of at most "
                f"{CLIENT_ADDRESS_MAX} letters, digits and . _ : -"
            ) from None
        return address
    # An IPv4 client of a dual-stack socket arrives as ::ffff:a.b.c.d; store the IPv4 form so
    # one client has one address in queries.
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


@dataclass(frozen=True)
class RequestContext:
    """The HTTP request an event came with; the web layer builds it once per request.

    ``client_address`` is the address of the client as resolved by the web layer (the socket
    peer, or the address a trusted proxy reported), never a header value taken as given.
    """

    client_address: str | None = None
    request_id: str | None = None
    user_agent: str | None = None

    def __post_init__(self) -> None:
        if self.client_address is not None:
            object.__setattr__(
                self, "client_address", normalise_client_address(self.client_address)
            )
        if self.request_id is not None and (
            len(self.request_id) > REQUEST_ID_MAX or not _REQUEST_ID.fullmatch(self.request_id)
        ):
            raise ValueError(
                f"audit request id must be 1 to {REQUEST_ID_MAX} letters, digits and . _ : -"
            )
        if self.user_agent is not None:
            object.__setattr__(self, "user_agent", self.user_agent[:USER_AGENT_MAX])


@dataclass(frozen=True)
class Origin:
    """Who acts and the request they act through: what a service needs to audit an action.

    Routes build it with ``llero.web.clients.origin_of``; the CLI with ``Origin.system``.
    """

    actor: Actor
    request: RequestContext | None = None

    @classmethod
    def system(cls, name: str = DEFAULT_SYSTEM_ACTOR) -> "Origin":
        return cls(Actor.system(name))
