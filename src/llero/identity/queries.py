"""Finding users by email address, and a helper for the compare-and-set updates that make codes
and tokens single-use."""

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, Update, or_, select
from sqlalchemy.orm import Session

from llero.errors import InvalidInput, Violation
from llero.identity.emails import email_skeletons, normalize_email
from llero.identity.models import EMAIL_MAX, User
from llero.vault.fields import field_keys_of

# The purposes under which blind index keys are derived for email addresses and their skeletons.
EMAIL_INDEX_PURPOSE = "users.email"
EMAIL_SKELETON_PURPOSE = "users.email_skeleton"
EMAIL_UPPER_SKELETON_PURPOSE = "users.email_upper_skeleton"


@dataclass(frozen=True)
class EmailKeys:
    """The blind indexes stored for one address: its normalised form and its two skeletons."""

    email_key: str
    skeleton_key: str
    upper_skeleton_key: str


def email_key_of(session: Session, email: str) -> str:
    """Return the blind index stored in ``users.email_key`` for ``email``.

    Raises InvalidInput (EmailRejected) for an address that is too long or invalid.
    """
    return field_keys_of(session).blind_index(EMAIL_INDEX_PURPOSE, _normal_form(email))


def email_keys_of(session: Session, email: str) -> EmailKeys:
    """Return every blind index stored for ``email``, or raise InvalidInput as email_key_of does."""
    keys = field_keys_of(session)
    normalized = _normal_form(email)
    skeletons = email_skeletons(normalized)
    return EmailKeys(
        email_key=keys.blind_index(EMAIL_INDEX_PURPOSE, normalized),
        skeleton_key=keys.blind_index(EMAIL_SKELETON_PURPOSE, skeletons.lower),
        upper_skeleton_key=keys.blind_index(EMAIL_UPPER_SKELETON_PURPOSE, skeletons.upper),
    )


def lookalike_user_id(session: Session, keys: EmailKeys) -> int | None:
    """Return the id of a user whose address has either skeleton of ``keys``, or None."""
    query = select(User.id).where(
        or_(
            User.email_skeleton_key == keys.skeleton_key,
            User.email_upper_skeleton_key == keys.upper_skeleton_key,
        )
    )
    return session.scalar(query.limit(1))


def user_by_email(session: Session, email: str) -> User | None:
    """Return the user whose address normalises like ``email``, or None when there is none."""
    return session.scalar(select(User).where(User.email_key == email_key_of(session, email)))


def _normal_form(email: str) -> str:
    if len(email) > EMAIL_MAX:
        raise InvalidInput(
            f"email is longer than {EMAIL_MAX} characters",
            details=[Violation("email", f"is longer than {EMAIL_MAX} characters")],
        )
    return normalize_email(email)


def changed_rows(session: Session, statement: Update | Delete) -> int:
    """Run an UPDATE or DELETE without syncing loaded objects; return how many rows it changed.

    Loaded objects keep their old values, so callers refresh or reload what they read after.
    """
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(cast(CursorResult[Any], result).rowcount)
