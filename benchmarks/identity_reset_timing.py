"""Compare the response time of a password reset request for an existing and an unknown account.

Starts an aiosmtpd relay that discards mail and the real `llero serve` on 127.0.0.1, with one
active user, then sends POST /api/auth/password-reset for that user and for an unknown address,
alternating, one at a time. The lookup and the mail run after the response is sent, so the two
timings should differ by no more than the noise between requests.

    .venv/bin/python benchmarks/identity_reset_timing.py --requests 200
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
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from identity_signin import EMAIL, LLERO, free_port, percentile, store_user, wait_until_healthy

UNKNOWN_EMAIL = "nobody@example.com"


def measure(base: str, total: int) -> dict[str, list[float]]:
    """Send ``total`` requests per address, alternating; return the latencies per address."""
    latencies: dict[str, list[float]] = {EMAIL: [], UNKNOWN_EMAIL: []}
    with httpx.Client(timeout=30) as client:
        for index in range(total * 2):
            email = EMAIL if index % 2 == 0 else UNKNOWN_EMAIL
            started = time.perf_counter()
            response = client.post(f"{base}/api/auth/password-reset", json={"email": email})
            latencies[email].append(time.perf_counter() - started)
            assert response.status_code == 202, response.text
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=200, help="requests per address (default 200)"
    )
    options = parser.parse_args()

    relay = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    relay.start()
    workdir = Path(tempfile.mkdtemp(prefix="llero-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "LLERO_DATA_DIR": str(workdir / "data"),
        "LLERO_LOG_LEVEL": "warning",
        "LLERO_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LLERO_SMTP_HOST": "127.0.0.1",
        "LLERO_SMTP_PORT": str(relay.port),
        "LLERO_SMTP_SECURITY": "none",
        "LLERO_SMTP_FROM": "llero@example.com",
    }
    subprocess.run([LLERO, "init"], env=env, check=True, capture_output=True)
    store_user(workdir / "data")

    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([LLERO, "serve", "--port", str(port)], env=env)
    try:
        wait_until_healthy(base, time.perf_counter() + 30)
        latencies = measure(base, options.requests)
    finally:
        server.terminate()
        server.wait(timeout=10)
        relay.stop()
        shutil.rmtree(workdir)

    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{options.requests} requests per address, alternating, SQLite")
    for label, email in (("existing account", EMAIL), ("unknown address", UNKNOWN_EMAIL)):
        values = latencies[email]
        print(
            f"{label}: median {statistics.median(values) * 1000:.2f} ms, "
            f"p95 {percentile(values, 0.95) * 1000:.2f} ms"
        )
    difference = statistics.median(latencies[EMAIL]) - statistics.median(latencies[UNKNOWN_EMAIL])
    print(f"difference of medians: {difference * 1000:+.2f} ms")


if __name__ == "__main__":
    main()
