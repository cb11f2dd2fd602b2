"""Worker threads for database work called from async code.

A database call releases Python's global interpreter lock around the driver call and takes it
back after, so many threads doing short queries at once mostly wait for each other. In one
measurement on two cores, 32 concurrent chat calls through /v1 ran at 88 requests/s with
AnyIO's 40 threads and at 144 with one thread. A few threads keep the database busy without
that contention.
"""

import asyncio
import functools
import weakref
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread

DATABASE_THREADS = 4

Parameters = ParamSpec("Parameters")
Result = TypeVar("Result")

# A limiter belongs to one event loop, and tests run several loops in one process.
_limiters: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter]" = (
    weakref.WeakKeyDictionary()
)


def _limiter() -> anyio.CapacityLimiter:
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = anyio.CapacityLimiter(DATABASE_THREADS)
        _limiters[loop] = limiter
    return limiter


async def run_database_work(
    work: Callable[Parameters, Result], *args: Parameters.args, **kwargs: Parameters.kwargs
) -> Result:
    """Run the blocking ``work`` on one of the database worker threads and return its result."""
    return await anyio.to_thread.run_sync(
        functools.partial(work, *args, **kwargs), limiter=_limiter()
    )
