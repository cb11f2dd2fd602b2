"""Field encryption: confidential and secret columns sealed row by row, and blind indexes.

A sealed field is a ``str`` attribute of a model whose value is stored as an envelope
(llero.vault.envelope) in another column of the same row. The envelope's binding is the table,
the row's primary key and the field name, so an envelope copied to another row or field does not
open. The binding needs the primary key, so a new row is flushed before its sealed fields are set;
setting one earlier raises RecordNotFlushed.

The keys come from the database session: ``attach_field_keys`` gives every session of a factory
the keyring and the blind index key, as the app and the CLI do when they open the database. An
object loaded through such a session keeps a reference to the keys, so its fields can still be
read after the session is closed.

A blind index is HMAC-SHA256 of a normalised value under a key derived for one purpose from
data/keys/index.key. It finds a row by an exact value (a user by email address) and enforces
uniqueness without storing the value. Without the key nobody can test guesses against it. The
index key is not a KEK: rotating KEKs leaves every index valid.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import LargeBinary, event
from sqlalchemy.orm import (
    InstrumentedAttribute,
    QueryContext,
    Session,
    object_session,
    sessionmaker,
)

from llero.config.keyfiles import INDEX_KEY, SYMMETRIC_KEY_BYTES, read_symmetric_key
from llero.crypto import Secret, keyed_hash
from llero.storage.base import AtRest, Base, DataClass, classified
from llero.vault.envelope import Binding, open_plaintext, seal_plaintext
from llero.vault.keyring import Keyring

# The binding version of every sealed field. A field has one value at a time, so the version
# only marks the binding's format; a value written again gets a new data key, not a new version.
FIELD_VERSION = 1

# The entry of a session's ``info`` that contains the FieldKeys.
SESSION_INFO_KEY = "llero.vault.field_keys"
# The attribute under which a loaded object keeps the FieldKeys of the session that loaded it.
_OBJECT_KEYS = "_llero_field_keys"

_INDEX_LABEL = b"llero blind index v1 "

Value = TypeVar("Value", str, str | None)


class FieldKeysMissing(RuntimeError):
    """The session has no field keys, so no sealed field can be read or written."""


class RecordNotFlushed(RuntimeError):
    """A sealed field was set on a row that has no primary key yet; flush the row first."""


@dataclass(frozen=True)
class FieldKeys:
    """The keyring that seals fields and the key of blind indexes (masked in ``repr``)."""

    keyring: Keyring
    index_key: Secret[bytes]

    def blind_index(self, purpose: str, normalized: str) -> str:
        """Return the blind index of ``normalized`` for ``purpose`` (for example "users.email")."""
        derive = HKDF(
            algorithm=hashes.SHA256(),
            length=SYMMETRIC_KEY_BYTES,
            salt=None,
            info=_INDEX_LABEL + purpose.encode("utf-8"),
        )
        return keyed_hash(derive.derive(self.index_key.reveal()), normalized)


def load_field_keys(keys_dir: Path, keyring: Keyring) -> FieldKeys:
    """Pair ``keyring`` with data/keys/index.key; raise KeyFileError for an unusable index key.

    The keyring may be sealed; the index key is always required.
    """
    index_key = read_symmetric_key(keys_dir / INDEX_KEY).material
    return FieldKeys(keyring, Secret(index_key))


def attach_field_keys(factory: sessionmaker[Session], keys: FieldKeys) -> None:
    """Give every session that ``factory`` makes from now on the field keys."""
    info = dict(factory.kw.get("info") or {})
    info[SESSION_INFO_KEY] = keys
    factory.configure(info=info)


def field_keys_of(session: Session) -> FieldKeys:
    """Return the field keys of ``session``; raise FieldKeysMissing when none are attached."""
    keys = session.info.get(SESSION_INFO_KEY)
    if not isinstance(keys, FieldKeys):
        raise FieldKeysMissing(
            "no field keys are attached to this database session; load them with "
            "load_field_keys and attach them with attach_field_keys"
        )
    return keys


def sealed_column(data_class: DataClass) -> Any:
    """Return a nullable column of envelopes for a SealedText of the given data class."""
    return classified(data_class, LargeBinary, nullable=True, at_rest=AtRest.ENVELOPE)


class SealedText(Generic[Value]):
    """A text attribute of a model, stored sealed in the envelope column named ``envelope``.

    On the class it is the envelope column, so ``User.totp_seed.is_not(None)`` is a query on
    whether a value is stored. On an object, reading decrypts and writing encrypts. Reading raises
    VaultSealed when no KEK is loaded and CiphertextInvalid when the envelope does not open at this
    row and field. Use ``SealedText[str]`` for a field that is always set, ``SealedText[str |
    None]`` for one that may be empty.
    """

    def __init__(self, envelope: str) -> None:
        self.envelope = envelope
        self.model: type[Any] = object
        self.field = ""
        self.table = ""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.model = owner
        self.field = name
        self.table = owner.__tablename__
        _SEALED_FIELDS.append(self)

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> InstrumentedAttribute[bytes | None]: ...

    @overload
    def __get__(self, instance: object, owner: type[Any]) -> Value: ...

    def __get__(self, instance: object | None, owner: type[Any]) -> Any:
        if instance is None:
            return getattr(owner, self.envelope)
        data = getattr(instance, self.envelope)
        if data is None:
            return None
        keys = _keys_of(instance)
        plaintext = open_plaintext(keys.keyring, data, self.binding(instance))
        return plaintext.reveal().decode("utf-8")

    def __set__(self, instance: object, value: Value) -> None:
        if value is None:
            setattr(instance, self.envelope, None)
            return
        binding = self.binding(instance)
        sealed = seal_plaintext(_keys_of(instance).keyring, Secret(value.encode("utf-8")), binding)
        setattr(instance, self.envelope, sealed)

    def seal(self, keys: FieldKeys, record_id: int, value: str) -> bytes:
        """Return the envelope of ``value`` in this field of row ``record_id``, for a statement
        that writes the row without loading it as an object."""
        binding = Binding(self.table, record_id, self.field, FIELD_VERSION)
        return seal_plaintext(keys.keyring, Secret(value.encode("utf-8")), binding)

    def binding(self, instance: object) -> Binding:
        """Return where the value of this field on ``instance`` is sealed."""
        record_id = getattr(instance, "id", None)
        if record_id is None:
            raise RecordNotFlushed(
                f"{self.table}.{self.field} is sealed to the row's id; flush the new row first"
            )
        return Binding(self.table, record_id, self.field, FIELD_VERSION)


_SEALED_FIELDS: list[SealedText[Any]] = []


def sealed_field(model: type[Any], name: str) -> SealedText[Any]:
    """Return the SealedText named ``name`` of ``model``; raise KeyError when there is none."""
    field = vars(model).get(name)
    if not isinstance(field, SealedText):
        raise KeyError(f"{model.__name__}.{name} is not a sealed field")
    return field


def sealed_fields() -> tuple[SealedText[Any], ...]:
    """Return every SealedText of the models imported so far."""
    return tuple(_SEALED_FIELDS)


def _keys_of(instance: object) -> FieldKeys:
    session = object_session(instance)
    if session is not None:
        keys = field_keys_of(session)
        instance.__dict__[_OBJECT_KEYS] = keys
        return keys
    remembered = instance.__dict__.get(_OBJECT_KEYS)
    if not isinstance(remembered, FieldKeys):
        raise FieldKeysMissing(
            "this object was never in a database session with field keys, so its sealed "
            "fields cannot be read"
        )
    return remembered


@event.listens_for(Base, "load", propagate=True)
def _keep_keys_on_load(instance: object, context: QueryContext | None) -> None:
    """Let an object read its sealed fields after the session that loaded it is closed."""
    # Session.merge loads without a query context; the object's session is the one to ask.
    session = context.session if context is not None else object_session(instance)
    if session is None:
        return
    keys = session.info.get(SESSION_INFO_KEY)
    if isinstance(keys, FieldKeys):
        instance.__dict__[_OBJECT_KEYS] = keys
