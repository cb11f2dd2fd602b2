"""While the vault is sealed, answer 503 on every route but health, readiness and unseal.

Checked before authentication, so a sealed server tells every caller the same thing and does no
work that would need a key.
"""

from starlette.types import ASGIApp, Receive, Scope, Send

from llero.vault.errors import VaultSealed
from llero.vault.keyring import Keyring
from llero.vault.routes import UNSEAL_PATH
from llero.web.middleware import request_id_of
from llero.web.responses import send_error

OPEN_WHILE_SEALED = frozenset({"/healthz", "/readyz", UNSEAL_PATH})
# How long a client should wait before it asks again, in seconds.
RETRY_AFTER_SECONDS = 30


class SealedVaultMiddleware:
    def __init__(self, app: ASGIApp, *, keyring: Keyring) -> None:
        self.app = app
        self.keyring = keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self.keyring.sealed
            and scope["path"] not in OPEN_WHILE_SEALED
        ):
            await send_error(
                send,
                503,
                code=VaultSealed.code,
                message=VaultSealed().message,
                request_id=request_id_of(scope),
                extra_headers=[(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
            )
            return
        await self.app(scope, receive, send)
