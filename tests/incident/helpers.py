"""Shared steps for the incident tests: reading audit records and agents, receiving alerts."""

import queue
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi.testclient import TestClient

from llero.audit.events import AuditEvent
from llero.audit.service import AuditFilter, query
from llero.storage.db import Database


def audit_records(database: Database, event: AuditEvent) -> list[dict[str, Any]]:
    """Return the records of ``event``, oldest first, as plain values."""
    with database.reader() as session:
        page = query(session, AuditFilter(events=(event,)), newest_first=False)
        return [
            {
                "actor": (row.actor_kind, row.actor_id),
                "target": (row.target_kind, row.target_id),
                "detail": row.detail,
            }
            for row in page.records
        ]


def create_agent(client: TestClient, name: str = "researcher") -> dict[str, Any]:
    response = client.post(
        "/api/agents", json={"name": name, "provider": "openai", "model": "gpt-4o"}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@dataclass(frozen=True)
class Received:
    body: bytes
    headers: dict[str, str]


class Receiver:
    """A webhook receiver on 127.0.0.1 with an OS-chosen port."""

    def __init__(self) -> None:
        self.received: queue.Queue[Received] = queue.Queue()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                outer.received.put(Received(self.rfile.read(length), dict(self.headers)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next(self, timeout: float = 10) -> Received:
        return self.received.get(timeout=timeout)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
