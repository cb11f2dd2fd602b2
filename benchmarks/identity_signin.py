"""Measure sign-ins per second of `llero serve`, and whether the server stays responsive meanwhile.

Starts the real command on 127.0.0.1 in a temporary data directory with one active user. It
first reads GET /api/users/me with an access token once every 50 ms on the idle server, then
sends POST /api/auth/signin from a pool of concurrent clients while the same authenticated read
goes on. Every sign-in pays one argon2id verification, so the rate is bounded by the password
thread pool (one hash per core, the first core left to serving); the read's latency shows
whether the event loop stays free.

    .venv/bin/python benchmarks/identity_signin.py --signins 64 --concurrency 8
"""

import argparse
import asyncio
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from llero.access.roles import Role
from llero.audit.context import Origin
from llero.config.settings import Settings
from llero.identity import service
from llero.identity.models import UserStatus
from llero.identity.passwords import hash_password
from llero.storage.base import utc_now

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keyed import keyed_database

LLERO = str(Path(sys.executable).parent / "llero")
EMAIL = "bench@example.com"
PASSWORD = "plum kettle orbit lantern harbour"  # noqa: S105 - the benchmark user's password
HEALTH_INTERVAL = 0.05
IDLE_READS = 200


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def store_user(data_dir: Path) -> None:
    """Store an active developer without a second factor, so sign-in takes one request."""
    database = keyed_database(Settings(_env_file=None, data_dir=data_dir))  # type: ignore[call-arg]
    with database.transaction() as session:
        user = service.create_user(
            session,
            Origin.system("benchmark"),
            email=EMAIL,
            display_name="Bench",
            role=Role.DEVELOPER,
            now=utc_now(),
        )
        user.password_hash = hash_password(PASSWORD)
        user.status = UserStatus.ACTIVE
    database.dispose()


def wait_until_healthy(base: str, deadline: float) -> None:
    while time.perf_counter() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.01)
    raise SystemExit("llero serve did not answer /healthz in time")


async def sign_in_many(base: str, total: int, concurrency: int) -> tuple[list[float], float]:
    """Send ``total`` sign-ins, ``concurrency`` at a time; return latencies and wall time."""
    latencies: list[float] = []
    queue = iter(range(total))
    body = {"email": EMAIL, "password": PASSWORD}

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in queue:
            started = time.perf_counter()
            response = await client.post(f"{base}/api/auth/signin", json=body)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


async def poll_read(
    base: str, path: str, token: str, stop: asyncio.Event, count: int = 0
) -> list[float]:
    """Read GET ``path`` every HEALTH_INTERVAL until ``stop`` is set or ``count`` reads."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10, headers=headers) as client:
        while not stop.is_set() and (count == 0 or len(latencies) < count):
            started = time.perf_counter()
            response = await client.get(f"{base}{path}")
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            await asyncio.sleep(HEALTH_INTERVAL)
    return latencies


async def measure(
    base: str, path: str, total: int, concurrency: int
) -> tuple[list[float], float, list[float], list[float]]:
    """Return sign-in latencies, their wall time, and the read latencies idle and under load."""
    async with httpx.AsyncClient(timeout=60) as client:
        signed_in = await client.post(
            f"{base}/api/auth/signin", json={"email": EMAIL, "password": PASSWORD}
        )
    token = signed_in.json()["access_token"]
    idle = await poll_read(base, path, token, asyncio.Event(), count=IDLE_READS)
    stop = asyncio.Event()
    loaded = asyncio.create_task(poll_read(base, path, token, stop))
    signins, seconds = await sign_in_many(base, total, concurrency)
    stop.set()
    return signins, seconds, idle, await loaded


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signins", type=int, default=64, help="sign-ins to send (default 64)")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="sign-ins in flight at once (default 8)"
    )
    parser.add_argument(
        "--read-path",
        default="/api/users/me",
        help="the GET route read idle and during sign-ins (default /api/users/me)",
    )
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="llero-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "LLERO_DATA_DIR": str(workdir / "data"),
        "LLERO_LOG_LEVEL": "warning",
        # This measures throughput, which the default rate limits would cut short.
        "LLERO_RATE_LIMIT_ENABLED": "false",
        # Sign-in throttling counts an attempt before its password is checked, so parallel
        # sign-ins of one account would be delayed as if they were guesses.
        "LLERO_SIGNIN_ACCOUNT_DELAY_AFTER": "999",
        "LLERO_SIGNIN_ACCOUNT_LOCK_AFTER": "1000",
        "LLERO_SIGNIN_ADDRESS_DELAY_AFTER": "99999",
        "LLERO_SIGNIN_ADDRESS_LOCK_AFTER": "100000",
    }
    subprocess.run([LLERO, "init"], env=env, check=True, capture_output=True)
    store_user(workdir / "data")

    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([LLERO, "serve", "--port", str(port)], env=env)
    try:
        wait_until_healthy(base, time.perf_counter() + 30)
        signins, seconds, idle, loaded = asyncio.run(
            measure(base, options.read_path, options.signins, options.concurrency)
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir)

    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{options.signins} sign-ins, {options.concurrency} at a time, SQLite")
    print(f"sign-ins per second: {len(signins) / seconds:.1f}")
    print(
        f"sign-in latency: median {statistics.median(signins) * 1000:.0f} ms, "
        f"p95 {percentile(signins, 0.95) * 1000:.0f} ms"
    )
    for label, reads in (("idle", idle), ("during sign-ins", loaded)):
        print(
            f"GET {options.read_path} {label} ({len(reads)} reads): median "
            f"{statistics.median(reads) * 1000:.1f} ms, p99 {percentile(reads, 0.99) * 1000:.1f} ms"
        )
    ratio = percentile(loaded, 0.99) / percentile(idle, 0.99)
    print(f"p99 during sign-ins / idle p99: {ratio:.2f} (goal: at most 2)")


if __name__ == "__main__":
    main()
