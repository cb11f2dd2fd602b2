"""Shared steps for the audit tests: sessions with audit keys, appends, and raw SQL."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from llero.audit.context import Actor, RequestContext, Target
from llero.audit.events import AuditEvent
from llero.audit.keys import AuditKeys, attach_keys
from llero.audit.service import record
from llero.storage.db import Database

REQUEST = RequestContext(client_address="203.0.113.7", request_id="req-1", user_agent="pytest")

START = datetime(2026, 3, 1, tzinfo=UTC)

# (event, actor, target) of the sample trail that the query tests record one an hour from START.
EVENTS = [
    (AuditEvent.USER_LOGIN_SUCCEEDED, Actor.user(1), Target.of("user", 1)),
    (AuditEvent.TOOL_CREATED, Actor.user(1), Target.of("tool", 10)),
    (AuditEvent.TOOL_UPDATED, Actor.user(2), Target.of("tool", 10)),
    (AuditEvent.AGENT_QUARANTINED, Actor.system("watchdog"), Target.of("agent", 3)),
    (AuditEvent.TOOL_DELETED, Actor.user(2), Target.of("tool", 11)),
    (AuditEvent.SECRET_USED, Actor.agent(3), Target.of("secret", "openai")),
]


@contextmanager
def audited(database: Database, keys: AuditKeys) -> Iterator[Session]:
    """Yield a committing session with ``keys`` attached."""
    with database.transaction() as session:
        attach_keys(session, keys)
        yield session


def append(
    database: Database,
    keys: AuditKeys,
    count: int,
    *,
    event: AuditEvent = AuditEvent.TOOL_CREATED,
    detail: dict[str, Any] | None = None,
) -> list[int]:
    """Append ``count`` events, each in its own transaction; return their sequence numbers."""
    sequences = []
    for index in range(count):
        with audited(database, keys) as session:
            sequences.append(
                record(
                    session,
                    event,
                    actor=Actor.user(7),
                    target=Target.of("tool", index),
                    request=REQUEST,
                    detail={"index": index} if detail is None else detail,
                )
            )
    return sequences


def execute_raw(database: Database, statement: str, **parameters: Any) -> None:
    """Run SQL straight on the database, as an attacker with write access would."""
    with database.engine.begin() as connection:
        connection.execute(text(statement), parameters)


def scalar_raw(database: Database, statement: str, **parameters: Any) -> Any:
    with database.engine.connect() as connection:
        return connection.execute(text(statement), parameters).scalar()
