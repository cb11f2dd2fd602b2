"""Audit records of sign-in attempts, written in the transaction of the attempt.

A sign-in has no signed-in caller yet, so its actor is the account being signed into, or Llero
itself when no account has the email. The email appears only as its keyed hash: an
investigator finds the records of an address with ``llero audit hash`` of the normalised email.
"""

from collections.abc import Sequence

from sqlalchemy.orm import Session

from llero.audit.context import Actor, Origin, RequestContext, Target
from llero.audit.events import AuditEvent
from llero.audit.keys import keys_of
from llero.audit.redaction import audit_hash
from llero.audit.service import record_as
from llero.identity.throttle import Throttled


def sign_in_origin(user_id: int | None, request: RequestContext) -> Origin:
    """Return the origin of a sign-in attempt on the account ``user_id``, or on no account."""
    actor = Actor.system() if user_id is None else Actor.user(user_id)
    return Origin(actor, request)


def record_login_failed(
    session: Session,
    request: RequestContext,
    *,
    user_id: int | None,
    account: str,
    reason: str,
    factor: str,
    throttled: Throttled | None = None,
) -> None:
    """Record a failed attempt; ``reason`` is a code such as wrong_password, never free text.

    An attempt refused by the throttle names the scope that refused it (account or client
    address) and the seconds until the next attempt, so the trail shows how long a lock lasts.
    """
    detail: dict[str, str | int] = {
        "email_hash": audit_hash(account, keys_of(session)),
        "factor": factor,
        "reason": reason,
    }
    if throttled is not None:
        detail["throttle_scope"] = throttled.scope
        detail["retry_after_seconds"] = throttled.retry_after
    record_as(
        session,
        sign_in_origin(user_id, request),
        AuditEvent.USER_LOGIN_FAILED,
        None if user_id is None else Target.of("user", user_id),
        detail,
    )


def record_login_succeeded(
    session: Session,
    request: RequestContext,
    *,
    user_id: int,
    session_id: int,
    factors: Sequence[str],
) -> None:
    record_as(
        session,
        sign_in_origin(user_id, request),
        AuditEvent.USER_LOGIN_SUCCEEDED,
        Target.of("user", user_id),
        {"factors": list(factors), "session": session_id},
    )
