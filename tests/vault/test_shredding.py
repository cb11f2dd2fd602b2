"""Deleting a secret destroys its key: envelopes of its values copied before the deletion still
open with the KEK, but only to a ciphertext that nothing can decrypt any more."""

import pytest
from sqlalchemy import select

from llero.crypto import Secret
from llero.storage.db import Database
from llero.vault.envelope import open_plaintext
from llero.vault.errors import CiphertextInvalid, InvalidReason
from llero.vault.keyring import Keyring
from llero.vault.models import SecretKey, SecretKind, SecretVersion, StoredSecret
from llero.vault.secret_keys import key_binding, open_inner, open_secret_key
from llero.vault.service import VaultService, value_binding
from tests.vault.conftest import PLANTED

ROTATED = "sk-live-PLANTED-second-0f1e2d3c4b5a69788796"


@pytest.fixture
def vault(database: Database, keyring: Keyring) -> VaultService:
    return VaultService(database, keyring)


def _stored(database: Database, secret_id: int) -> tuple[bytes, list[bytes]]:
    """Return the secret's key envelope and its version envelopes, as a backup would hold them."""
    with database.reader() as session:
        key = session.scalar(select(SecretKey.envelope).where(SecretKey.secret_id == secret_id))
        versions = session.scalars(
            select(SecretVersion.envelope)
            .where(SecretVersion.secret_id == secret_id)
            .order_by(SecretVersion.version)
        ).all()
    assert key is not None
    return key, [envelope for envelope in versions if envelope is not None]


def test_value_needs_both_kek_and_secret_key(
    vault: VaultService, database: Database, keyring: Keyring
) -> None:
    secret_id = vault.create_secret(
        name="openai", kind=SecretKind.PROVIDER_API_KEY, value=Secret(PLANTED)
    ).secret_id
    key_envelope, (envelope,) = _stored(database, secret_id)
    binding = value_binding(secret_id, 1)

    inner = open_plaintext(keyring, envelope, binding).reveal()
    key = open_secret_key(keyring, secret_id, key_envelope)

    assert PLANTED.encode() not in inner
    assert open_inner(key, inner, binding).reveal() == PLANTED.encode()


def test_deleted_secret_copies_unreadable_with_kek(
    vault: VaultService, database: Database, keyring: Keyring
) -> None:
    secret_id = vault.create_secret(
        name="openai", kind=SecretKind.PROVIDER_API_KEY, value=Secret(PLANTED)
    ).secret_id
    vault.add_version(secret_id, Secret(ROTATED))
    _, copied = _stored(database, secret_id)

    assert vault.delete_secret(secret_id) == 2

    with database.reader() as session:
        assert session.get(StoredSecret, secret_id) is None
        assert session.scalars(select(SecretKey)).all() == []
        assert session.scalars(select(SecretVersion)).all() == []
    for number, envelope in enumerate(copied, start=1):
        binding = value_binding(secret_id, number)
        # The KEK still opens the outer layer, which contains no trace of the value.
        inner = open_plaintext(keyring, envelope, binding).reveal()
        assert PLANTED.encode() not in inner
        assert ROTATED.encode() not in inner
        with pytest.raises(CiphertextInvalid) as caught:
            open_secret_key(keyring, secret_id, None)
        assert caught.value.reason is InvalidReason.KEY_MISSING


def test_restored_versions_without_key_fail_closed(vault: VaultService, database: Database) -> None:
    secret_id = vault.create_secret(
        name="openai", kind=SecretKind.PROVIDER_API_KEY, value=Secret(PLANTED)
    ).secret_id
    _, (envelope,) = _stored(database, secret_id)
    vault.delete_secret(secret_id)

    # Put the secret and its version back as an old table backup would, without the key.
    with database.transaction() as session:
        session.add(StoredSecret(id=secret_id, name="openai", kind="provider_api_key"))
        session.flush()
        session.add(
            SecretVersion(
                secret_id=secret_id, version=1, envelope=envelope, kek_id=envelope[1:9].hex()
            )
        )
        session.execute(
            StoredSecret.__table__.update()
            .where(StoredSecret.id == secret_id)
            .values(current_version=1)
        )

    with pytest.raises(CiphertextInvalid) as caught:
        vault.read_plaintext(secret_id)
    assert caught.value.reason is InvalidReason.KEY_MISSING


def test_key_of_one_secret_does_not_open_another(
    vault: VaultService, database: Database, keyring: Keyring
) -> None:
    first = vault.create_secret(
        name="first", kind=SecretKind.GENERIC, value=Secret(PLANTED)
    ).secret_id
    second = vault.create_secret(
        name="second", kind=SecretKind.GENERIC, value=Secret(ROTATED)
    ).secret_id
    first_key, _ = _stored(database, first)
    _, (second_envelope,) = _stored(database, second)

    # A key envelope is bound to its secret, so it does not open under another secret's id.
    with pytest.raises(CiphertextInvalid):
        open_plaintext(keyring, first_key, key_binding(second))
    key = open_secret_key(keyring, first, first_key)
    inner = open_plaintext(keyring, second_envelope, value_binding(second, 1)).reveal()
    with pytest.raises(CiphertextInvalid):
        open_inner(key, inner, value_binding(second, 1))
