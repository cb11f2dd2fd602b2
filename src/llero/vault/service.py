"""Store, read and destroy secrets. Values go in and come out only as ``Secret`` objects.

A ``ValueStore`` keeps the values (see vault/values.py). With the built-in store each version's
value is sealed in its own envelope bound to ("secret_versions", secret id, "value", version
number), so an envelope copied to another secret or version does not decrypt. Metadata stays in
the database whichever store holds the values.

When an external backend fails, the call fails with BackendUnavailable and nothing is written
but a ``vault:backend_failed`` audit record; no other store is tried in its place.

Every secret also has its own key (secret_keys.py). A built-in value is encrypted under it before
it is sealed in its envelope, so deleting the secret, which deletes its key, leaves every copy of
its envelopes undecryptable. External backends receive the value itself and delete it when told.

Every method takes an optional ``session``. Given one, the method works in that transaction and
flushes without committing, so a route can commit the change together with its audit record;
without one, the method runs in a transaction of its own.
"""

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ScalarSelect, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llero.audit.context import Origin, Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.crypto import Secret, zero
from llero.errors import Conflict, InvalidInput, NotFound, Refused, Violation
from llero.logs import get_logger
from llero.storage.base import utc_now
from llero.storage.db import Database
from llero.storage.generation import GenerationCache
from llero.vault.errors import BackendFailure, BackendUnavailable, CiphertextInvalid
from llero.vault.keyring import Keyring
from llero.vault.models import (
    DESCRIPTION_MAX,
    HINT_LENGTH,
    NAME_MAX,
    SecretKey,
    SecretKind,
    SecretVersion,
    StoredSecret,
)
from llero.vault.secret_keys import (
    create_secret_key,
    load_secret_key,
    open_inner,
    open_secret_key,
    seal_inner,
    shred_secret_key,
)
from llero.vault.values import (
    VALUE_FIELD,
    VALUE_TABLE,
    Backend,
    BuiltinValueStore,
    StoredValue,
    ValueStore,
    backend_label,
    value_binding,
)

__all__ = ["VALUE_FIELD", "VALUE_TABLE", "VaultService", "VersionInfo", "value_binding"]

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
    backend: str
    kek_id: str | None
    created_at: datetime
    rotated_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None
    destroyed: bool
    destroyed_at: datetime | None


# Who a failure is recorded for when the caller passes no origin.
_SYSTEM_ORIGIN = Origin.system("vault")


class VaultService:
    """Secrets and their versions in the database; values in ``store``, or sealed with the
    keyring's current KEK in the database when no store is given."""

    def __init__(
        self, database: Database, keyring: Keyring, store: ValueStore | None = None
    ) -> None:
        self._database = database
        self._keyring = keyring
        self._builtin = BuiltinValueStore(keyring)
        self._store: ValueStore = store or self._builtin
        self._recorded_uses: dict[int, datetime] = {}

    @property
    def backend(self) -> Backend:
        """The backend that new values are written to."""
        return self._store.backend

    @contextmanager
    def _transaction(self, session: Session | None) -> Iterator[Session]:
        """Yield the caller's session, or a transaction of its own when there is none.

        NOTE: with the caller's session, a value that an external backend accepted stays there
        when the caller rolls back later (after this method returned), unreferenced by any row.
        """
        if session is not None:
            yield session
            return
        with self._database.transaction() as own:
            yield own

    def create_secret(
        self,
        *,
        name: str,
        kind: SecretKind,
        value: Secret[str],
        description: str = "",
        owner_user_id: int | None = None,
        expires_at: datetime | None = None,
        origin: Origin | None = None,
        session: Session | None = None,
    ) -> VersionInfo:
        """Store a new secret with ``value`` as its version 1.

        Raises InvalidInput for a bad name, description or value, Conflict when the name is
        taken, and BackendUnavailable when the value store fails (``origin`` is recorded then).
        """
        _check_name(name)
        _check_description(description)
        _checked_value(value)
        placed: list[_Placed] = []
        try:
            with self._transaction(session) as active:
                _check_name_free(active, name)
                secret = StoredSecret(
                    name=name,
                    kind=kind,
                    description=description,
                    owner_user_id=owner_user_id,
                    current_version=1,
                )
                active.add(secret)
                active.flush()
                key = create_secret_key(active, self._keyring, secret.id)
                try:
                    row = self._new_version(
                        active, placed, secret.id, 1, value, key=key, expires_at=expires_at
                    )
                finally:
                    zero(key)
        except IntegrityError:
            self._discard(placed)
            raise Conflict(f"a secret named {name!r} already exists") from None
        except BackendUnavailable as error:
            self._record_failure(
                origin, error, secret_id=None, version=1, session=session, name=name
            )
            raise
        except BaseException:
            self._discard(placed)
            raise
        logger.info(
            "vault_secret_created",
            secret_id=secret.id,
            kind=str(kind),
            version=1,
            backend=row.backend,
        )
        return version_info(row)

    def add_version(
        self,
        secret_id: int,
        value: Secret[str],
        *,
        expires_at: datetime | None = None,
        origin: Origin | None = None,
        session: Session | None = None,
    ) -> VersionInfo:
        """Store ``value`` as the secret's next version and make it current.

        Raises NotFound for an unknown secret, Conflict when another writer added a version
        at the same moment (retry), and BackendUnavailable when the value store fails.
        """
        _checked_value(value)
        moment = utc_now()
        placed: list[_Placed] = []
        number = 0
        try:
            with self._transaction(session) as active:
                secret = _secret(active, secret_id)
                number = secret.current_version + 1
                active.execute(
                    update(SecretVersion)
                    .where(
                        SecretVersion.secret_id == secret_id,
                        SecretVersion.version == secret.current_version,
                    )
                    .values(rotated_at=moment)
                )
                secret.current_version = number
                secret.updated_at = moment
                key = load_secret_key(active, self._keyring, secret_id)
                try:
                    row = self._new_version(
                        active, placed, secret_id, number, value, key=key, expires_at=expires_at
                    )
                finally:
                    zero(key)
        except IntegrityError:
            self._discard(placed)
            raise Conflict(f"secret {secret_id} changed meanwhile; retry") from None
        except BackendUnavailable as error:
            self._record_failure(
                origin, error, secret_id=secret_id, version=number, session=session
            )
            raise
        except BaseException:
            self._discard(placed)
            raise
        logger.info(
            "vault_secret_version_added", secret_id=secret_id, version=number, backend=row.backend
        )
        return version_info(row)

    def read_plaintext(
        self,
        secret_id: int,
        version: int | None = None,
        *,
        origin: Origin | None = None,
        session: Session | None = None,
        cache: GenerationCache | None = None,
    ) -> Secret[str]:
        """Decrypt or fetch a version (the current one by default) and record when it was last
        used. With ``cache``, the stored envelopes are kept until the configuration changes;
        recording the time of last use does not count as a change.

        Raises NotFound for an unknown secret or version, Refused for a destroyed or expired
        version, CiphertextInvalid when the stored envelope does not open, VaultSealed, and
        BackendUnavailable when the backend that holds the value fails.
        """
        stored: _StoredValue | None = None
        try:
            with self._transaction(session) as active:
                if cache is None:
                    stored = _stored_value(active, secret_id, version)
                else:
                    stored = cache.get(
                        active,
                        ("secret_value", secret_id, version),
                        functools.partial(_stored_value, active, secret_id, version),
                    )
                _check_usable(stored)
                plaintext = self._open(stored)
                _record_use(active, stored, self._recorded_uses)
        except BackendUnavailable as error:
            number = stored.version if stored is not None else version
            self._record_failure(
                origin, error, secret_id=secret_id, version=number, session=session
            )
            raise
        return Secret(plaintext.reveal().decode("utf-8"))

    def destroy_version(
        self,
        secret_id: int,
        version: int,
        *,
        origin: Origin | None = None,
        session: Session | None = None,
    ) -> VersionInfo:
        """Delete a version's value: its envelope with the wrapped data key (crypto-shredding),
        or the value in the external backend, which is told to delete it first.

        Once committed, nothing in the live database can decrypt a built-in value. A backup taken
        before still contains the envelope and the secret's key, which the KEK of that time can
        open. Rotating to a
        new KEK and retiring the old one (rotation.py) makes such backups unreadable too. When
        the backend fails, BackendUnavailable is raised and the version stays as it was.
        """
        try:
            with self._transaction(session) as active:
                row = _version(active, secret_id, version)
                if not row.destroyed:
                    self._store_for(row.backend).destroy(secret_id, version, _stored_of(row))
                    row.envelope = None
                    row.kek_id = None
                    row.hint = ""
                    row.destroyed = True
                    row.destroyed_at = utc_now()
                    active.flush()
        except BackendUnavailable as error:
            self._record_failure(
                origin, error, secret_id=secret_id, version=version, session=session
            )
            raise
        logger.info("vault_secret_version_destroyed", secret_id=secret_id, version=version)
        return version_info(row)

    def delete_secret(
        self, secret_id: int, *, origin: Origin | None = None, session: Session | None = None
    ) -> int:
        """Delete a secret, its key and every version; return how many versions it had.

        Values in an external backend are deleted there first. Deleting the secret's key is what
        shreds built-in values: an envelope of any of its versions copied before still opens with
        the KEK, but only to a ciphertext whose key no longer exists. A full database backup
        taken before the deletion contains the key too, so the NOTE of ``destroy_version``
        applies to it.
        """
        with self._transaction(session) as active:
            _secret(active, secret_id)
            rows = active.scalars(
                select(SecretVersion).where(SecretVersion.secret_id == secret_id)
            ).all()
            for row in rows:
                if not row.destroyed:
                    self.destroy_version(secret_id, row.version, origin=origin, session=active)
            shred_secret_key(active, secret_id)
            active.execute(delete(SecretVersion).where(SecretVersion.secret_id == secret_id))
            active.execute(delete(StoredSecret).where(StoredSecret.id == secret_id))
        logger.info("vault_secret_deleted", secret_id=secret_id)
        return len(rows)

    def list_versions(self, secret_id: int, *, session: Session | None = None) -> list[VersionInfo]:
        with self._transaction(session) as active:
            _secret(active, secret_id)
            rows = active.scalars(
                select(SecretVersion)
                .where(SecretVersion.secret_id == secret_id)
                .order_by(SecretVersion.version)
            ).all()
            return [version_info(row) for row in rows]

    def _new_version(
        self,
        session: Session,
        placed: list["_Placed"],
        secret_id: int,
        number: int,
        value: Secret[str],
        *,
        key: bytearray,
        expires_at: datetime | None,
    ) -> SecretVersion:
        """Store the value and add its row; ``placed`` collects what to discard on rollback.

        A built-in value is encrypted under the secret's ``key`` first; an external backend gets
        the value itself.
        """
        plaintext = Secret(_checked_value(value))
        if self._store.backend is Backend.BUILTIN:
            binding = value_binding(secret_id, number)
            plaintext = Secret(seal_inner(key, plaintext.reveal(), binding))
        stored = self._store.put(secret_id, number, plaintext)
        placed.append(_Placed(secret_id, number, stored))
        row = SecretVersion(
            secret_id=secret_id,
            version=number,
            envelope=stored.envelope,
            kek_id=stored.kek_id,
            backend=stored.backend.value,
            reference=stored.reference,
            hint=_hint(value),
            expires_at=expires_at,
        )
        session.add(row)
        session.flush()
        return row

    def _open(self, stored: "_StoredValue") -> Secret[bytes]:
        store = self._store_for(stored.backend)
        try:
            value = store.get(stored.secret_id, stored.version, _stored_of(stored))
            if stored.backend != Backend.BUILTIN:
                return value
            key = open_secret_key(self._keyring, stored.secret_id, stored.key_envelope)
            try:
                return open_inner(
                    key, value.reveal(), value_binding(stored.secret_id, stored.version)
                )
            finally:
                zero(key)
        except CiphertextInvalid as error:
            logger.warning(
                "vault_decrypt_failed",
                secret_id=stored.secret_id,
                version=stored.version,
                reason=str(error.reason),
                kek_id=error.kek_id,
            )
            raise

    def _store_for(self, backend: str) -> ValueStore:
        """Return the store that holds values of ``backend``, never a stand-in for it."""
        if backend == Backend.BUILTIN:
            return self._builtin
        if backend == self._store.backend:
            return self._store
        raise BackendUnavailable(backend_label(backend), "select", BackendFailure.NOT_CONFIGURED)

    def _discard(self, placed: list["_Placed"]) -> None:
        """Delete values that an external store accepted for a transaction that rolled back."""
        for item in placed:
            if item.stored.backend is Backend.BUILTIN:
                continue
            try:
                self._store.destroy(item.secret_id, item.version, item.stored)
            except BackendUnavailable as error:
                # The value stays behind in the backend under its reference, unreferenced by any
                # row. The log line gives an admin what is needed to delete it by hand.
                logger.error(  # noqa: TRY400 - the cause is the failure logged just before
                    "vault_backend_value_orphaned",
                    backend=error.backend,
                    secret_id=item.secret_id,
                    version=item.version,
                    reference=item.stored.reference,
                )

    def _record_failure(
        self,
        origin: Origin | None,
        error: BackendUnavailable,
        *,
        secret_id: int | None,
        version: int | None,
        session: Session | None,
        name: str | None = None,
    ) -> None:
        """Record a backend failure in its own transaction, since the action's rolled back."""
        detail: dict[str, object] = {
            "backend": error.backend,
            "operation": error.operation,
            "failure": str(error.failure),
            "status": error.status,
            "version": version,
        }
        if name is not None:
            detail["name"] = name
        logger.warning("vault_backend_failed", secret_id=secret_id, **detail)
        target = None if secret_id is None else Target.of("secret", secret_id)

        def write(own: Session) -> None:
            event = AuditEvent.VAULT_BACKEND_FAILED
            record_as(own, origin or _SYSTEM_ORIGIN, event, target, detail)

        def unaudited(_error: Exception) -> None:
            # The call fails either way, and the caller must still get its 503.
            logger.exception("vault_backend_failure_unaudited", secret_id=secret_id, **detail)

        self._database.in_own_transaction(session, write, on_error=unaudited)


@dataclass(frozen=True)
class _Placed:
    """A value that a store accepted inside a transaction that has not committed yet."""

    secret_id: int
    version: int
    stored: StoredValue


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
    kek_id: str | None
    backend: str
    reference: str | None
    destroyed: bool
    expires_at: datetime | None
    last_used_at: datetime | None
    key_envelope: bytes | None


def _stored_value(session: Session, secret_id: int, version: int | None) -> _StoredValue:
    """Load a version (the current one when ``version`` is None) and the secret's key with one
    query instead of three ORM loads, because reading a secret is the vault's hot path."""
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
            SecretVersion.kek_id,
            SecretVersion.backend,
            SecretVersion.reference,
            SecretVersion.destroyed,
            SecretVersion.expires_at,
            SecretVersion.last_used_at,
            SecretKey.envelope.label("key_envelope"),
        )
        .outerjoin(SecretKey, SecretKey.secret_id == SecretVersion.secret_id)
        .where(SecretVersion.secret_id == secret_id, SecretVersion.version == number)
    ).one_or_none()
    if row is None:
        _secret(session, secret_id)
        described = "current version" if version is None else f"version {version}"
        raise NotFound(f"{described} of secret {secret_id} not found")
    return _StoredValue(**row._asdict())


_RECORDED_USES_MAX = 10_000


def _record_use(session: Session, stored: _StoredValue, recorded: dict[int, datetime]) -> None:
    """Set the version's last_used_at, at most once per LAST_USED_PRECISION.

    ``recorded`` maps version ids to when this service last set them, because a cached
    ``stored`` keeps the last_used_at it was read with.
    """
    moment = utc_now()
    last = max(
        (when for when in (stored.last_used_at, recorded.get(stored.id)) if when), default=None
    )
    if last is None or moment - last >= LAST_USED_PRECISION:
        session.execute(
            update(SecretVersion).where(SecretVersion.id == stored.id).values(last_used_at=moment)
        )
        if len(recorded) >= _RECORDED_USES_MAX:
            recorded.clear()
        recorded[stored.id] = moment


def _check_usable(row: _StoredValue) -> None:
    if row.destroyed:
        raise Refused(f"version {row.version} of secret {row.secret_id} was destroyed")
    if row.expires_at is not None and row.expires_at <= utc_now():
        raise Refused(f"version {row.version} of secret {row.secret_id} has expired")


def _stored_of(row: _StoredValue | SecretVersion) -> StoredValue:
    return StoredValue(
        Backend(row.backend), envelope=row.envelope, kek_id=row.kek_id, reference=row.reference
    )


def _check_name(name: str) -> None:
    if len(name) > NAME_MAX or not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"name: must be 1 to {NAME_MAX} characters of a-z, 0-9, '_', '.', '-', "
            "starting with a letter or digit",
            details=[Violation("name", "invalid secret name")],
        )


def _check_name_free(session: Session, name: str) -> None:
    # Checked before the insert so that a taken name fails without a failed statement, which
    # would abort the caller's transaction on PostgreSQL. A race still ends in IntegrityError.
    if session.scalar(select(StoredSecret.id).where(StoredSecret.name == name)) is not None:
        raise Conflict(f"a secret named {name!r} already exists")


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


def version_info(row: SecretVersion) -> VersionInfo:
    return VersionInfo(
        secret_id=row.secret_id,
        version=row.version,
        hint=row.hint,
        backend=row.backend,
        kek_id=row.kek_id,
        created_at=row.created_at,
        rotated_at=row.rotated_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        destroyed=row.destroyed,
        destroyed_at=row.destroyed_at,
    )
