"""Verify a long chain with several processes, one consecutive range of records each.

Checking one range trusts the stored ``record_hash`` of the record before it, and the range
before checks exactly that hash against the record's fields. So the ranges together check the
whole chain, and the first break of the first range that has one is the first break of the
chain. Each process opens the database and reads the audit key file itself, so no key crosses
a process boundary.
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from llero.audit.head import read_head
from llero.audit.keys import attach_keys, load_audit_keys
from llero.audit.verification import VerifyResult, verify_chain
from llero.storage.db import Database

# Below this many records per process, starting the processes costs more than it saves.
MIN_RECORDS_PER_JOB = 50_000

_Range = tuple[int | None, int | None]


def verify_chain_in_parallel(
    database_url: str,
    keys_dir: Path,
    *,
    jobs: int,
    start: int | None = None,
    end: int | None = None,
) -> VerifyResult:
    """Check records ``start`` to ``end`` like ``verify_chain``, split over ``jobs`` processes."""
    ranges = _split(database_url, jobs, start, end)
    if len(ranges) == 1:
        return _verify_range(database_url, keys_dir, start, end)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(ranges), mp_context=context) as pool:
        futures = [
            pool.submit(_verify_range, database_url, keys_dir, first, last)
            for first, last in ranges
        ]
        outcomes = [future.result() for future in futures]
    return _combine(outcomes)


def _split(database_url: str, jobs: int, start: int | None, end: int | None) -> list[_Range]:
    database = Database(database_url)
    try:
        with database.reader() as session:
            head = read_head(session)
    finally:
        database.dispose()
    if head is None:
        return [(start, end)]
    low = head.first_sequence if start is None else max(start, head.first_sequence)
    high = head.last_sequence if end is None else min(end, head.last_sequence)
    count = high - low + 1
    jobs = max(1, min(jobs, count // MIN_RECORDS_PER_JOB))
    if jobs == 1:
        return [(start, end)]
    size = -(-count // jobs)
    bounds = [low + index * size for index in range(jobs)]
    ranges: list[_Range] = [(first, first + size - 1) for first in bounds]
    # The outer ends keep the caller's None, so the first and last ranges also check for
    # records before the first and after the last record that the chain head names.
    ranges[0] = (start, ranges[0][1])
    ranges[-1] = (ranges[-1][0], end)
    return ranges


def _verify_range(
    database_url: str, keys_dir: Path, start: int | None, end: int | None
) -> VerifyResult:
    database = Database(database_url)
    try:
        with database.reader() as session:
            attach_keys(session, load_audit_keys(keys_dir))
            return verify_chain(session, start, end)
    finally:
        database.dispose()


def _combine(results: list[VerifyResult]) -> VerifyResult:
    for result in results:
        if result.broken is not None:
            return result
    firsts = [result.first_sequence for result in results if result.first_sequence is not None]
    lasts = [result.last_sequence for result in results if result.last_sequence is not None]
    return VerifyResult(
        sum(result.checked for result in results),
        min(firsts, default=None),
        max(lasts, default=None),
        None,
    )
