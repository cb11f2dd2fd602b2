"""Worker threads for database work called from async code.

A database call releases Python's global interpreter lock around the driver call and takes it
back after, so many threads doing short queries at once mostly wait for each other. In one
measurement on two cores, 32 concurrent chat calls through /v1 ran at 88 requests/s with
AnyIO's 40 threads and at 144 with one thread. A few threads keep the database busy without
that contention.

The threads are a plain executor rather than AnyIO's worker threads: AnyIO's hand-off, with its
capacity limiter and cancel scope, cost about a tenth of the event loop's time per /v1 call, and
with the executor one process served 381 to 388 such calls per second at 32 connections instead
of 338 to 350 (two runs each). Work handed over keeps the caller's context variables, so its log
lines name the request.
"""

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from sqlalchemy.orm import Session

from llero.storage.db import BUSY_TIMEOUT_MS, Database
from llero.storage.immediate import WriteLockBusy

DATABASE_THREADS = 4

# The first and the maximum pause between two tries of a transaction on the event loop while
# another connection holds SQLite's write lock.
RETRY_FIRST_SECONDS = 0.0005
RETRY_MAX_SECONDS = 0.004

Parameters = ParamSpec("Parameters")
Result = TypeVar("Result")

# Shared by every event loop of the process: a thread is not tied to a loop, and the result
# reaches the caller's loop through its future.
_executor = ThreadPoolExecutor(max_workers=DATABASE_THREADS, thread_name_prefix="llero-database")


async def run_database_work(
    work: Callable[Parameters, Result], *args: Parameters.args, **kwargs: Parameters.kwargs
) -> Result:
    """Run the blocking ``work`` on one of the database worker threads and return its result.

    If the caller is cancelled, the work still runs to its end, committing or rolling back its
    own transaction, and its result is dropped.
    """
    context = contextvars.copy_context()
    call = functools.partial(context.run, work, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor, call)


async def run_transaction(database: Database, work: Callable[[Session], Result]) -> Result:
    """Run ``work`` in one transaction of ``database`` and return its result.

    On SQLite the transaction runs on the event loop itself, once no other connection holds the
    write lock. A short transaction costs less than the hand-off to a thread and back, and once
    the lock is held no statement waits, so the loop is held only for the transaction's own
    work. While another connection holds the lock, the loop serves other requests and tries
    again after a few milliseconds. Past the busy timeout, the transaction goes to a worker
    thread, which waits as long again. On PostgreSQL, where each statement is a network round
    trip, the transaction always runs on a thread.
    """
    if database.is_sqlite:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_TIMEOUT_MS / 1000
        delay = 0.0
        while loop.time() < deadline:
            try:
                with database.transaction_without_waiting() as session:
                    return work(session)
            except WriteLockBusy:
                pass
            # Polling, as SQLite's own busy handler does, but without holding the loop. A /v1
            # call held it under a millisecond in a profile, and a checkpoint a few more.
            await asyncio.sleep(delay)
            delay = min(delay * 2 or RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS)
    return await run_database_work(_in_transaction, database, work)


def _in_transaction(database: Database, work: Callable[[Session], Result]) -> Result:
    with database.transaction() as session:
        return work(session)
