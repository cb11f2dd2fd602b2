"""A number that changes with every change of configuration, and the cache it keeps honest.

A chat call needs the agent, its toolkit, its provider, the model's price, the egress policy,
the budgets and the grant of its key. They change rarely but are read on every call, and reading
them through the ORM cost about 2 ms of the 6 ms that Llero added to a call (benchmarks/
completions.py). So they are cached per process, and each cached value carries the
configuration generation it was read at.

Database triggers (migration 0016) add one to the generation whenever a row of a watched table
is inserted, updated or deleted, by any process and by any path, the ORM, plain SQL or a CLI
command alike. A call reads the generation first, with one prepared statement, and uses a cached
value only when it was read at that same generation. So a revoked grant, a quarantined agent or
a changed base URL takes effect at the next call, in every process that shares the database.

Every table is watched except those in UNWATCHED, which change on nearly every request and hold
nothing that a cached value is built from. A new table is watched by default: its migration adds
the triggers that tests/storage/test_generation.py looks for.
"""

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from sqlalchemy import BigInteger, CheckConstraint, Integer, select
from sqlalchemy.orm import Mapped, Session

from llero.storage.base import Base, DataClass, classified
from llero.storage.immediate import transaction_of
from llero.storage.prepared import PreparedStatement

ROW_ID = 1
# The statement each trigger runs; the row's id is ROW_ID.
_BUMP = "UPDATE config_generation SET value = value + 1 WHERE id = 1"
# Tables written on (nearly) every request, from which no cached value is built.
UNWATCHED = frozenset(
    {
        "api_tokens",
        "audit_chain",
        "audit_events",
        "auth_sessions",
        "chat_messages",
        "chat_sessions",
        "config_generation",
        "login_throttles",
        "one_time_tokens",
        "recovery_codes",
        "refresh_tokens",
        "secret_uses",
        "usage_records",
        "usage_totals",
        "users",
    }
)
# Columns that record when a row was last used, written on (nearly) every request; changing only
# them leaves the generation as it is.
UNWATCHED_COLUMNS = {"secret_versions": frozenset({"last_used_at"})}
# More entries than this and the cache starts again empty: keys are agents times callers.
CACHE_ENTRIES_MAX = 4096

Value = TypeVar("Value")


class ConfigGeneration(Base):
    """The single row with the configuration generation."""

    __tablename__ = "config_generation"
    __table_args__ = (CheckConstraint(f"id = {ROW_ID}", name="single_row"),)

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    value: Mapped[int] = classified(DataClass.INTERNAL, BigInteger)


_READ = PreparedStatement(
    select(ConfigGeneration.value).where(ConfigGeneration.id == ROW_ID),
)

_SESSION_KEY = "llero.config_generation"


def current_generation(session: Session) -> int | None:
    """Return the generation in ``session``'s transaction, read once per transaction.

    None when the row is missing, and then nothing may be served from a cache.
    """
    connection = session.connection()
    transaction = transaction_of(session)
    cached = session.info.get(_SESSION_KEY)
    # A session can run several transactions; each reads the generation again.
    if cached is not None and cached[0] is transaction:
        generation: int | None = cached[1]
        return generation
    rows = _READ.execute(connection)
    generation = int(rows[0][0]) if rows else None
    session.info[_SESSION_KEY] = (transaction, generation)
    return generation


class GenerationCache:
    """Values built from configuration, each kept with the generation it was built at.

    Only immutable values should be kept: a cached value is shared by every request and thread.
    """

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[int, Any]] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, key: Hashable, build: Callable[[], Value]) -> Value:
        """Return the value of ``key`` at the generation of ``session``; build it when the one
        kept is older or missing. ``build`` reads in ``session`` after the generation was read,
        so what it reads is at least as new as that generation."""
        generation = current_generation(session)
        if generation is None:
            return build()
        entry = self._entries.get(key)
        if entry is not None and entry[0] == generation:
            value: Value = entry[1]
            return value
        value = build()
        with self._lock:
            if len(self._entries) >= CACHE_ENTRIES_MAX:
                self._entries.clear()
            stored = self._entries.get(key)
            # A request that read a newer generation may have stored its value meanwhile.
            if stored is None or stored[0] < generation:
                self._entries[key] = (generation, value)
        return value


def trigger_statements(
    dialect: str, table: str, update_columns: Sequence[str] | None = None
) -> list[str]:
    """Return the DDL that makes every change of ``table`` add one to the generation.

    With ``update_columns``, an UPDATE counts only when it sets one of them.
    """
    update = "UPDATE" if update_columns is None else f"UPDATE OF {', '.join(update_columns)}"
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER config_generation_{table}_{name} AFTER {event} ON {table} "
            f"BEGIN {_BUMP}; END"
            for name, event in (("insert", "INSERT"), ("update", update), ("delete", "DELETE"))
        ]
    if dialect == "postgresql":
        return [
            f"CREATE TRIGGER config_generation_{table} AFTER INSERT OR {update} OR DELETE OR "
            f"TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION bump_config_generation()"
        ]
    raise ValueError(f"no generation triggers for the {dialect} dialect")


def drop_trigger_statements(dialect: str, table: str) -> list[str]:
    if dialect == "sqlite":
        return [
            f"DROP TRIGGER IF EXISTS config_generation_{table}_{event}"
            for event in ("insert", "update", "delete")
        ]
    return [f"DROP TRIGGER IF EXISTS config_generation_{table} ON {table}"]


POSTGRES_FUNCTION = (
    "CREATE OR REPLACE FUNCTION bump_config_generation() RETURNS trigger AS $$ "
    f"BEGIN {_BUMP}; RETURN NULL; END $$ LANGUAGE plpgsql"
)
