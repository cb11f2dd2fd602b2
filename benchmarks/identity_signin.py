"""Measure sign-ins per second of `llero serve`, and whether the server stays responsive meanwhile.

Starts the real command on 127.0.0.1 in a temporary data directory with one active user. wrk
(a native load generator, so the measurement does not compete with a Python client for the same
cores) reads GET /api/users/me with an access token over one connection, one read after the
other, on a server that does nothing else. Then wrk keeps CONCURRENCY sign-ins in flight with
POST /api/auth/signin while the same reads go on. Every sign-in pays one argon2id verification,
so the rate is bounded by the password thread pool; the reads' p99 shows whether the event loop
stays free.

    .venv/bin/python benchmarks/identity_signin.py --seconds 10 --concurrency 8
"""

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
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
from wrk_runs import run_wrk

LLERO = str(Path(sys.executable).parent / "llero")
EMAIL = "bench@example.com"
PASSWORD = "plum kettle orbit lantern harbour"  # noqa: S105 - the benchmark user's password


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


def read_script(token: str) -> str:
    return f'wrk.headers["Authorization"] = "Bearer {token}"\n'


def signin_script() -> str:
    body = json.dumps({"email": EMAIL, "password": PASSWORD})
    return (
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [[{body}]]\n"
    )


def measure(
    base: str, path: str, seconds: int, concurrency: int
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Return the read's wrk results idle and during sign-ins, and the sign-ins' own."""
    signed_in = httpx.post(
        f"{base}/api/auth/signin", json={"email": EMAIL, "password": PASSWORD}, timeout=60
    )
    token = signed_in.json()["access_token"]
    read_url = f"{base}{path}"
    # Warm-up, not measured.
    run_wrk(read_url, 1, 2, read_script(token))
    idle = run_wrk(read_url, 1, seconds, read_script(token))

    signins: dict[str, float] = {}

    def flood() -> None:
        url = f"{base}/api/auth/signin"
        signins.update(run_wrk(url, concurrency, seconds + 2, signin_script()))

    flooding = threading.Thread(target=flood)
    flooding.start()
    # The reads start once the sign-ins are in flight and end before they stop.
    time.sleep(1)
    loaded = run_wrk(read_url, 1, seconds, read_script(token))
    flooding.join()
    return idle, loaded, signins


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=int, default=10, help="seconds of reads, idle and loaded (default 10)"
    )
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
        idle, loaded, signins = measure(
            base, options.read_path, options.seconds, options.concurrency
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir)

    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"sign-ins {options.concurrency} at a time, SQLite")
    print(f"sign-ins per second: {signins['rps']:.1f}")
    print(
        f"sign-in latency: median {signins['p50']:.0f} ms, p99 {signins['p99']:.0f} ms"
    )
    for label, reads in (("idle", idle), ("during sign-ins", loaded)):
        print(
            f"GET {options.read_path} {label}, 1 connection: {reads['rps']:.0f} reads/s, "
            f"median {reads['p50']:.2f} ms, p99 {reads['p99']:.2f} ms"
        )
    print(f"p99 during sign-ins / idle p99: {loaded['p99'] / idle['p99']:.2f} (goal: at most 2)")


if __name__ == "__main__":
    main()
