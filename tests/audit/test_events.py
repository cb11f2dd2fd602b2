"""Event names are typed, sorted and never reused; actors, targets and requests are checked."""

import re

import pytest

from llero.audit.context import (
    USER_AGENT_MAX,
    Actor,
    RequestContext,
    Target,
    normalise_client_address,
)
from llero.audit.events import ActorKind, AuditEvent

REQUIRED_EVENTS = {
    "user:login_succeeded",
    "user:login_failed",
    "user:logout",
    "user:mfa_enabled",
    "user:mfa_disabled",
    "user:password_changed",
    "user:password_reset",
    "role:granted",
    "user:status_changed",
    "token:family_revoked",
    "session:revoked",
    "api_token:created",
    "api_token:revoked",
    "tool:created",
    "tool:updated",
    "tool:deleted",
    "tool:imported",
    "tool:exported",
    "agent:created",
    "agent:updated",
    "agent:deleted",
    "agent:status_changed",
    "agent:quarantined",
    "secret:created",
    "secret:rotated",
    "secret:deleted",
    "secret:used",
    "grant:created",
    "grant:revoked",
    "settings:changed",
    "backup:created",
    "backup:restored",
    "incident:revoke_all",
}


def test_event_names_sorted() -> None:
    values = [event.value for event in AuditEvent]

    assert values == sorted(values)


def test_event_names_are_subject_action() -> None:
    for event in AuditEvent:
        assert re.fullmatch(r"[a-z][a-z_]*:[a-z][a-z_]*", event.value), event
        subject, action = event.value.split(":")
        assert event.name == f"{subject}_{action}".upper()


def test_required_events_present() -> None:
    assert REQUIRED_EVENTS - {event.value for event in AuditEvent} == set()


@pytest.mark.parametrize("subject", ["category", "provider"])
def test_every_subject_has_lifecycle_events(subject: str) -> None:
    names = {event.value for event in AuditEvent}

    assert {f"{subject}:created", f"{subject}:updated", f"{subject}:deleted"} <= names


def test_actor_constructors() -> None:
    assert Actor.user(5) == Actor(ActorKind.USER, "5")
    assert Actor.agent("a1") == Actor(ActorKind.AGENT, "a1")
    assert Actor.system() == Actor(ActorKind.SYSTEM, "llero")
    assert Actor(ActorKind.SYSTEM, None).id is None


@pytest.mark.parametrize(
    ("kind", "actor_id", "message"),
    [
        (ActorKind.USER, None, "needs an id"),
        (ActorKind.AGENT, None, "needs an id"),
        (ActorKind.USER, "", "1 to 64 characters"),
        (ActorKind.USER, "x" * 65, "1 to 64 characters"),
        (ActorKind.USER, "bad\nid", "control characters"),
    ],
)
def test_invalid_actor_rejected(kind: ActorKind, actor_id: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Actor(kind, actor_id)


@pytest.mark.parametrize(
    ("kind", "target_id"),
    [
        ("Tool", "1"),
        ("tool kind", "1"),
        ("1tool", "1"),
        ("t" * 33, "1"),
        ("tool", ""),
        ("tool", "x" * 129),
        ("tool", "a\x1b[31m"),
    ],
)
def test_invalid_target_rejected(kind: str, target_id: str) -> None:
    with pytest.raises(ValueError, match="audit target"):
        Target(kind, target_id)


@pytest.mark.parametrize(
    ("address", "stored"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("testclient", "testclient"),
    ],
)
def test_client_address_normalised(address: str, stored: str) -> None:
    assert normalise_client_address(address) == stored
    assert RequestContext(client_address=address).client_address == stored


@pytest.mark.parametrize(
    "address", ["203.0.113.7, 10.0.0.1", "evil host", "a" * 65, "", "<script>", "1.2.3.4\n"]
)
def test_invalid_client_address_rejected(address: str) -> None:
    with pytest.raises(ValueError, match="client address"):
        RequestContext(client_address=address)


@pytest.mark.parametrize("request_id", ["", "x" * 65, "id with space", "id\n"])
def test_invalid_request_id_rejected(request_id: str) -> None:
    with pytest.raises(ValueError, match="request id"):
        RequestContext(request_id=request_id)


def test_long_user_agent_cut() -> None:
    context = RequestContext(user_agent="A" * 10_000)

    assert context.user_agent == "A" * USER_AGENT_MAX
