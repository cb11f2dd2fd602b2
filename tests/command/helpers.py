"""A test Academy and a webhook tool server for the session tests.

The Academy here stands in for provider configurations, grants and budgets, so the session
tests exercise the run loop, storage and routes against a local provider server.
"""

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from sqlalchemy.orm import Session

from llero.audit.context import Origin, RequestContext
from llero.barracks.models import Agent
from llero.command.engine import ProviderRoute
from llero.command.providers.base import Usage
from llero.command.providers.client import Endpoint, WireProtocol
from llero.crypto import Secret
from llero.egress import EgressPolicy
from llero.errors import Refused

PROVIDER_KEY = "sk-test-provider-key-planted-4821"
SIGNING_KEY = "whsec-test-signing-key-planted-7730"


@dataclass
class LocalAcademy:
    base_url: str
    protocol: WireProtocol = WireProtocol.OPENAI
    allowed: list[str] = field(default_factory=list)
    over_budget: bool = False
    usage: list[tuple[int, int, int | None, Usage]] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)

    def route(self, session: Session, agent: Agent, policy: EgressPolicy) -> ProviderRoute:
        suffix = "/v1" if self.protocol is WireProtocol.OPENAI else ""
        endpoint = Endpoint(agent.provider, self.protocol, self.base_url + suffix)
        return ProviderRoute(endpoint, agent.model, 1, f"provider:{agent.provider}")

    def resolve(
        self,
        session: Session,
        *,
        agent_id: int,
        secret_id: int,
        purpose: str,
        session_ref: str,
        origin: Origin,
    ) -> Secret[str]:
        self.resolved.append(purpose)
        return Secret(SIGNING_KEY if purpose.startswith("webhook:") else PROVIDER_KEY)

    def check_budget(
        self,
        session: Session,
        *,
        user_id: int,
        agent_id: int,
        request: RequestContext | None = None,
    ) -> int | None:
        if self.over_budget:
            raise Refused("the daily budget of this user is spent; it resets at midnight UTC")
        return None

    def cost_micros(self, route: ProviderRoute, usage: Usage) -> int | None:
        return None

    def record_usage(
        self,
        session: Session,
        *,
        user_id: int,
        agent_id: int,
        chat_id: int | None,
        route: ProviderRoute,
        usage: Usage,
    ) -> None:
        self.usage.append((user_id, agent_id, chat_id, usage))

    def egress_policy(self, session: Session) -> EgressPolicy:
        return EgressPolicy.of([], self.allowed)


@dataclass
class WebhookServer:
    port: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tool"


def serve_webhooks() -> Iterator[WebhookServer]:
    """Run a tool server on 127.0.0.1 that records each call and answers with its arguments.

    Each entry of ``calls`` has the request's ``headers`` and ``body`` and the ``response`` body.
    """
    state = WebhookServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            payload = json.loads(body)
            answer = json.dumps({"tool": payload["tool"], "echo": payload["arguments"]}).encode()
            state.calls.append({"headers": dict(self.headers), "body": body, "response": answer})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def read_run_events(response: Any) -> tuple[str, dict[str, Any]]:
    """Return the text of a streamed run's ``text`` events and the body of its ``result`` event."""
    text: list[str] = []
    result: dict[str, Any] = {}
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        name = block.split("\n")[0].removeprefix("event: ")
        data = json.loads(block.split("\n")[1].removeprefix("data: "))
        if name == "text":
            text.append(data["text"])
        else:
            result = data
    return "".join(text), result


def serve_app(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yield its base URL."""
    import time  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    class Server(uvicorn.Server):
        def install_signal_handlers(self) -> None:
            return

    server = Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the Llero test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
