"""A HashiCorp Vault stand-in on 127.0.0.1 that speaks the part of the HTTP API Llero uses.

It follows Vault's API documentation for the KV version 2 engine, the Transit engine and AppRole
login: the same paths under /v1, the same JSON bodies, the token in the X-Vault-Token header, and
Vault's error shape ``{"errors": [...]}`` with 400, 403 and 404 as Vault uses them. An unknown or
missing token gets 403 "permission denied", as in Vault. Every request is kept in ``requests`` so
a test can check what the client sent.

What it leaves out: policies beyond "this token may or may not use this mount", leases and token
expiry, KV metadata beyond what a read returns, and Transit key rotation. Transit ciphertexts are
"vault:v1:" and base64 of AES-256-GCM (nonce then ciphertext), as Vault's aes256-gcm96 keys make.
"""

import base64
import binascii
import json
import os
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KV_MOUNT = "secret"
TRANSIT_MOUNT = "transit"
APPROLE_MOUNT = "approle"


@dataclass
class SeenRequest:
    method: str
    path: str
    token: str | None
    body: Any


@dataclass
class VaultState:
    """What the server holds; tests change ``tokens`` and ``denied`` to make it refuse."""

    tokens: set[str] = field(default_factory=set)
    # Mounts that every token is denied, as a policy without that path would do.
    denied: set[str] = field(default_factory=set)
    approle: dict[str, str] = field(default_factory=dict)  # role id -> secret id
    kv: dict[str, list[dict[str, Any] | None]] = field(default_factory=dict)
    transit_keys: dict[str, bytes] = field(default_factory=dict)
    requests: list[SeenRequest] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: "VaultTestServer"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        body = self._body()
        token = self.headers.get("X-Vault-Token")
        state = self.server.state
        state.requests.append(SeenRequest(method, parts.path, token, body))
        if body is _INVALID:
            self._reply(400, {"errors": ["failed to parse JSON input"]})
            return
        if not parts.path.startswith("/v1/"):
            self._reply(404, {"errors": []})
            return
        path = parts.path.removeprefix("/v1/")
        query = parse_qs(parts.query)

        if method in {"POST", "PUT"} and path == f"auth/{APPROLE_MOUNT}/login":
            self._reply(*self.server.approle_login(body))
            return
        if token not in state.tokens or path.split("/", 1)[0] in state.denied:
            self._reply(403, {"errors": ["permission denied"]})
            return
        self._reply(*self.server.route(method, path, query, body))

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        try:
            return json.loads(self.rfile.read(length))
        except ValueError:
            return _INVALID

    def _reply(self, status: int, document: dict[str, Any] | None) -> None:
        payload = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


_INVALID = object()
Reply = tuple[int, dict[str, Any] | None]


class VaultTestServer(ThreadingHTTPServer):
    """Serves on 127.0.0.1 with a free port; ``start`` and ``stop`` run it on a thread."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = VaultState()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    def new_token(self) -> str:
        token = "hvs." + secrets.token_urlsafe(24)
        self.state.tokens.add(token)
        return token

    # Routing.

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Reply:
        mount, _, rest = path.partition("/")
        if mount == KV_MOUNT:
            return self._kv(method, rest, query, body)
        if mount == TRANSIT_MOUNT:
            return self._transit(method, rest, body)
        return 404, {"errors": [f"no handler for route {path!r}"]}

    def approle_login(self, body: Any) -> Reply:
        role_id = body.get("role_id") if isinstance(body, dict) else None
        secret_id = body.get("secret_id") if isinstance(body, dict) else None
        expected = self.state.approle.get(str(role_id))
        if expected is None or secret_id != expected:
            return 400, {"errors": ["invalid role or secret ID"]}
        token = self.new_token()
        auth = {
            "client_token": token,
            "accessor": secrets.token_hex(8),
            "policies": ["default", "llero"],
            "lease_duration": 3600,
            "renewable": True,
        }
        return 200, {"auth": auth, "data": None, "lease_duration": 0}

    # KV version 2.

    def _kv(self, method: str, rest: str, query: dict[str, list[str]], body: Any) -> Reply:
        kind, _, key = rest.partition("/")
        if not key:
            return 404, {"errors": []}
        if kind == "data" and method in {"POST", "PUT"}:
            return self._kv_write(key, body)
        if kind == "data" and method == "GET":
            return self._kv_read(key, query)
        if kind == "metadata" and method == "DELETE":
            self.state.kv.pop(key, None)
            return 204, None
        return 405, {"errors": ["unsupported operation"]}

    def _kv_write(self, key: str, body: Any) -> Reply:
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            return 400, {"errors": ["no data provided"]}
        versions = self.state.kv.setdefault(key, [])
        cas = (body.get("options") or {}).get("cas")
        if cas is not None and cas != len(versions):
            return 400, {"errors": ["check-and-set parameter did not match the current version"]}
        versions.append(dict(body["data"]))
        return 200, {"data": _kv_metadata(len(versions))}

    def _kv_read(self, key: str, query: dict[str, list[str]]) -> Reply:
        versions = self.state.kv.get(key)
        if not versions:
            return 404, {"errors": []}
        number = int(query.get("version", ["0"])[0]) or len(versions)
        if not 1 <= number <= len(versions) or versions[number - 1] is None:
            return 404, {"errors": []}
        return 200, {"data": {"data": versions[number - 1], "metadata": _kv_metadata(number)}}

    # Transit.

    def _transit(self, method: str, rest: str, body: Any) -> Reply:
        operation, _, name = rest.partition("/")
        if method not in {"POST", "PUT"} or operation not in {"encrypt", "decrypt"}:
            return 405, {"errors": ["unsupported operation"]}
        key = self.state.transit_keys.get(name)
        if key is None:
            return 400, {"errors": [f"encryption key not found: {name}"]}
        if not isinstance(body, dict):
            return 400, {"errors": ["missing input"]}
        if operation == "encrypt":
            return _transit_encrypt(key, body.get("plaintext"))
        return _transit_decrypt(key, body.get("ciphertext"))


def _kv_metadata(version: int) -> dict[str, Any]:
    return {
        "created_time": datetime.now(UTC).isoformat(),
        "custom_metadata": None,
        "deletion_time": "",
        "destroyed": False,
        "version": version,
    }


def _transit_encrypt(key: bytes, plaintext: Any) -> Reply:
    try:
        raw = base64.b64decode(str(plaintext), validate=True)
    except (binascii.Error, ValueError):
        return 400, {"errors": ["failed to base64-decode plaintext"]}
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(key).encrypt(nonce, raw, None)
    ciphertext = "vault:v1:" + base64.b64encode(sealed).decode()
    return 200, {"data": {"ciphertext": ciphertext, "key_version": 1}}


def _transit_decrypt(key: bytes, ciphertext: Any) -> Reply:
    text = str(ciphertext)
    if not text.startswith("vault:v1:"):
        return 400, {"errors": ["invalid ciphertext: no prefix"]}
    try:
        sealed = base64.b64decode(text.removeprefix("vault:v1:"), validate=True)
        raw = AESGCM(key).decrypt(sealed[:12], sealed[12:], None)
    except (binascii.Error, ValueError, InvalidTag):
        return 400, {"errors": ["cipher: message authentication failed"]}
    return 200, {"data": {"plaintext": base64.b64encode(raw).decode()}}
