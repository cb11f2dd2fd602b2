"""Measure password hashing and verification at Llero's argon2id parameters.

Prints the median, minimum and maximum of N runs for: an argon2id hash, an argon2id verification,
and, for comparison, a verification against a legacy bcrypt hash of cost 12. Runs in one thread,
so each number is the latency of one sign-in on an idle machine.

    .venv/bin/python benchmarks/identity_hashing.py --runs 21
"""

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata

import bcrypt

from llero.identity import passwords

PASSWORD = "plum kettle orbit lantern harbour"  # noqa: S105 - sample input to time, not a credential


def measure(operation: Callable[[], object], runs: int) -> list[float]:
    """Return the wall-clock duration of each of ``runs`` calls of ``operation``, in seconds."""
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        operation()
        durations.append(time.perf_counter() - started)
    return durations


def report(name: str, durations: list[float]) -> None:
    median = statistics.median(durations) * 1000
    print(
        f"{name:<28} median {median:7.1f} ms   min {min(durations) * 1000:7.1f} ms   "
        f"max {max(durations) * 1000:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per operation (default 15)")
    runs = parser.parse_args().runs

    print(
        f"argon2id m={passwords.MEMORY_COST_KIB // 1024} MiB t={passwords.TIME_COST} "
        f"p={passwords.PARALLELISM}; argon2-cffi {metadata.version('argon2-cffi')}, "
        f"bcrypt {metadata.version('bcrypt')}"
    )
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{runs} runs each\n")

    stored = passwords.hash_password(PASSWORD)
    assert passwords.verify_password(PASSWORD, stored)
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=12)).decode("ascii")
    assert passwords.verify_password(PASSWORD, legacy)

    report("argon2id hash", measure(lambda: passwords.hash_password(PASSWORD), runs))
    report("argon2id verify", measure(lambda: passwords.verify_password(PASSWORD, stored), runs))
    report(
        "bcrypt cost 12 verify",
        measure(lambda: passwords.verify_password(PASSWORD, legacy), runs),
    )


if __name__ == "__main__":
    main()
