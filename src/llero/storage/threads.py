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

DATABASE_THREADS = 4

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
