"""Measure `llero serve`: start-up time, idle memory, and GET /api/tools against GET /healthz.

Starts the real command on 127.0.0.1 in a temporary data directory, stores 500 tools, and drives
both routes with wrk (a separate native process, so the load generator does not compete with a
Python client for the same cores). Then it serves the same app with authentication turned off
(every request is a fixed viewer, no token is read) and measures GET /api/tools again, so the
cost of authentication is the ratio of the two.
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvicorn
from fastapi import Request

from llero.access.permissions import Principal, TokenKind
from llero.access.roles import Role, permissions_of
from llero.audit.context import Origin
from llero.config.settings import Settings, load_settings
from llero.forge.models import Tool, ToolStatus
from llero.identity import service
from llero.identity.context import IdentityContext
from llero.identity.models import UserStatus
from llero.identity.sessions import ClientInfo, start_session
from llero.logs import configure_logging
from llero.storage.base import utc_now
from llero.storage.db import Database
from llero.web.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keyed import keyed_database

ROOT = Path(__file__).resolve().parents[1]
LLERO = str(Path(sys.executable).parent / "llero")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def store_tools(database_url: str, count: int) -> None:
    database = Database(database_url)
    with database.transaction() as session:
        for index in range(count):
            session.add(
                Tool(
                    name=f"bench_tool_{index:04d}",
                    description="A tool stored for the list benchmark.",
                    status=ToolStatus.ACTIVE,
                    parameters=[
                        {"name": "city", "type": "string", "required": True},
                        {"name": "days", "type": "integer", "minimum": 1, "maximum": 14},
                    ],
                )
            )
    database.dispose()


def viewer_access_token(data_dir: Path) -> str:
    """Store an active viewer and return an access token for it, valid for 15 minutes."""
    settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    context = IdentityContext.from_settings(settings)
    database = keyed_database(settings)
    with database.transaction() as session:
        user = service.create_user(
            session,
            Origin.system("benchmark"),
            email="bench@example.com",
            display_name="",
            role=Role.VIEWER,
            now=utc_now(),
        )
        user.status = UserStatus.ACTIVE
        session.flush()
        issued = start_session(session, context, user, ClientInfo.of("benchmark", "127.0.0.1"))
    database.dispose()
    return issued.access_token.reveal()


def wait_until_healthy(base: str, deadline: float) -> None:
    while time.perf_counter() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.01)
    raise SystemExit("llero serve did not answer /healthz in time")


def resident_memory_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match, "no VmRSS in /proc status"
    return int(match.group(1)) / 1024


def run_wrk(url: str, seconds: int, connections: int, token: str | None = None) -> float:
    headers = ["-H", f"Authorization: Bearer {token}"] if token else []
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", *headers, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    assert non_2xx is None, f"wrk saw error responses:\n{output}"
    return float(match.group(1))


class FixedViewer:
    """An authenticator that reads no credential: every request is the viewer ``user_id``."""

    def __init__(self, user_id: int) -> None:
        self.principal = Principal(
            user_id=user_id,
            role=Role.VIEWER,
            permissions=permissions_of(Role.VIEWER),
            token_kind=TokenKind.ACCESS_TOKEN,
        )

    def authenticate(self, _request: Request) -> Principal:
        return self.principal

    async def principal_of(self, _request: Request) -> Principal:
        return self.principal


def serve_without_authentication(port: int) -> None:
    """Serve the app of LLERO_DATA_DIR on ``port`` as `llero serve` does, minus authentication."""
    settings = load_settings(port=port)
    configure_logging(settings)
    app = create_app(settings)
    app.state.authenticator = FixedViewer(user_id=1)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        server_header=False,
        proxy_headers=False,
        log_level="warning",
        access_log=False,
    )


def measure_without_authentication(env: dict[str, str], options: argparse.Namespace) -> float:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, __file__, "--serve-without-authentication", str(port)]
    server = subprocess.Popen(command, env=env)
    try:
        wait_until_healthy(base, time.perf_counter() + 30)
        time.sleep(1)
        return run_wrk(f"{base}/api/tools", options.seconds, options.connections)
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--serve-without-authentication",
        type=int,
        metavar="PORT",
        help="only serve the unauthenticated build on PORT (the script starts this itself)",
    )
    parser.add_argument("--tools", type=int, default=500, help="tools to store")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per route")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    options = parser.parse_args()
    if options.serve_without_authentication:
        serve_without_authentication(options.serve_without_authentication)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package wrk)")

    workdir = Path(tempfile.mkdtemp(prefix="llero-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "LLERO_DATA_DIR": str(workdir / "data"),
        "LLERO_LOG_LEVEL": "warning",
        # This measures throughput, which the default rate limits would cut short.
        "LLERO_RATE_LIMIT_ENABLED": "false",
    }
    subprocess.run([LLERO, "init"], env=env, check=True, capture_output=True)
    store_tools(f"sqlite:///{workdir / 'data' / 'llero.db'}", options.tools)
    token = viewer_access_token(workdir / "data")

    base = f"http://127.0.0.1:{port}"
    launched = time.perf_counter()
    server = subprocess.Popen([LLERO, "serve", "--port", str(port)], env=env)
    try:
        wait_until_healthy(base, launched + 30)
        startup = time.perf_counter() - launched
        time.sleep(1)
        idle_mib = resident_memory_mib(server.pid)
        health_rps = run_wrk(f"{base}/healthz", options.seconds, options.connections)
        tools_rps = run_wrk(f"{base}/api/tools", options.seconds, options.connections, token)
    finally:
        server.terminate()
        server.wait(timeout=10)
    try:
        open_rps = measure_without_authentication(env, options)
    finally:
        shutil.rmtree(workdir)

    print(f"start-up until /healthz answers: {startup * 1000:.0f} ms")
    print(f"idle resident memory: {idle_mib:.1f} MiB")
    print(f"GET /healthz: {health_rps:.0f} requests/s")
    print(f"GET /api/tools ({options.tools} tools stored): {tools_rps:.0f} requests/s")
    print(f"ratio tools/healthz: {tools_rps / health_rps:.2f} (goal: at least 0.50)")
    print(f"GET /api/tools without authentication: {open_rps:.0f} requests/s")
    print(f"ratio authenticated/unauthenticated: {tools_rps / open_rps:.2f} (goal: at least 0.80)")


if __name__ == "__main__":
    main()
