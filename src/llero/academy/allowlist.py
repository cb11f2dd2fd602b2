"""The egress policy in force: the hosts and endpoints of the settings, and the entries that
admins add in the database.

Routes that save a URL and the run loop that calls one both build the policy here, so a URL is
judged by the same rules when it is saved and when it is used. Removing an entry therefore
stops calls to the URLs that needed it at their next step, without changing any URL. Entries
follow the rules of the settings (``llero.egress.parse_allowed_host`` and
``parse_allowed_endpoint``), and every change is audited as ``settings:changed``.
"""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session

from llero.audit.context import Origin, Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.config.settings import Settings
from llero.egress import (
    HOST_MAX,
    EgressPolicy,
    Endpoint,
    parse_allowed_endpoint,
    parse_allowed_host,
)
from llero.errors import Conflict, InvalidInput, NotFound, Violation
from llero.storage.base import Base, DataClass, UTCDateTime, classified, utc_now

# A bracketed IPv6 address or a host name, a colon and five digits.
VALUE_MAX = HOST_MAX + 8
# Enough for every provider and tool server of one installation. The policy is read on every
# step of a run, so the list is kept small.
ENTRIES_MAX = 500


class EntryKind(StrEnum):
    ENDPOINT = "endpoint"
    HOST = "host"


class EgressEntry(Base):
    """A host (https, public addresses only) or an exact endpoint that an admin allowed."""

    __tablename__ = "egress_entries"
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_egress_entries_kind_value"),)

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    kind: Mapped[str] = classified(DataClass.INTERNAL, String(16))
    value: Mapped[str] = classified(DataClass.INTERNAL, String(VALUE_MAX))
    created_by_user_id: Mapped[int | None] = classified(
        DataClass.INTERNAL, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)


def egress_policy(settings: Settings, session: Session) -> EgressPolicy:
    """Return the policy of the settings joined with the entries stored in the database."""
    hosts = set(settings.egress_allowed_hosts)
    endpoints = {Endpoint.parse(item) for item in settings.egress_allowed_endpoints}
    for kind, value in session.execute(select(EgressEntry.kind, EgressEntry.value)):
        if kind == EntryKind.HOST:
            hosts.add(value)
        else:
            endpoints.add(Endpoint.parse(value))
    return EgressPolicy(frozenset(hosts), frozenset(endpoints))


def list_entries(session: Session) -> list[EgressEntry]:
    return list(session.scalars(select(EgressEntry).order_by(EgressEntry.id)))


def add_entry(
    session: Session,
    origin: Origin,
    settings: Settings,
    kind: EntryKind,
    text: str,
    *,
    user_id: int | None,
) -> EgressEntry:
    """Allow a host or endpoint; raise InvalidInput for a bad value, Conflict for a repeat."""
    value = _normalised(kind, text)
    configured = (
        settings.egress_allowed_hosts
        if kind is EntryKind.HOST
        else settings.egress_allowed_endpoints
    )
    if value in configured:
        setting = "LLERO_EGRESS_ALLOWED_" + ("HOSTS" if kind is EntryKind.HOST else "ENDPOINTS")
        raise Conflict(f"{value} is already allowed by {setting}")
    same = select(EgressEntry.id).where(EgressEntry.kind == kind, EgressEntry.value == value)
    if session.scalar(same) is not None:
        raise Conflict(f"{value} is already an allowed {kind}")
    if (session.scalar(select(func.count(EgressEntry.id))) or 0) >= ENTRIES_MAX:
        raise Conflict(
            f"the egress allowlist already has the maximum of {ENTRIES_MAX} entries; remove one "
            "first"
        )

    entry = EgressEntry(
        kind=kind.value, value=value, created_by_user_id=user_id, created_at=utc_now()
    )
    session.add(entry)
    try:
        session.flush()
    except IntegrityError as error:
        raise Conflict(f"{value} was added by a concurrent request") from error
    _audit(session, origin, entry, "egress_entry_added")
    return entry


def remove_entry(session: Session, origin: Origin, entry_id: int) -> None:
    """Remove an entry; calls to URLs that needed it are refused from their next step."""
    entry = session.get(EgressEntry, entry_id)
    if entry is None:
        raise NotFound(f"egress entry {entry_id} not found")
    _audit(session, origin, entry, "egress_entry_removed")
    session.delete(entry)
    session.flush()


def _normalised(kind: EntryKind, text: str) -> str:
    try:
        if kind is EntryKind.HOST:
            return parse_allowed_host(text)
        return str(parse_allowed_endpoint(text))
    except ValueError as error:
        raise InvalidInput(f"value: {error}", details=[Violation("value", str(error))]) from None


def _audit(session: Session, origin: Origin, entry: EgressEntry, change: str) -> None:
    record_as(
        session,
        origin,
        AuditEvent.SETTINGS_CHANGED,
        Target.of("egress_entry", entry.id),
        {"change": change, "kind": entry.kind, "value": entry.value},
    )
