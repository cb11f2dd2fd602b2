"""The unseal route: the one vault route, and one of the few a sealed server answers."""

from fastapi import APIRouter, Request

from llero.access.permissions import Permission, requires
from llero.audit.context import Actor, Origin
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.crypto import Secret
from llero.errors import InvalidInput
from llero.logs import get_logger
from llero.vault.errors import UnsealRejected
from llero.vault.schemas import Unsealed, UnsealRequest
from llero.vault.unseal import UnsealThrottle, unseal_vault
from llero.web.clients import audit_context
from llero.web.deps import get_database, get_settings

UNSEAL_PATH = "/api/vault/unseal"

router = APIRouter(tags=["vault"])
log = get_logger("llero.vault")


@router.post(UNSEAL_PATH, dependencies=[requires(Permission.VAULT_UNSEAL)])
def unseal(request: Request, body: UnsealRequest) -> Unsealed:
    """Load the vault's keys with its master key, after a start without one.

    Answers 403 for a key that is not the vault's, 409 when the vault is not sealed, and 429
    after five failed attempts within a minute.
    """
    throttle: UnsealThrottle = request.app.state.unseal_throttle
    throttle.check()
    database = get_database(request)
    origin = Origin(Actor.system("unseal"), audit_context(request))
    try:
        kek = unseal_vault(
            request.app.state.keyring,
            database,
            get_settings(request).keys_dir,
            Secret(body.master_key.get_secret_value()),
        )
    except (InvalidInput, UnsealRejected) as error:
        throttle.record_failure()
        log.warning("vault_unseal_rejected", reason=error.code)
        with database.transaction() as session:
            record_as(session, origin, AuditEvent.VAULT_UNSEAL_FAILED, None, {"reason": error.code})
        raise
    try:
        with database.transaction() as session:
            record_as(session, origin, AuditEvent.VAULT_UNSEALED, None, {"kek_id": kek.id})
    except Exception:
        # Fail closed: a vault unsealed without its audit record is sealed again.
        request.app.state.keyring.seal()
        raise
    return Unsealed(status="unsealed", kek_id=kek.id)
