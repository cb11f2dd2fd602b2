"""Store, read and destroy secrets. Values go in and come out only as ``Secret`` objects.

Each version's value is sealed in its own envelope bound to ("secret_versions", secret id,
"value", version number), so an envelope copied to another secret or version does not decrypt.
"""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ScalarSelect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llero.crypto import Secret
from llero.errors import Conflict, InvalidInput, NotFound, Refused, Violation
from llero.logs import get_logger
from llero.storage.base import utc_now
from llero.storage.db import Database
from llero.vault.envelope import Binding, envelope_kek_id, open_plaintext, seal_plaintext
from llero.vault.errors import CiphertextInvalid
from llero.vault.keyring import Keyring
from llero.vault.models import (
    DESCRIPTION_MAX,
    HINT_LENGTH,
    NAME_MAX,
    SecretKind,
    SecretVersion,
    StoredSecret,
)

VALUE_TABLE = SecretVersion.__tablename__
VALUE_FIELD = "value"

# Room for API keys, webhook secrets and PEM private keys, which take a few kilobytes at most.
MAX_VALUE_BYTES = 64 * 1024
# Four characters of a 16-character key leave at least 12 unknown; shorter values get no hint.
MIN_LENGTH_FOR_HINT = 16

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")

# last_used_at is written at most this often per version. Writing it on every read would make
# each read a write transaction, which on SQLite waits for the disk and for other writers.
LAST_USED_PRECISION = timedelta(minutes=1)

logger = get_logger(__name__)


@dataclass(frozen=True)
class VersionInfo:
    """Metadata of one version of a secret, safe to show because it never includes the value."""

    secret_id: int
    version: int
    hint: str
    kek_id: str | None
    created_at: datetime
    rotated_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None
    destroyed: bool
    destroyed_at: datetime | None


def value_binding(secret_id: int, version: int) -> Binding:
    return Binding(table=VALUE_TABLE, record_id=secret_id, field=VALUE_FIELD, version=version)


class VaultService:
    """Secrets and their versions in the database, sealed with the keyring's current KEK."""

    def __init__(self, database: Database, keyring: Keyring) -> None:
        self._database = database
        self._keyring = keyring

    def create_secret(
        self,
        *,
        name: str,
        kind: SecretKind,
        value: Secret[str],
        description: str = "",
        owner_user_id: int | None = None,
        expires_at: datetime | None = None,
    ) -> VersionInfo:
        """Store a new secret with ``value`` as its version 1.

        Raises InvalidInput for a bad name, description or value, and Conflict when the name is
        taken.
        """
        _check_name(name)
        _check_description(description)
        _checked_value(value)
        try:
            with self._database.transaction() as session:
                secret = StoredSecret(
                    name=name,
                    kind=kind,
                    description=description,
                    owner_user_id=owner_user_id,
                    current_version=1,
                )
                session.add(secret)
                session.flush()
                row = self._new_version(session, secret.id, 1, value, expires_at=expires_at)
        except IntegrityError:
            raise Conflict(f"a secret named {name!r} already exists") from None
        logger.info("vault_secret_created", secret_id=secret.id, kind=str(kind), version=1)
        return _info(row)

    def add_version(
        self, secret_id: int, value: Secret[str], *, expires_at: datetime | None = None
    ) -> VersionInfo:
        """Store ``value`` as the secret's next version and make it current.

        Raises NotFound for an unknown secret, and Conflict when another writer added a version
        at the same moment (retry).
        """
        _checked_value(value)
        moment = utc_now()
        try:
            with self._database.transaction() as session:
                secret = _secret(session, secret_id)
                number = secret.current_version + 1
                session.execute(
                    update(SecretVersion)
                    .where(
                        SecretVersion.secret_id == secret_id,
                        SecretVersion.version == secret.current_version,
                    )
                    .values(rotated_at=moment)
                )
                secret.current_version = number
                secret.updated_at = moment
                row = self._new_version(session, secret_id, number, value, expires_at=expires_at)
        except IntegrityError:
            raise Conflict(f"secret {secret_id} changed meanwhile; retry") from None
        logger.info("vault_secret_version_added", secret_id=secret_id, version=number)
        return _info(row)

    def read_plaintext(self, secret_id: int, version: int | None = None) -> Secret[str]:
        """Decrypt a version (the current one by default) and record when it was last used.

        Raises NotFound for an unknown secret or version, Refused for a destroyed or expired
        version, CiphertextInvalid when the stored envelope does not open, and VaultSealed.
        """
        with self._database.transaction() as session:
            stored = _stored_value(session, secret_id, version)
            envelope = _usable_envelope(stored)
            try:
                plaintext = open_plaintext(
                    self._keyring, envelope, value_binding(secret_id, stored.version)
                )
            except CiphertextInvalid as error:
                logger.warning(
                    "vault_decrypt_failed",
                    secret_id=secret_id,
                    version=stored.version,
                    reason=str(error.reason),
                    kek_id=error.kek_id,
                )
                raise
            _record_use(session, stored)
        return Secret(plaintext.reveal().decode("utf-8"))

    def destroy_version(self, secret_id: int, version: int) -> VersionInfo:
        """Delete a version's envelope, and with it the wrapped data key (crypto-shredding).

        Once committed, nothing in the live database can decrypt that value. A backup taken
        before still contains the envelope, which the KEK of that time can open. Rotating to a
        new KEK and retiring the old one (rotation.py) makes such backups unreadable too.
        """
        with self._database.transaction() as session:
            row = _version(session, secret_id, version)
            if not row.destroyed:
                row.envelope = None
                row.kek_id = None
                row.hint = ""
                row.destroyed = True
                row.destroyed_at = utc_now()
        logger.info("vault_secret_version_destroyed", secret_id=secret_id, version=version)
        return _info(row)

    def list_versions(self, secret_id: int) -> list[VersionInfo]:
        with self._database.reader() as session:
            _secret(session, secret_id)
            rows = session.scalars(
                select(SecretVersion)
                .where(SecretVersion.secret_id == secret_id)
                .order_by(SecretVersion.version)
            ).all()
            return [_info(row) for row in rows]

    def _new_version(
        self,
        session: Session,
        secret_id: int,
        number: int,
        value: Secret[str],
        *,
        expires_at: datetime | None,
    ) -> SecretVersion:
        plaintext = Secret(_checked_value(value))
        envelope = seal_plaintext(self._keyring, plaintext, value_binding(secret_id, number))
        row = SecretVersion(
            secret_id=secret_id,
            version=number,
            envelope=envelope,
            kek_id=envelope_kek_id(envelope),
            hint=_hint(value),
            expires_at=expires_at,
        )
        session.add(row)
        session.flush()
        return row


def _secret(session: Session, secret_id: int) -> StoredSecret:
    secret = session.get(StoredSecret, secret_id)
    if secret is None:
        raise NotFound(f"secret {secret_id} not found")
    return secret


def _version(session: Session, secret_id: int, version: int) -> SecretVersion:
    row = session.scalars(
        select(SecretVersion).where(
            SecretVersion.secret_id == secret_id, SecretVersion.version == version
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"version {version} of secret {secret_id} not found")
    return row


@dataclass(frozen=True)
class _StoredValue:
    """The columns of one version that reading its value needs."""

    id: int
    secret_id: int
    version: int
    envelope: bytes | None
    destroyed: bool
    expires_at: datetime | None
    last_used_at: datetime | None


def _stored_value(session: Session, secret_id: int, version: int | None) -> _StoredValue:
    """Load a version (the current one when ``version`` is None) with one query instead of two
    ORM loads, because reading a secret is the vault's hot path."""
    number: int | ScalarSelect[int] = (
        version
        if version is not None
        else (
            select(StoredSecret.current_version)
            .where(StoredSecret.id == secret_id)
            .scalar_subquery()
        )
    )
    row = session.execute(
        select(
            SecretVersion.id,
            SecretVersion.secret_id,
            SecretVersion.version,
            SecretVersion.envelope,
            SecretVersion.destroyed,
            SecretVersion.expires_at,
            SecretVersion.last_used_at,
        ).where(SecretVersion.secret_id == secret_id, SecretVersion.version == number)
    ).one_or_none()
    if row is None:
        _secret(session, secret_id)
        described = "current version" if version is None else f"version {version}"
        raise NotFound(f"{described} of secret {secret_id} not found")
    return _StoredValue(*row)


def _record_use(session: Session, stored: _StoredValue) -> None:
    moment = utc_now()
    if stored.last_used_at is None or moment - stored.last_used_at >= LAST_USED_PRECISION:
        session.execute(
            update(SecretVersion).where(SecretVersion.id == stored.id).values(last_used_at=moment)
        )


def _usable_envelope(row: _StoredValue) -> bytes:
    if row.destroyed or row.envelope is None:
        raise Refused(f"version {row.version} of secret {row.secret_id} was destroyed")
    if row.expires_at is not None and row.expires_at <= utc_now():
        raise Refused(f"version {row.version} of secret {row.secret_id} has expired")
    return row.envelope


def _check_name(name: str) -> None:
    if len(name) > NAME_MAX or not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"name: must be 1 to {NAME_MAX} characters of a-z, 0-9, '_', '.', '-', "
            "starting with a letter or digit",
            details=[Violation("name", "invalid secret name")],
        )


def _check_description(description: str) -> None:
    if len(description) > DESCRIPTION_MAX:
        raise InvalidInput(
            f"description: must be at most {DESCRIPTION_MAX} characters",
            details=[Violation("description", "too long")],
        )


def _checked_value(value: Secret[str]) -> bytes:
    raw_value = value.reveal().encode("utf-8")
    if not raw_value or len(raw_value) > MAX_VALUE_BYTES:
        raise InvalidInput(
            f"value: must be 1 to {MAX_VALUE_BYTES} bytes",
            details=[Violation("value", "empty or too long")],
        )
    return raw_value


def _hint(value: Secret[str]) -> str:
    text = value.reveal()
    return text[-HINT_LENGTH:] if len(text) >= MIN_LENGTH_FOR_HINT else ""


def _info(row: SecretVersion) -> VersionInfo:
    return VersionInfo(
        secret_id=row.secret_id,
        version=row.version,
        hint=row.hint,
        kek_id=row.kek_id,
        created_at=row.created_at,
        rotated_at=row.rotated_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        destroyed=row.destroyed,
        destroyed_at=row.destroyed_at,
    )
