"""Sessions and their history: create, list, read, delete, and keep messages sealed.

A session belongs to the user who opened it, and only that user reads, continues or deletes
it: another user's id returns 404 as if it did not exist, admins included, because a session
contains what a user typed to an agent.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from llero.audit.context import Origin, Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.barracks.models import Agent, AgentStatus
from llero.command.models import ChatMessage, ChatSession, ChatStatus
from llero.command.providers.base import Message, ToolCall
from llero.crypto import Secret
from llero.errors import Conflict, NotFound, Refused
from llero.storage.base import utc_now
from llero.vault.envelope import Binding, open_plaintext, seal_plaintext
from llero.vault.keyring import Keyring

BODY_FIELD = "body"
BODY_VERSION = 1
LIST_LIMIT_MAX = 200


@dataclass(frozen=True)
class SessionView:
    id: int
    agent_id: int
    title: str
    status: str
    message_count: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None


def view(chat: ChatSession) -> SessionView:
    return SessionView(
        chat.id,
        chat.agent_id,
        chat.title,
        chat.status,
        chat.message_count,
        chat.created_at,
        chat.updated_at,
        chat.expires_at,
    )


def runnable_agent(session: Session, agent_id: int, now: datetime) -> Agent:
    """Return the agent when it may run now; raise NotFound or Refused naming the reason."""
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound("agent not found")
    if agent.status == AgentStatus.QUARANTINED:
        raise Refused(f"agent {agent.name!r} is quarantined and cannot run")
    if agent.status != AgentStatus.ACTIVE:
        raise Refused(f"agent {agent.name!r} is {agent.status} and cannot run")
    check_not_expired(agent.name, agent.expires_at, now)
    return agent


def check_not_expired(name: str, expires_at: datetime | None, now: datetime) -> None:
    """Raise Refused when the agent ``name`` has expired at ``now``."""
    if expires_at is not None and expires_at <= now:
        raise Refused(f"agent {name!r} expired and cannot run")


def create_session(
    session: Session,
    origin: Origin,
    *,
    owner_user_id: int,
    agent_id: int,
    title: str,
    expires_at: datetime | None,
) -> ChatSession:
    now = utc_now()
    runnable_agent(session, agent_id, now)
    if expires_at is not None and expires_at <= now:
        raise Refused("expires_at must be in the future")
    chat = ChatSession(
        owner_user_id=owner_user_id,
        agent_id=agent_id,
        title=title,
        created_at=now,
        updated_at=now,
        expires_at=expires_at,
    )
    session.add(chat)
    session.flush()
    record_as(
        session,
        origin,
        AuditEvent.CHAT_SESSION_CREATED,
        Target.of("chat_session", chat.id),
        {"agent_id": agent_id},
    )
    return chat


def owned_session(session: Session, owner_user_id: int, chat_id: int) -> ChatSession:
    """Return the caller's session; another user's or an expired one is NotFound."""
    chat = session.get(ChatSession, chat_id)
    if chat is None or chat.owner_user_id != owner_user_id:
        raise NotFound("session not found")
    if chat.expires_at is not None and chat.expires_at <= utc_now():
        raise NotFound("session not found")
    return chat


def list_sessions(
    session: Session, owner_user_id: int, *, limit: int, offset: int
) -> tuple[list[ChatSession], int]:
    condition = ChatSession.owner_user_id == owner_user_id
    total = session.scalar(select(func.count()).select_from(ChatSession).where(condition)) or 0
    rows = session.scalars(
        select(ChatSession)
        .where(condition)
        .order_by(ChatSession.id.desc())
        .limit(min(limit, LIST_LIMIT_MAX))
        .offset(offset)
    ).all()
    return list(rows), total


def delete_session(session: Session, origin: Origin, owner_user_id: int, chat_id: int) -> None:
    chat = owned_session(session, owner_user_id, chat_id)
    if chat.status == ChatStatus.RUNNING:
        raise Conflict("the session is running; delete it when the run has ended")
    session.delete(chat)
    record_as(session, origin, AuditEvent.CHAT_SESSION_DELETED, Target.of("chat_session", chat_id))


def begin_run(session: Session, chat_id: int, *, expected: Sequence[str]) -> None:
    """Mark the session running if its status is one of ``expected``; raise Conflict if not.

    A compare-and-set, so two requests on one session cannot run at once.
    """
    result = session.execute(
        update(ChatSession)
        .where(ChatSession.id == chat_id, ChatSession.status.in_(list(expected)))
        .values(status=ChatStatus.RUNNING, updated_at=utc_now())
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("the session is busy with another message, or not waiting for this")


def end_run(session: Session, chat_id: int, status: ChatStatus) -> None:
    session.execute(
        update(ChatSession)
        .where(ChatSession.id == chat_id)
        .values(status=status, updated_at=utc_now())
    )


# --- Messages ---------------------------------------------------------------------------------


def _binding(chat_id: int, position: int) -> Binding:
    return Binding(ChatMessage.__tablename__, f"{chat_id}:{position}", BODY_FIELD, BODY_VERSION)


def append_message(session: Session, keyring: Keyring, chat_id: int, message: Message) -> int:
    """Seal and store ``message`` as the session's next message; return its position."""
    chat = session.get(ChatSession, chat_id, with_for_update=True)
    if chat is None:
        raise NotFound("session not found")
    position = chat.message_count + 1
    body = json.dumps(_encode(message), ensure_ascii=False).encode()
    session.add(
        ChatMessage(
            session_id=chat_id,
            position=position,
            role=message.role,
            body_envelope=seal_plaintext(keyring, Secret(body), _binding(chat_id, position)),
        )
    )
    chat.message_count = position
    chat.updated_at = utc_now()
    session.flush()
    return position


def history(session: Session, keyring: Keyring, chat_id: int) -> list[Message]:
    """Return every message of the session, opened, in order."""
    rows = session.scalars(
        select(ChatMessage).where(ChatMessage.session_id == chat_id).order_by(ChatMessage.position)
    ).all()
    return [_decode(_open(keyring, row)) for row in rows]


def _open(keyring: Keyring, row: ChatMessage) -> dict[str, Any]:
    plaintext = open_plaintext(keyring, row.body_envelope, _binding(row.session_id, row.position))
    data: dict[str, Any] = json.loads(plaintext.reveal())
    return data


def _encode(message: Message) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": [
            {"id": call.id, "name": call.name, "arguments": call.arguments}
            for call in message.tool_calls
        ],
        "tool_call_id": message.tool_call_id,
    }


def _decode(data: dict[str, Any]) -> Message:
    return Message(
        role=data["role"],
        content=data["content"],
        tool_calls=tuple(
            ToolCall(call["id"], call["name"], call["arguments"]) for call in data["tool_calls"]
        ),
        tool_call_id=data["tool_call_id"],
    )


def pending_calls(messages: Sequence[Message]) -> list[ToolCall]:
    """Return the tool calls of the last assistant message that have no result yet."""
    answered: set[str] = set()
    for message in reversed(messages):
        if message.role == "tool" and message.tool_call_id:
            answered.add(message.tool_call_id)
        elif message.role == "assistant":
            return [call for call in message.tool_calls if call.id not in answered]
        else:
            return []
    return []
