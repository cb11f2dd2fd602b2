"""Sealed fields: each value opens only at its own row and field, and only with the keys loaded;
blind indexes find a user by address without storing it."""

import shutil
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from llero.access.roles import Role
from llero.audit.context import Origin
from llero.config.keyfiles import MASTER_KEY, create_key_files
from llero.config.settings import Settings
from llero.crypto import Secret
from llero.errors import Refused
from llero.identity import service
from llero.identity.models import AuthSession, User
from llero.identity.queries import EMAIL_INDEX_PURPOSE, email_key_of, user_by_email
from llero.storage.db import Database
from llero.vault.envelope import Binding, open_plaintext
from llero.vault.errors import CiphertextInvalid, VaultSealed
from llero.vault.fields import (
    FIELD_VERSION,
    SESSION_INFO_KEY,
    FieldKeys,
    FieldKeysMissing,
    RecordNotFlushed,
    field_keys_of,
    load_field_keys,
)
from llero.vault.keyring import Keyring, add_kek, load_keyring
from llero.vault.rotation import envelopes_by_kek, records_needing, retire_kek, rotate_data_keys
from llero.web.app import create_app
from tests.conftest import create_test_user
from tests.identity.helpers import password_hash, sign_in

ADDRESS = "Ada.Lovelace@Example.COM"
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def _create(app: FastAPI, address: str = ADDRESS) -> int:
    database: Database = app.state.database
    with database.transaction() as session:
        user = service.create_user(
            session,
            Origin.system("test"),
            email=address,
            display_name="Ada",
            role=Role.DEVELOPER,
            now=app.state.identity.now(),
        )
        user.totp_seed = SEED
        return user.id


def _field_keys(database: Database) -> FieldKeys:
    with database.reader() as session:
        return field_keys_of(session)


def _envelope(database: Database, user_id: int) -> bytes:
    with database.reader() as session:
        stored = session.scalar(select(User.email_envelope).where(User.id == user_id))
    assert stored is not None
    return stored


def test_email_stored_as_envelope(app: FastAPI) -> None:
    database: Database = app.state.database
    user_id = _create(app)

    stored = _envelope(database, user_id)

    assert ADDRESS.encode() not in stored
    assert ADDRESS.lower().encode() not in stored
    with database.reader() as session:
        user = session.get(User, user_id)
        assert user is not None
        assert user.email == ADDRESS
        assert user.totp_seed == SEED


def test_email_opens_with_its_binding_only(app: FastAPI) -> None:
    database: Database = app.state.database
    user_id = _create(app)
    keyring: Keyring = app.state.keyring
    stored = _envelope(database, user_id)

    opened = open_plaintext(keyring, stored, Binding("users", user_id, "email", FIELD_VERSION))

    assert opened.reveal() == ADDRESS.encode()
    for wrong in (
        Binding("users", user_id + 1, "email", FIELD_VERSION),
        Binding("users", user_id, "totp_seed", FIELD_VERSION),
        Binding("auth_sessions", user_id, "email", FIELD_VERSION),
    ):
        with pytest.raises(CiphertextInvalid):
            open_plaintext(keyring, stored, wrong)


def test_envelope_moved_to_other_user_fails(app: FastAPI) -> None:
    database: Database = app.state.database
    victim = _create(app, "victim@example.com")
    attacker = _create(app, "attacker@example.com")

    with database.transaction() as session:
        session.execute(
            update(User)
            .where(User.id == attacker)
            .values(email_envelope=_envelope(database, victim))
        )
    with database.reader() as session:
        moved = session.get(User, attacker)
        assert moved is not None
        with pytest.raises(CiphertextInvalid) as caught:
            _ = moved.email

    assert caught.value.code == "ciphertext_invalid"


def test_envelope_moved_to_other_field_fails(app: FastAPI) -> None:
    database: Database = app.state.database
    user_id = _create(app)

    with database.transaction() as session:
        session.execute(
            update(User)
            .where(User.id == user_id)
            .values(totp_seed_envelope=_envelope(database, user_id))
        )
    with database.reader() as session:
        user = session.get(User, user_id)
        assert user is not None
        with pytest.raises(CiphertextInvalid):
            _ = user.totp_seed


def test_new_row_sealed_before_flush_rejected(app: FastAPI) -> None:
    database: Database = app.state.database
    with database.reader() as session:
        auth_session = AuthSession()
        session.add(auth_session)

        with pytest.raises(RecordNotFlushed) as caught:
            auth_session.user_agent = "curl/8.0"

    assert "flush the new row first" in str(caught.value)


def test_session_without_keys_cannot_read(app: FastAPI) -> None:
    database: Database = app.state.database
    user_id = _create(app)

    with Session(database.engine) as bare:
        user = bare.get(User, user_id)
        assert user is not None
        with pytest.raises(FieldKeysMissing):
            _ = user.email


def test_detached_user_still_readable(app: FastAPI) -> None:
    database: Database = app.state.database
    user_id = _create(app)

    with database.reader() as session:
        user = session.get(User, user_id)
        assert user is not None
        session.expunge(user)

    assert user.email == ADDRESS


def test_sealed_keyring_cannot_read(app: FastAPI) -> None:
    database: Database = app.state.database
    user_id = _create(app)
    sealed = FieldKeys(Keyring(), _field_keys(database).index_key)

    with Session(database.engine, info={SESSION_INFO_KEY: sealed}) as session:
        user = session.get(User, user_id)
        assert user is not None
        with pytest.raises(VaultSealed):
            _ = user.email
        # The blind index needs no KEK, so the user is still found.
        assert user_by_email(session, ADDRESS) is not None


@pytest.mark.parametrize(
    "variant", ["ada.lovelace@example.com", "ADA.LOVELACE@EXAMPLE.COM", "Ada.Lovelace@example.com"]
)
def test_blind_index_finds_normalised_variants(app: FastAPI, variant: str) -> None:
    database: Database = app.state.database
    user_id = _create(app)

    with database.reader() as session:
        found = user_by_email(session, variant)

    assert found is not None
    assert found.id == user_id


def test_blind_index_keyed_and_not_the_address(app: FastAPI, tmp_path: Path) -> None:
    database: Database = app.state.database
    other_dir = tmp_path / "other-keys"
    create_key_files(other_dir)
    other = load_field_keys(other_dir, load_keyring(other_dir))

    with database.reader() as session:
        key = email_key_of(session, ADDRESS)

    assert len(key) == 64
    assert "example" not in key
    assert key != other.blind_index(EMAIL_INDEX_PURPOSE, "ada.lovelace@example.com")
    keys = _field_keys(database)
    assert key == keys.blind_index(EMAIL_INDEX_PURPOSE, "ada.lovelace@example.com")
    assert key != keys.blind_index("other.purpose", "ada.lovelace@example.com")


def test_field_keys_repr_hides_index_key(data_dir: Path) -> None:
    keys = load_field_keys(data_dir / "keys", Keyring())

    assert isinstance(keys.index_key, Secret)
    assert keys.index_key.reveal().hex() not in repr(keys)


def test_rotation_rewraps_sealed_fields(app: FastAPI, settings: Settings) -> None:
    database: Database = app.state.database
    user_id = _create(app)
    old_id = app.state.keyring.current.id
    new_id = add_kek(settings.keys_dir).id

    # The email and the TOTP seed still need the old KEK, so it cannot be retired yet.
    assert records_needing(database, old_id) >= 2
    with pytest.raises(Refused, match="still wraps"):
        retire_kek(database, settings.keys_dir, old_id)

    rotate_data_keys(database, load_keyring(settings.keys_dir), batch_size=1)
    retire_kek(database, settings.keys_dir, old_id)

    usage = envelopes_by_kek(database)
    assert usage["users.email_envelope"] == {new_id: usage["users.email_envelope"][new_id]}
    assert usage["users.totp_seed_envelope"].keys() == {new_id}
    assert records_needing(database, old_id) == 0
    rotated = FieldKeys(load_keyring(settings.keys_dir), _field_keys(database).index_key)
    with Session(database.engine, info={SESSION_INFO_KEY: rotated}) as session:
        user = session.get(User, user_id)
        assert user is not None
        assert user.email == ADDRESS
        assert user.totp_seed == SEED


def test_sign_in_with_sealed_vault_fails_clearly(
    app: FastAPI, settings: Settings, database: Database, tmp_path: Path
) -> None:
    user = create_test_user(app, role=Role.DEVELOPER, mfa=False, password_hash=password_hash())
    sealed_dir = tmp_path / "sealed-data"
    shutil.copytree(settings.data_dir, sealed_dir)
    (sealed_dir / "keys" / MASTER_KEY).unlink()
    sealed_app = create_app(settings.model_copy(update={"data_dir": sealed_dir}), database)

    with TestClient(sealed_app, raise_server_exceptions=False) as browser:
        response = sign_in(browser, user.email)

    assert sealed_app.state.keyring.sealed
    assert response.status_code == 503
    assert response.json()["error"] == "vault_sealed"
    assert response.json()["message"] == VaultSealed().message
