"""Visibility filters and share records, the same for tools and agents.

A share table has the object's id, a ``user_id`` and an ``everyone`` flag (see
``llero.forge.models.ToolShare``). The functions here take the share model and its object id
column, so forge and barracks apply one rule; each domain records its own audit events.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, exists, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from llero.access.ownership import Caller
from llero.access.roles import Role
from llero.audit.context import Origin
from llero.errors import Conflict, InvalidInput, NotFound, Violation
from llero.identity.models import User
from llero.storage.base import utc_now


class ShareRow(Protocol):
    id: Any
    user_id: Any
    everyone: Any
    created_at: Any


@dataclass(frozen=True)
class ShareTable:
    """A share model and the column that names the shared object."""

    model: type[Any]
    object_column: InstrumentedAttribute[int]
    kind: str  # "tool" or "agent", for messages


@dataclass(frozen=True)
class ShareView:
    id: int
    user_id: int | None
    everyone: bool
    created_at: datetime


def visible_clause(
    owner_column: InstrumentedAttribute[int | None],
    id_column: InstrumentedAttribute[int],
    shares: ShareTable,
    user_id: int | ColumnElement[int],
) -> ColumnElement[bool]:
    """Return the condition that a row is owned by, or shared with, ``user_id`` or everyone.

    ``user_id`` may be a bound parameter, so a cached statement takes the caller as a value.
    """
    share = shares.model
    shared = exists().where(
        shares.object_column == id_column,
        or_(share.user_id == user_id, share.everyone.is_(true())),
    )
    return or_(owner_column == user_id, shared)


def is_visible(
    session: Session, caller: Caller, shares: ShareTable, object_id: int, owner: int | None
) -> bool:
    """Return whether ``caller`` sees the object ``object_id`` owned by ``owner``."""
    if caller.owns(owner):
        return True
    if caller.user_id is None:
        return False
    share = shares.model
    found = session.scalar(
        select(share.id)
        .where(
            shares.object_column == object_id,
            or_(share.user_id == caller.user_id, share.everyone.is_(true())),
        )
        .limit(1)
    )
    return found is not None


def caller_for_owner(session: Session, owner_user_id: int | None, origin: Origin) -> Caller:
    """Return a caller that sees what the user ``owner_user_id`` sees (the system for None)."""
    if owner_user_id is None:
        return Caller(None, True, origin)
    role = session.scalar(select(User.role).where(User.id == owner_user_id))
    return Caller(owner_user_id, role == Role.ADMIN, origin)


def list_shares(session: Session, shares: ShareTable, object_id: int) -> list[ShareView]:
    statement = (
        select(shares.model).where(shares.object_column == object_id).order_by(shares.model.id)
    )
    return [_view(row) for row in session.scalars(statement)]


def add_share(
    session: Session,
    shares: ShareTable,
    object_id: int,
    owner_user_id: int | None,
    *,
    user_id: int | None,
    everyone: bool,
) -> ShareView:
    """Store a share with one user or with everyone; the caller holds the object's row lock.

    Raises InvalidInput for a missing or owning user and Conflict for a repeated share.
    """
    share = shares.model
    if everyone:
        if user_id is not None:
            raise _invalid("user_id", "must be left out when everyone is true")
        repeated = share.everyone.is_(true())
        target = "everyone"
    else:
        if user_id is None:
            raise _invalid("user_id", "is required unless everyone is true")
        if session.get(User, user_id) is None:
            raise _invalid("user_id", f"user {user_id} not found")
        if user_id == owner_user_id:
            raise _invalid("user_id", f"user {user_id} owns this {shares.kind}")
        repeated = share.user_id == user_id
        target = f"user {user_id}"

    existing = session.scalar(
        select(share.id).where(shares.object_column == object_id, repeated).limit(1)
    )
    if existing is not None:
        raise Conflict(f"{shares.kind} {object_id} is already shared with {target}")

    row = share(user_id=user_id, everyone=everyone, created_at=utc_now())
    setattr(row, shares.object_column.key, object_id)
    session.add(row)
    session.flush()
    return _view(row)


def remove_share(session: Session, shares: ShareTable, object_id: int, share_id: int) -> ShareView:
    """Delete one share of the object, or raise NotFound when it has no such share."""
    share = shares.model
    row = session.scalar(
        select(share).where(share.id == share_id, shares.object_column == object_id)
    )
    if row is None:
        raise NotFound(f"share {share_id} of {shares.kind} {object_id} not found")
    removed = _view(row)
    session.delete(row)
    session.flush()
    return removed


def share_detail(view: ShareView) -> dict[str, Any]:
    """Return what an audit record of a share names: the share and whom it grants."""
    if view.everyone:
        return {"share_id": view.id, "everyone": True}
    return {"share_id": view.id, "user_id": view.user_id}


def _view(row: ShareRow) -> ShareView:
    return ShareView(int(row.id), row.user_id, bool(row.everyone), row.created_at)


def _invalid(field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{field}: {problem}", details=[Violation(field, problem)])
