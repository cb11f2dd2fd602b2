"""Database work handed from async code to the database worker threads."""

import asyncio
import contextvars
import threading
import time

from llero.storage.threads import DATABASE_THREADS, run_database_work

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


def test_work_keeps_caller_context() -> None:
    def work(number: int) -> tuple[str, str, int]:
        return threading.current_thread().name, request_id.get(), number * 2

    async def call() -> tuple[str, str, int]:
        request_id.set("req-7")
        return await run_database_work(work, 21)

    thread, seen, doubled = asyncio.run(call())

    assert thread.startswith("llero-database")
    assert seen == "req-7"
    assert doubled == 42


def test_concurrency_capped_at_thread_count() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    async def many() -> None:
        await asyncio.gather(*(run_database_work(work) for _ in range(DATABASE_THREADS * 3)))

    asyncio.run(many())

    assert peak == DATABASE_THREADS
