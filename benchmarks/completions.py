"""Measure Llero's overhead on a chat call through /v1/chat/completions.

Starts a local OpenAI-compatible provider (benchmarks/provider_stub.py) and `llero serve`, both
on 127.0.0.1, with a provider configuration, an agent and an API token stored directly. wrk
(a native load generator, so it does not compete with a Python client) then posts the same
request straight to the provider and through Llero, at 1 and at 32 connections, each after a
warm-up of WARM_UP_SECONDS that is not measured. The overhead is the latency through Llero minus
the latency straight to the provider. Streaming is measured as
the time to relay the provider's whole stream, against reading it straight from the provider.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llero.academy.allowlist import egress_policy
from llero.academy.budgets import BudgetPeriod, BudgetScope, create_budget
from llero.academy.providers import ModelPrice, NewProvider, attach_secret, create_provider
from llero.academy.service import Caller as SecretCaller
from llero.academy.service import NewSecret, create_secret, grant_secret
from llero.access.ownership import Caller
from llero.access.permissions import Permission
from llero.access.roles import Role
from llero.audit.context import Origin
from llero.barracks.service import NewAgent, create_agent
from llero.command.providers.client import WireProtocol
from llero.config.settings import Settings
from llero.crypto import Secret
from llero.identity import api_tokens, service
from llero.identity.models import UserStatus
from llero.storage.base import utc_now
from llero.vault.kek_sources import load_vault_keyring
from llero.vault.models import SecretKind
from llero.vault.service import VaultService

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keyed import keyed_database
from provider_stub import TOKENS
from serve import free_port, wait_until_healthy
from wrk_runs import run_wrk

LLERO = str(Path(sys.executable).parent / "llero")
STUB = str(Path(__file__).resolve().parent / "provider_stub.py")
STREAM_RUNS = 21
WARM_UP_SECONDS = 2
BODY = '{"model": "%s", "messages": [{"role": "user", "content": "Weather in Lisbon?"}]}'


def prepare(data_dir: Path, provider_port: int) -> str:
    """Store a provider with a key, an agent granted that key, a developer with a monthly budget
    and an API token; return the token.

    So every call through Llero pays what a real one does: the budget check sums the month's
    usage, and the key is resolved from the vault with a use record and an audit record.
    """
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=data_dir,
        egress_allowed_endpoints=[f"127.0.0.1:{provider_port}"],
    )
    database = keyed_database(settings)
    vault = VaultService(database, load_vault_keyring(settings, database))
    with database.transaction() as session:
        origin = Origin.system("benchmark")
        system = SecretCaller.system()
        key = create_secret(
            session,
            vault,
            system,
            origin,
            NewSecret("local-key", SecretKind.PROVIDER_API_KEY, Secret("sk-bench-0123456789")),
        )
        provider = create_provider(
            session,
            origin,
            egress_policy(settings, session),
            NewProvider(
                name="local",
                protocol=WireProtocol.OPENAI,
                base_url=f"http://127.0.0.1:{provider_port}/v1",
                models=[ModelPrice("bench", 150_000, 600_000)],
            ),
        )
        attach_secret(session, origin, provider.id, key.id)
        user = service.create_user(
            session,
            origin,
            email="bench@example.com",
            display_name="",
            role=Role.DEVELOPER,
            now=utc_now(),
        )
        user.status = UserStatus.ACTIVE
        session.flush()
        owner = Caller(user.id, False, origin)
        agent = create_agent(
            session, owner, NewAgent(name="bench", provider="local", model="bench")
        )
        grant_secret(
            session, system, origin, secret_id=key.id, agent_id=agent.id, purpose="provider:local"
        )
        # Large enough that the benchmark never uses it up.
        create_budget(
            session,
            origin,
            scope=BudgetScope.USER,
            subject_id=user.id,
            period=BudgetPeriod.MONTH,
            amount_micros=10**12,
        )
        created = api_tokens.create_api_token(
            session,
            origin,
            user,
            name="bench",
            scopes=[Permission.CHAT_SESSION_RUN],
            lifetime_days=1,
            now=utc_now(),
        )
        token = created.token.reveal()
    database.dispose()
    return token


def wrk(url: str, body: str, connections: int, seconds: int, token: str | None) -> dict[str, float]:
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    script = (
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"{auth}wrk.body = [[{body}]]\n"
    )
    return run_wrk(url, connections, seconds, script)


def stream_seconds(url: str, body: str, token: str | None) -> float:
    """Return the seconds curl takes to read a whole streamed response.

    curl is native, so it takes little of the CPU that the provider and Llero share. A Python
    client took more than either of them.
    """
    auth = ["-H", f"Authorization: Bearer {token}"] if token else []
    output = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--fail",
            "--no-buffer",
            "--output",
            "/dev/null",
            "--write-out",
            "%{time_total}",
            "-H",
            "Content-Type: application/json",
            *auth,
            "--data-binary",
            body,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (LLERO_WORKERS, default 1)"
    )
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package wrk)")
    if shutil.which("curl") is None:
        raise SystemExit("curl is not installed (Debian package curl)")

    workdir = Path(tempfile.mkdtemp(prefix="llero-bench-"))
    provider_port, llero_port = free_port(), free_port()
    env = {
        **os.environ,
        "LLERO_DATA_DIR": str(workdir / "data"),
        "LLERO_LOG_LEVEL": "warning",
        # This measures throughput, which the default rate limits would cut short.
        "LLERO_RATE_LIMIT_ENABLED": "false",
        "LLERO_EGRESS_ALLOWED_ENDPOINTS": f"127.0.0.1:{provider_port}",
        "LLERO_WORKERS": str(options.workers),
    }
    subprocess.run([LLERO, "init"], env=env, check=True, capture_output=True)
    token = prepare(workdir / "data", provider_port)
    stub = subprocess.Popen([sys.executable, STUB, str(provider_port)])
    server = subprocess.Popen([LLERO, "serve", "--port", str(llero_port)], env=env)
    try:
        wait_until_healthy(f"http://127.0.0.1:{llero_port}", time.perf_counter() + 60)
        direct_url = f"http://127.0.0.1:{provider_port}/v1/chat/completions"
        llero_url = f"http://127.0.0.1:{llero_port}/v1/chat/completions"
        time.sleep(1)
        print(f"{options.workers} worker process(es)")
        # Warm-up, not measured: the first calls of each worker open connections and fill
        # caches. 32 connections reach every worker.
        wrk(llero_url, BODY % "agent:bench", 32, WARM_UP_SECONDS, token)
        for connections in (1, 32):
            direct = wrk(direct_url, BODY % "bench", connections, options.seconds, None)
            through = wrk(llero_url, BODY % "agent:bench", connections, options.seconds, token)
            print(
                f"{connections:>2} connections: direct p50 {direct['p50']:.2f} ms p99 "
                f"{direct['p99']:.2f} ms {direct['rps']:.0f} req/s; through Llero p50 "
                f"{through['p50']:.2f} ms p99 {through['p99']:.2f} ms {through['rps']:.0f} req/s;"
                f" overhead p50 {through['p50'] - direct['p50']:.2f} ms, p99 "
                f"{through['p99'] - direct['p99']:.2f} ms"
            )
        stream_body = BODY.replace("}]}", '}], "stream": true}')
        # One stream takes a fraction of a second, so the median of several is compared. The
        # runs alternate, so a change in the machine's speed meanwhile slows both alike.
        direct_runs, through_runs = [], []
        for _ in range(STREAM_RUNS):
            direct_runs.append(stream_seconds(direct_url, stream_body % "bench", None))
            through_runs.append(stream_seconds(llero_url, stream_body % "agent:bench", token))
        direct_s = statistics.median(direct_runs)
        through_s = statistics.median(through_runs)
        print(
            f"streaming {TOKENS} chunks, median of {STREAM_RUNS}: direct {direct_s:.3f} s, "
            f"through Llero {through_s:.3f} s, "
            f"relay rate {direct_s / through_s:.0%} of the provider's"
        )
    finally:
        server.terminate()
        stub.terminate()
        server.wait(timeout=10)
        stub.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
