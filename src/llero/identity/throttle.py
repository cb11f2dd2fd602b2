"""Sign-in throttling: failed attempts counted per account and per client address.

Every sign-in attempt (the password step and the second-factor step alike) is counted as a
failure before its credential is checked, and a success takes the count back. Counting first
means that a burst of concurrent guesses cannot all pass the check before the first of them is
recorded. Once a count passes its delay limit, each further attempt makes the next one wait,
and at each multiple of its lock limit the account or address is locked for a while. A waiting
or locked attempt is refused before any credential is checked, so a locked account answers the
same whether or not the password is right.

The account is named by its normalised email, whether or not an account has it, so throttling
behaves the same for unknown emails and does not reveal which ones exist. Both names are stored
only as a keyed hash (the audit detail-hash key, under a label of its own). Each counted attempt
also deletes a bounded batch of rows whose window has ended, so the table does not keep a row
for every email ever tried.

Locking an account lets anyone who knows its email keep its owner out for a while. The lock is
temporary and grows only with continued failures, which bounds that harm; NIST SP 800-63B-4
(section 3.2.2) allows at most 100 consecutive failures per account, and these limits allow
about 60 per day.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Integer, String, Table, bindparam, delete, or_, select, text, update
from sqlalchemy.orm import Session

from llero.audit.keys import keys_of
from llero.config.settings import Settings
from llero.crypto import keyed_hash
from llero.identity.models import LoginThrottle, ThrottleScope
from llero.storage.base import UTCDateTime
from llero.storage.prepared import PreparedStatement

# The first delay, doubled at each further failure up to the maximum.
BASE_DELAY = timedelta(seconds=1)
MAX_DELAY = timedelta(seconds=30)
# Each lock lasts twice as long as the one before, up to this.
MAX_LOCKOUT = timedelta(days=1)
# The maximum number of expired rows that one counted attempt deletes. An attempt adds at most
# two rows, so the table shrinks back to the subjects whose window or lock is still running.
PURGE_BATCH = 100

_SUBJECT_LABEL = "llero login throttle v1"

# Each sign-in runs these statements on the event loop (SQLite) or in a worker thread that shares
# the interpreter lock with it (PostgreSQL). Through the ORM, counting and forgiving an attempt
# took 3.2 ms of CPU per sign-in, and reads served meanwhile waited for it
# (benchmarks/identity_signin.py). So the statements are compiled once and run straight through
# the driver.
_table = cast(Table, LoginThrottle.__table__)

# Claims the subject's row, created if missing, and returns it. The update, which changes
# nothing, makes PostgreSQL lock an existing row until the transaction ends; SQLite has one
# writer at a time anyway.
_CLAIM = PreparedStatement(
    text(
        "INSERT INTO login_throttles (scope, subject_hash, failure_count, window_started_at) "
        "VALUES (:scope, :subject_hash, 0, :now) "
        "ON CONFLICT (scope, subject_hash) DO UPDATE SET scope = excluded.scope "
        "RETURNING id, failure_count, window_started_at, locked_until"
    )
    .bindparams(
        bindparam("scope", type_=String()),
        bindparam("subject_hash", type_=String()),
        bindparam("now", type_=UTCDateTime()),
    )
    .columns(_table.c.id, _table.c.failure_count, _table.c.window_started_at, _table.c.locked_until)
)
_SAVE = PreparedStatement(
    update(_table).where(_table.c.id == bindparam("row_id", type_=Integer())),
    ["failure_count", "window_started_at", "locked_until"],
)


def _purge_statement() -> PreparedStatement:
    columns = _table.c
    expired = (columns.window_started_at <= bindparam("window_ended", type_=UTCDateTime())) & or_(
        columns.locked_until.is_(None),
        columns.locked_until <= bindparam("now", type_=UTCDateTime()),
    )
    # PostgreSQL skips rows that a concurrent sign-in has locked, and the outer condition is
    # checked again on the row it deletes, so a row that sign-in has just renewed is kept.
    # SQLite has one writer at a time and ignores FOR UPDATE.
    batch = (
        select(columns.id)
        .where(expired)
        .limit(bindparam("limit", type_=Integer()))
        .with_for_update(skip_locked=True)
    )
    return PreparedStatement(
        delete(_table).where(columns.id.in_(batch), expired).returning(columns.id)
    )


_PURGE = _purge_statement()


@dataclass
class _Row:
    """A subject's counts, as claimed in the current transaction."""

    id: int
    failure_count: int
    window_started_at: datetime
    locked_until: datetime | None


@dataclass(frozen=True)
class ThrottleLimits:
    """When failures of one scope start to delay and to lock."""

    delay_after: int
    lock_after: int


@dataclass(frozen=True)
class ThrottlePolicy:
    account: ThrottleLimits
    address: ThrottleLimits
    lockout: timedelta
    window: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> "ThrottlePolicy":
        return cls(
            account=ThrottleLimits(
                settings.signin_account_delay_after, settings.signin_account_lock_after
            ),
            address=ThrottleLimits(
                settings.signin_address_delay_after, settings.signin_address_lock_after
            ),
            lockout=timedelta(minutes=settings.signin_lockout_minutes),
            window=timedelta(hours=settings.signin_failure_window_hours),
        )

    def limits(self, scope: ThrottleScope) -> ThrottleLimits:
        return self.account if scope is ThrottleScope.ACCOUNT else self.address

    def wait_after(self, scope: ThrottleScope, failures: int) -> timedelta | None:
        """Return how long the next attempt must wait after ``failures`` failures, if at all."""
        limits = self.limits(scope)
        if failures % limits.lock_after == 0:
            locks = failures // limits.lock_after
            return min(self.lockout * (1 << min(locks - 1, 32)), MAX_LOCKOUT)
        if failures > limits.delay_after:
            return min(BASE_DELAY * (1 << min(failures - limits.delay_after - 1, 32)), MAX_DELAY)
        return None


@dataclass(frozen=True)
class Subject:
    """One counted name: an account's normalised email or a client address."""

    scope: ThrottleScope
    name: str


@dataclass(frozen=True)
class Throttled:
    """An attempt refused before its credential was checked; retry after ``retry_after`` s."""

    scope: ThrottleScope
    retry_after: int


def subjects_of(account: str | None, address: str | None) -> list[Subject]:
    """Return the subjects an attempt counts against; a missing name is not counted."""
    subjects = []
    if account:
        subjects.append(Subject(ThrottleScope.ACCOUNT, account))
    if address:
        subjects.append(Subject(ThrottleScope.CLIENT_ADDRESS, address))
    return subjects


def count_attempt(
    session: Session, policy: ThrottlePolicy, subjects: list[Subject], now: datetime
) -> Throttled | None:
    """Count an attempt as a failure of every subject, or return why it must wait.

    A waiting or locked subject refuses the attempt and no subject's count changes, so that
    attempts during a lock do not lengthen it. The rows are locked until the transaction ends.
    """
    rows = [(subject, _claim(session, subject, now)) for subject in subjects]
    for subject, row in rows:
        if now - row.window_started_at >= policy.window:
            row.failure_count = 0
            row.window_started_at = now
            row.locked_until = None
        if row.locked_until is not None and row.locked_until > now:
            seconds = (row.locked_until - now).total_seconds()
            return Throttled(subject.scope, max(math.ceil(seconds), 1))

    for subject, row in rows:
        row.failure_count += 1
        wait = policy.wait_after(subject.scope, row.failure_count)
        row.locked_until = None if wait is None else now + wait
        _save(session, row)
    # The attempt's own rows have a running window now, so the purge leaves them alone.
    purge_expired(session, policy, now)
    return None


def forgive_attempt(session: Session, subjects: list[Subject], now: datetime) -> None:
    """Take back the failure that ``count_attempt`` counted for an attempt that succeeded.

    The account starts again from zero. The address keeps its other failures and any wait
    they caused, because one good sign-in does not vouch for everyone behind that address.
    """
    for subject in subjects:
        row = _claim(session, subject, now)
        if subject.scope is ThrottleScope.ACCOUNT:
            row.failure_count = 0
            row.locked_until = None
        else:
            row.failure_count = max(row.failure_count - 1, 0)
        _save(session, row)


def purge_expired(
    session: Session, policy: ThrottlePolicy, now: datetime, limit: int = PURGE_BATCH
) -> int:
    """Delete up to ``limit`` rows whose window has ended and whose lock has expired.

    Such a row throttles nothing: ``count_attempt`` would start its count again from zero, as
    for a subject without a row. Returns how many rows were deleted.
    """
    deleted = _PURGE.execute(
        session.connection(), {"window_ended": now - policy.window, "now": now, "limit": limit}
    )
    return len(deleted)


def _subject_hash(session: Session, subject: Subject) -> str:
    message = f"{_SUBJECT_LABEL}\x00{subject.scope}\x00{subject.name}"
    return keyed_hash(keys_of(session).detail, message)


def _claim(session: Session, subject: Subject, now: datetime) -> _Row:
    """Return the subject's row, created if missing, locked until the transaction ends."""
    parameters = {
        "scope": subject.scope,
        "subject_hash": _subject_hash(session, subject),
        "now": now,
    }
    ((row_id, failure_count, window_started_at, locked_until),) = _CLAIM.execute(
        session.connection(), parameters
    )
    return _Row(row_id, failure_count, window_started_at, locked_until)


def _save(session: Session, row: _Row) -> None:
    values: dict[str, Any] = {
        "row_id": row.id,
        "failure_count": row.failure_count,
        "window_started_at": row.window_started_at,
        "locked_until": row.locked_until,
    }
    _SAVE.execute(session.connection(), values)
