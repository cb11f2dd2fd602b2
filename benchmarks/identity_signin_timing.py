"""Compare the time of a failed sign-in for an existing account and for an unknown email.

Starts the real `llero serve` on 127.0.0.1 with --attempts active users that share one password
hash, then sends POST /api/auth/signin with a wrong password, alternating between the next
existing account and a new unknown address, one request at a time. Each account and each unknown
address is tried once, and the limits per client address are raised, so no attempt is delayed or
locked by the sign-in throttle. Both kinds cost one argon2id verification, so their timings should
differ by no more than the noise between requests.

    .venv/bin/python benchmarks/identity_signin_timing.py --attempts 300
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from identity_signin import LLERO, PASSWORD, free_port, percentile, wait_until_healthy
from keyed import keyed_database

from llero.access.roles import Role
from llero.audit.context import Origin
from llero.config.settings import Settings
from llero.identity import service
from llero.identity.models import UserStatus
from llero.identity.passwords import hash_password
from llero.storage.base import utc_now

WRONG_PASSWORD = "plum kettle orbit lantern harbor"  # noqa: S105 - differs from PASSWORD
EXISTING = "existing account"
UNKNOWN = "unknown email"


def store_users(data_dir: Path, count: int) -> list[str]:
    """Store ``count`` active developers with the same password hash; return their addresses."""
    database = keyed_database(Settings(_env_file=None, data_dir=data_dir))  # type: ignore[call-arg]
    password_hash = hash_password(PASSWORD)
    emails = [f"member-{index}@example.com" for index in range(count)]
    with database.transaction() as session:
        for email in emails:
            user = service.create_user(
                session,
                Origin.system("benchmark"),
                email=email,
                display_name="Bench",
                role=Role.DEVELOPER,
                now=utc_now(),
            )
            user.password_hash = password_hash
            user.status = UserStatus.ACTIVE
    database.dispose()
    return emails


def measure(base: str, emails: list[str]) -> dict[str, list[float]]:
    """Fail one sign-in per existing account and as many for new unknown emails, alternating."""
    latencies: dict[str, list[float]] = {EXISTING: [], UNKNOWN: []}
    with httpx.Client(timeout=30) as client:
        for index, existing in enumerate(emails):
            for kind, email in ((EXISTING, existing), (UNKNOWN, f"nobody-{index}@example.com")):
                body = {"email": email, "password": WRONG_PASSWORD}
                started = time.perf_counter()
                response = client.post(f"{base}/api/auth/signin", json=body)
                latencies[kind].append(time.perf_counter() - started)
                assert response.status_code == 401, response.text
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--attempts", type=int, default=300, help="failed sign-ins of each kind (default 300)"
    )
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="llero-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "LLERO_DATA_DIR": str(workdir / "data"),
        "LLERO_LOG_LEVEL": "warning",
        # The route rate limits and the throttle per client address would stop a run from one
        # address long before it ends; each account and unknown email is tried only once.
        "LLERO_RATE_LIMIT_ENABLED": "false",
        "LLERO_SIGNIN_ADDRESS_DELAY_AFTER": "99999",
        "LLERO_SIGNIN_ADDRESS_LOCK_AFTER": "100000",
    }
    subprocess.run([LLERO, "init"], env=env, check=True, capture_output=True)
    emails = store_users(workdir / "data", options.attempts)

    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([LLERO, "serve", "--port", str(port)], env=env)
    try:
        wait_until_healthy(base, time.perf_counter() + 30)
        latencies = measure(base, emails)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir)

    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{options.attempts} failed sign-ins of each kind, alternating, one at a time, SQLite")
    for kind, values in latencies.items():
        print(
            f"{kind}: median {statistics.median(values) * 1000:.1f} ms, "
            f"p90 {percentile(values, 0.90) * 1000:.1f} ms"
        )
    difference = statistics.median(latencies[EXISTING]) - statistics.median(latencies[UNKNOWN])
    print(f"difference of medians (existing - unknown): {difference * 1000:+.2f} ms")


if __name__ == "__main__":
    main()
