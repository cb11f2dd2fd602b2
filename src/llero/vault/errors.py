"""Vault errors. They carry a reason for the log, and clients see only the code and message."""

from enum import StrEnum

from llero.errors import LleroError


class VaultSealed(LleroError):
    """No key-encryption key is loaded, so no secret can be stored or read."""

    code = "vault_sealed"

    def __init__(self) -> None:
        super().__init__("the vault is sealed: no key-encryption key is loaded")


class InvalidReason(StrEnum):
    TRUNCATED = "truncated"
    UNKNOWN_FORMAT = "unknown_format"
    UNKNOWN_KEK = "unknown_kek"
    UNWRAP_FAILED = "unwrap_failed"
    AUTHENTICATION_FAILED = "authentication_failed"


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
