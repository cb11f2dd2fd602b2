"""Finding users by email address, and a helper for the compare-and-set updates that make codes
and tokens single-use."""

from typing import Any, cast

from sqlalchemy import CursorResult, Update, select
from sqlalchemy.orm import Session

from llero.errors import InvalidInput, Violation
from llero.identity.emails import normalize_email
from llero.identity.models import EMAIL_MAX, User
from llero.vault.fields import field_keys_of

# The purpose under which the blind index key is derived for email addresses.
EMAIL_INDEX_PURPOSE = "users.email"


def email_key_of(session: Session, email: str) -> str:
    """Return the blind index stored in ``users.email_key`` for ``email``.

    Raises InvalidInput (EmailRejected) for an address that is too long or invalid.
    """
    if len(email) > EMAIL_MAX:
        raise InvalidInput(
            f"email is longer than {EMAIL_MAX} characters",
            details=[Violation("email", f"is longer than {EMAIL_MAX} characters")],
        )
    return field_keys_of(session).blind_index(EMAIL_INDEX_PURPOSE, normalize_email(email))


def user_by_email(session: Session, email: str) -> User | None:
    """Return the user whose address normalises like ``email``, or None when there is none."""
    return session.scalar(select(User).where(User.email_key == email_key_of(session, email)))


def changed_rows(session: Session, statement: Update) -> int:
    """Run an UPDATE without syncing loaded objects and return how many rows it changed.

    Loaded objects keep their old values, so callers refresh or reload what they read after.
    """
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(cast(CursorResult[Any], result).rowcount)
