"""Vault errors. They carry a reason for the log, and clients see only the code and message."""

from enum import StrEnum

from llero.errors import LleroError


class VaultSealed(LleroError):
    """No key-encryption key is loaded, so no secret can be stored or read."""

    code = "vault_sealed"

    def __init__(self) -> None:
        super().__init__(
            "the vault is sealed: no key-encryption key is loaded; unseal it with "
            "POST /api/vault/unseal, or set LLERO_MASTER_KEY and restart"
        )


class InvalidReason(StrEnum):
    TRUNCATED = "truncated"
    UNKNOWN_FORMAT = "unknown_format"
    UNKNOWN_KEK = "unknown_kek"
    UNWRAP_FAILED = "unwrap_failed"
    AUTHENTICATION_FAILED = "authentication_failed"
    KEY_MISSING = "key_missing"


class CiphertextInvalid(LleroError):
    """A stored ciphertext cannot be opened: it is cut short, changed, moved from another record,
    or wrapped by a KEK that the keyring does not hold.

    ``reason`` and ``kek_id`` are for the server log. The message is the same for every reason,
    because telling a client which check failed helps only someone who is changing the bytes.
    """

    code = "ciphertext_invalid"

    def __init__(self, reason: InvalidReason, *, kek_id: str | None = None) -> None:
        super().__init__("the stored secret cannot be decrypted")
        self.reason = reason
        self.kek_id = kek_id


class BackendFailure(StrEnum):
    UNREACHABLE = "unreachable"  # no connection, or it timed out
    REFUSED = "refused"  # the backend answered 401 or 403
    FAILED = "failed"  # any other error answer
    MISSING = "missing"  # the value is gone from the backend
    NOT_CONFIGURED = "not_configured"  # the value lives in a backend this server does not use


class BackendUnavailable(LleroError):
    """An external backend (HashiCorp Vault, AWS) did not do what the vault asked of it.

    The message names the backend and the kind of failure, and never a token, key, path or value.
    ``operation`` and ``status`` are for the log and the audit record.
    """

    code = "vault_backend_unavailable"

    def __init__(
        self,
        backend: str,
        operation: str,
        failure: BackendFailure,
        *,
        status: int | None = None,
    ) -> None:
        super().__init__(
            f"the vault backend {backend} {_FAILURE_TEXT[failure]}; see the server log"
        )
        self.backend = backend
        self.operation = operation
        self.failure = failure
        self.status = status


_FAILURE_TEXT = {
    BackendFailure.UNREACHABLE: "cannot be reached",
    BackendFailure.REFUSED: "refused the request (check its credentials and policy)",
    BackendFailure.FAILED: "returned an error",
    BackendFailure.MISSING: "no longer has the value (it was deleted outside Llero)",
    BackendFailure.NOT_CONFIGURED: "holds this value but is not configured on this server",
}


class UnsealRejected(LleroError):
    """The key offered to unseal the vault is not the vault's master key."""

    code = "unseal_rejected"

    def __init__(self) -> None:
        super().__init__("the key does not match the vault's master key")


class UnsealThrottled(LleroError):
    """Too many failed unseal attempts in a short time; ``retry_after`` is in seconds."""

    code = "too_many_attempts"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed unseal attempts; retry in {retry_after} seconds")
        self.retry_after = retry_after
