"""Measure audit appends per second on SQLite, and the time to verify a chain of a million records.

Run: .venv/bin/python benchmarks/audit.py [--appends N] [--chain N]

Appends go through llero.audit.service.record with a typical detail, on a fresh SQLite file in
a temporary directory with Llero's own engine settings (WAL, synchronous=NORMAL), each rate the
best of three rounds of N events:

- "one event per transaction": each event is committed on its own, as when one request records
  one event. COMMIT has returned before the next event starts, so every event is durable before
  the action it records completes.
- the same with synchronous=FULL, where SQLite also fsyncs the WAL at every commit.
- "100 events per transaction": one action that records many events (an import) commits them
  together with its own changes. Each event is durable when that action's commit returns, which
  is also when the action completes, so batching never acknowledges an action before its events.
- "raw sqlite3": the same three statements per event (lock the head, insert the record, move the
  head) through the sqlite3 module alone, without Llero or SQLAlchemy and with no hashing: the
  floor this machine sets for one-event transactions.

WAL with synchronous=NORMAL makes a commit durable against a crash of the process; the last
commits before a power loss or an operating-system crash can be rolled back. The event is in the
same transaction as its action, so either both are kept or both are lost, and an action is never
kept without its event. synchronous=FULL extends durability to power loss.

Verification: the chain is written directly with the same hashing code (ChainHasher) in bulk,
which is much faster than a million calls to record. Then verify_chain checks it in one process,
and verify_chain_in_parallel (`llero audit verify --jobs N`) with one process per CPU.
"""

import argparse
import os
import platform
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from llero.audit.chain import GENESIS_HASH, HASHED_FIELDS, ChainHasher
from llero.audit.context import Actor, RequestContext, Target
from llero.audit.events import AuditEvent
from llero.audit.head import events_table, lock_head, move_head
from llero.audit.keys import AuditKeys, attach_keys, load_audit_keys
from llero.audit.parallel import verify_chain_in_parallel
from llero.audit.service import record, verify_chain
from llero.config.keyfiles import create_key_files
from llero.storage import migrate
from llero.storage.base import utc_now
from llero.storage.db import Database

ROUNDS = 3
BATCH = 100
INSERT_CHUNK = 10_000

REQUEST = RequestContext("203.0.113.7", "6f1c2a9be0d34f57", "Mozilla/5.0 (X11; Linux x86_64)")
DETAIL = {"name": "get_weather", "changes": ["description", "parameters"], "version": 3}


def best_rate(round_of: Callable[[int], None], events: int) -> float:
    """Return the highest events per second over ROUNDS calls of ``round_of(events)``."""
    best = 0.0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        round_of(events)
        best = max(best, events / (time.perf_counter() - start))
    return best


def record_one(session: Any) -> None:
    record(
        session,
        AuditEvent.TOOL_UPDATED,
        actor=Actor.user(1),
        target=Target.of("tool", 42),
        request=REQUEST,
        detail=DETAIL,
    )


def open_database(path: Path, *, full_sync: bool = False) -> Database:
    database = Database(f"sqlite:///{path}")
    if full_sync:
        # Runs after Llero's own connect hook, so it overrides synchronous=NORMAL.
        event.listen(
            database.engine,
            "connect",
            lambda connection, _record: connection.execute("PRAGMA synchronous=FULL"),
        )
    migrate.upgrade(database.engine)
    return database


def measure_appends(directory: Path, keys: AuditKeys, events: int) -> None:
    normal = open_database(directory / "normal.db")
    full = open_database(directory / "full.db", full_sync=True)

    def one_per_transaction(database: Database) -> Callable[[int], None]:
        def run(count: int) -> None:
            for _ in range(count):
                with database.transaction() as session:
                    attach_keys(session, keys)
                    record_one(session)

        return run

    def batched(count: int) -> None:
        for _ in range(count // BATCH):
            with normal.transaction() as session:
                attach_keys(session, keys)
                for _ in range(BATCH):
                    record_one(session)

    rates = [
        ("one event per transaction (synchronous=NORMAL)", one_per_transaction(normal), events),
        ("one event per transaction (synchronous=FULL)", one_per_transaction(full), events // 5),
        (f"{BATCH} events per transaction (synchronous=NORMAL)", batched, events),
        ("raw sqlite3, no Llero, one per transaction", raw_sqlite(directory / "raw.db"), events),
    ]
    for name, run, count in rates:
        print(f"  {name:<52} {best_rate(run, count):>8,.0f} events/s")

    with normal.transaction() as session:
        attach_keys(session, keys)
        assert verify_chain(session).ok
    normal.dispose()
    full.dispose()


def raw_sqlite(path: Path) -> Callable[[int], None]:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("CREATE TABLE head (id INTEGER PRIMARY KEY, last INTEGER, hash TEXT)")
    connection.execute(
        "CREATE TABLE events (sequence INTEGER PRIMARY KEY, at TEXT, event TEXT, actor TEXT, "
        "detail TEXT, previous TEXT, hash TEXT)"
    )
    connection.execute("CREATE INDEX events_at ON events (at)")
    connection.execute("CREATE INDEX events_event ON events (event)")
    connection.execute("CREATE INDEX events_actor ON events (actor)")
    connection.execute("INSERT INTO head VALUES (1, 0, '')")

    def run(count: int) -> None:
        for _ in range(count):
            connection.execute("BEGIN")
            last, previous = connection.execute(
                "UPDATE head SET last = last WHERE id = 1 RETURNING last, hash"
            ).fetchone()
            connection.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                (last + 1, "2026-01-01 00:00:00.000000", "tool:updated", "1", "{}", previous, "h"),
            )
            connection.execute("UPDATE head SET last = ?, hash = ? WHERE id = 1", (last + 1, "h"))
            connection.execute("COMMIT")

    return run


def write_chain(database: Database, keys: AuditKeys, count: int) -> None:
    """Write ``count`` records as record would, in chunks of INSERT_CHUNK rows per statement."""
    hasher = ChainHasher(keys)
    previous = GENESIS_HASH
    start = utc_now() - timedelta(days=1)
    detail = '{"changes":["description"],"name":"get_weather","version":3}'
    with database.transaction() as session:
        head = lock_head(session, hasher)
        assert head.last_sequence == 0
        for first in range(1, count + 1, INSERT_CHUNK):
            rows = []
            for sequence in range(first, min(first + INSERT_CHUNK, count + 1)):
                values: dict[str, Any] = {
                    "sequence": sequence,
                    "occurred_at": start + timedelta(microseconds=sequence * 50),
                    "event": "tool:updated",
                    "actor_kind": "user",
                    "actor_id": str(sequence % 97),
                    "target_kind": "tool",
                    "target_id": str(sequence % 1013),
                    "client_address": REQUEST.client_address,
                    "request_id": f"{sequence:016x}",
                    "user_agent": REQUEST.user_agent,
                    "detail": detail,
                    "previous_hash": previous,
                }
                values["record_hash"] = previous = hasher.record_hash(
                    [values[name] for name in HASHED_FIELDS]
                )
                rows.append(values)
            session.connection().execute(events_table.insert(), rows)
        move_head(
            session,
            hasher,
            first_sequence=1,
            anchor_hash=GENESIS_HASH,
            last_sequence=count,
            last_hash=previous,
        )


def measure_verify(directory: Path, keys_dir: Path, count: int) -> None:
    keys = load_audit_keys(keys_dir)
    database = open_database(directory / "chain.db")
    start = time.perf_counter()
    write_chain(database, keys, count)
    print(f"  wrote {count:,} records in bulk in {time.perf_counter() - start:.1f} s")
    size = (directory / "chain.db").stat().st_size / 2**20
    print(f"  database file {size:,.0f} MiB")

    with database.reader() as session:
        attach_keys(session, keys)
        start, cpu_start = time.perf_counter(), time.process_time()
        result = verify_chain(session)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    assert result.ok, result.broken
    assert result.checked == count
    print(
        f"  one process:   verified {result.checked:,} records in {elapsed:.1f} s, "
        f"{cpu:.1f} s of CPU time ({result.checked / elapsed:,.0f} records/s)"
    )

    jobs = os.cpu_count() or 1
    start = time.perf_counter()
    result = verify_chain_in_parallel(database.url, keys_dir, jobs=jobs)
    elapsed = time.perf_counter() - start
    assert result.ok, result.broken
    assert result.checked == count
    print(
        f"  {jobs} processes:   verified {result.checked:,} records in {elapsed:.1f} s "
        f"({result.checked / elapsed:,.0f} records/s)"
    )
    database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2000, help="events per round of appends")
    parser.add_argument("--chain", type=int, default=1_000_000, help="records to verify")
    arguments = parser.parse_args()

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version} on "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load}"
    )
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        create_key_files(directory / "keys")
        keys = load_audit_keys(directory / "keys")
        print(f"Appends, best of {ROUNDS} rounds of {arguments.appends} events:")
        measure_appends(directory, keys, arguments.appends)
        print("Verification:")
        measure_verify(directory, directory / "keys", arguments.chain)


if __name__ == "__main__":
    main()
