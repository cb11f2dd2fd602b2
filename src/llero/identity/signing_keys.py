"""The Ed25519 key ring for access tokens: one current key, plus retired keys that still verify.

Files under the keys directory:

    signing-ed25519.pem   the key `llero init` creates; the whole ring until the first rotation
    signing/ring.json     the keys the ring trusts, the current one, and when each was retired
    signing/<kid>.pem     keys made by ``rotate_signing_key``

A key id (kid) is the RFC 7638 JWK thumbprint of the public key. Every key is read when the ring
is loaded, so verifying a token looks its kid up in memory and never touches the disk: a kid taken
from a token is never turned into a path.

Once ring.json exists it alone decides what is trusted, and a .pem file it does not list is never
loaded. Such a file is left over from an interrupted rotation, or is a legacy key that `llero init`
re-created after the old one was pruned. Neither kind has signed a token.

A process loads the ring once. After ``rotate_signing_key`` every server process must reload it
(restart), or a process that still holds the old ring rejects tokens signed with the new key.
"""

import base64
import fcntl
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from llero.config.keyfiles import SIGNING_KEY, read_private_file, read_signing_key
from llero.crypto import random_token
from llero.errors import InvalidInput, KeyFileError

RING_DIR = "signing"
MANIFEST = "ring.json"
LOCK_FILE = ".lock"
MANIFEST_VERSION = 1

ALGORITHM = "EdDSA"

# An unpadded base64url SHA-256 digest: the only shape a kid can have.
KID_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")

# The longest a token signed by a key can stay valid after that key stops signing. Token settings
# are checked against these limits, and pruning keeps every key at least this long after it retires.
MAX_ACCESS_TOKEN_LIFETIME = timedelta(hours=1)
MAX_CLOCK_LEEWAY = timedelta(minutes=5)
MIN_KEY_RETENTION = MAX_ACCESS_TOKEN_LIFETIME + MAX_CLOCK_LEEWAY


def key_id(public_key: Ed25519PublicKey) -> str:
    """Return the RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 public key."""
    members = {"crv": "Ed25519", "kty": "OKP", "x": _base64url(public_key.public_bytes_raw())}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return _base64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """Return the public JWK of a verification key; it has no "d" member by construction."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _base64url(public_key.public_bytes_raw()),
        "kid": key_id(public_key),
        "alg": ALGORITHM,
        "use": "sig",
    }


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class SigningKeyRing:
    """The loaded Ed25519 keys: the current one signs, and every one of them verifies."""

    algorithm = ALGORITHM

    def __init__(self, current_kid: str, private_keys: Mapping[str, Ed25519PrivateKey]) -> None:
        if current_kid not in private_keys:
            raise ValueError("the current key must be one of the ring's keys")
        self.current_kid = current_kid
        self._current = private_keys[current_kid]
        self._public = {kid: key.public_key() for kid, key in private_keys.items()}

    def __repr__(self) -> str:
        return f"SigningKeyRing(current_kid={self.current_kid!r}, kids={self.kids!r})"

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(sorted(self._public))

    def signing_key(self) -> Ed25519PrivateKey:
        return self._current

    def verification_key(self, kid: str) -> Ed25519PublicKey | None:
        """Return the public key whose id is exactly ``kid``, or None."""
        return self._public.get(kid)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [public_jwk(self._public[kid]) for kid in self.kids]}


@dataclass(frozen=True)
class KeyRecord:
    """One key listed in ring.json; ``retired_at`` is None only for the current key."""

    kid: str
    created_at: datetime
    retired_at: datetime | None = None


@dataclass(frozen=True)
class RingManifest:
    """The content of ring.json, or of the implied ring made of the legacy key alone."""

    current: str
    keys: tuple[KeyRecord, ...]


def load_signing_key_ring(keys_dir: Path) -> SigningKeyRing:
    """Read every trusted signing key; raise KeyFileError naming the file when one is unusable."""
    manifest = _read_manifest(keys_dir)
    private_keys = {record.kid: _read_ring_key(keys_dir, record.kid) for record in manifest.keys}
    return SigningKeyRing(manifest.current, private_keys)


def rotate_signing_key(keys_dir: Path, *, now: datetime | None = None) -> str:
    """Create a new Ed25519 key, make it the current key, and return its kid.

    The previous keys stay in the ring, so the tokens they signed keep verifying until they expire;
    ``prune_signing_keys`` removes them later. The key file is written before ring.json, so a crash
    in between leaves an unlisted file that is never trusted.
    """
    moment = _utc(now)
    with _locked_ring(keys_dir):
        manifest = _read_manifest(keys_dir)
        for record in manifest.keys:
            _read_ring_key(keys_dir, record.kid)

        new_key = Ed25519PrivateKey.generate()
        kid = key_id(new_key.public_key())
        _write_durably(_ring_dir(keys_dir) / f"{kid}.pem", _private_pem(new_key))

        records = [_retire(record, moment) for record in manifest.keys]
        records.append(KeyRecord(kid=kid, created_at=moment))
        _write_manifest(keys_dir, RingManifest(current=kid, keys=tuple(records)))
    return kid


def prune_signing_keys(
    keys_dir: Path, older_than: timedelta, *, now: datetime | None = None
) -> list[str]:
    """Delete the keys retired more than ``older_than`` ago and return their kids.

    Raises InvalidInput when ``older_than`` is shorter than MIN_KEY_RETENTION, because tokens signed
    just before a key retired could still be valid. ring.json is rewritten before any file is
    deleted, so a crash in between leaves unlisted files, not a ring that names a missing key.
    """
    if older_than < MIN_KEY_RETENTION:
        raise InvalidInput(
            f"signing keys must be kept at least {_minutes(MIN_KEY_RETENTION)} minutes after "
            f"they retire, the longest an access token can stay valid; "
            f"got {_minutes(older_than)} minutes"
        )
    moment = _utc(now)
    with _locked_ring(keys_dir):
        if not (_ring_dir(keys_dir) / MANIFEST).exists():
            return []
        manifest = _read_manifest(keys_dir)
        expired = [
            record.kid
            for record in manifest.keys
            if record.retired_at is not None and moment - record.retired_at >= older_than
        ]
        if not expired:
            return []
        kept = tuple(record for record in manifest.keys if record.kid not in expired)
        _write_manifest(keys_dir, replace(manifest, keys=kept))
        for kid in expired:
            _delete_key_file(keys_dir, kid)
    return expired


def _retire(record: KeyRecord, moment: datetime) -> KeyRecord:
    return record if record.retired_at is not None else replace(record, retired_at=moment)


def _minutes(duration: timedelta) -> int:
    return int(duration.total_seconds() // 60)


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; attach a time zone")
    return moment.astimezone(UTC)


# Files on disk.


def _ring_dir(keys_dir: Path) -> Path:
    return keys_dir / RING_DIR


def _legacy_kid(keys_dir: Path) -> str | None:
    path = keys_dir / SIGNING_KEY
    if not path.exists():
        return None
    return key_id(read_signing_key(path).public_key())


def _read_ring_key(keys_dir: Path, kid: str) -> Ed25519PrivateKey:
    """Read the private key of a kid listed in the ring: signing/<kid>.pem or the legacy file."""
    path = _ring_dir(keys_dir) / f"{kid}.pem"
    if not path.exists() and _legacy_kid(keys_dir) == kid:
        path = keys_dir / SIGNING_KEY
    key = read_signing_key(path)
    if key_id(key.public_key()) != kid:
        raise KeyFileError(f"key file {path} does not hold the key {kid} that {MANIFEST} lists")
    return key


def _delete_key_file(keys_dir: Path, kid: str) -> None:
    path = _ring_dir(keys_dir) / f"{kid}.pem"
    if path.exists():
        path.unlink()
    elif _legacy_kid(keys_dir) == kid:
        # `llero init` writes a new legacy file after this one is gone; ring.json does not list
        # it, so the ring never trusts that key.
        (keys_dir / SIGNING_KEY).unlink()


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _check_private_dir(path: Path) -> None:
    """Raise KeyFileError unless ``path`` is a directory that only its owner can enter or change."""
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise KeyFileError(f"{path} must be a directory, not a link or file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key directory {path} is open to group or others (mode {mode:04o}); "
            f"run `chmod 700 {path}`"
        )
    if info.st_uid != os.geteuid():
        raise KeyFileError(f"key directory {path} belongs to another user (uid {info.st_uid})")


@contextmanager
def _locked_ring(keys_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the ring, so two rotations cannot both write ring.json."""
    if not keys_dir.is_dir():
        raise KeyFileError(f"key directory {keys_dir} is missing; run `llero init`")
    ring_dir = _ring_dir(keys_dir)
    ring_dir.mkdir(mode=0o700, exist_ok=True)
    _check_private_dir(ring_dir)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
    descriptor = os.open(ring_dir / LOCK_FILE, flags, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _write_durably(path: Path, content: bytes) -> None:
    """Create ``path`` mode 0600 (never overwriting) and flush it and its directory to disk."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    descriptor = os.open(path, flags, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    _sync_directory(path.parent)


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ring.json.


def _read_manifest(keys_dir: Path) -> RingManifest:
    """Read ring.json, or describe the legacy key alone when no rotation has happened yet."""
    ring_dir = _ring_dir(keys_dir)
    path = ring_dir / MANIFEST
    if not path.exists():
        return _legacy_manifest(keys_dir)
    _check_private_dir(ring_dir)
    try:
        document = json.loads(read_private_file(path))
        return _parse_manifest(document)
    except KeyError as error:
        raise KeyFileError(f"{path} is invalid: member {error} is missing") from None
    except (ValueError, TypeError) as error:
        raise KeyFileError(f"{path} is invalid: {error}") from None


def _legacy_manifest(keys_dir: Path) -> RingManifest:
    path = keys_dir / SIGNING_KEY
    kid = key_id(read_signing_key(path).public_key())
    created_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return RingManifest(current=kid, keys=(KeyRecord(kid=kid, created_at=created_at),))


def _parse_manifest(document: Any) -> RingManifest:
    """Validate ring.json; raise ValueError, TypeError or KeyError naming the first problem."""
    if not isinstance(document, dict) or document.get("version") != MANIFEST_VERSION:
        raise ValueError(f"expected an object with version {MANIFEST_VERSION}")
    records = tuple(_parse_record(item) for item in document["keys"])
    kids = [record.kid for record in records]
    if len(set(kids)) != len(kids):
        raise ValueError("a kid is listed twice")
    current = [record.kid for record in records if record.retired_at is None]
    if current != [document["current"]]:
        raise ValueError("exactly one key, the current one, must have no retired_at")
    return RingManifest(current=document["current"], keys=records)


def _parse_record(item: Any) -> KeyRecord:
    kid = item["kid"]
    # The kid becomes part of a file name, so nothing but a thumbprint's shape is accepted.
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        raise ValueError("a kid is not a JWK thumbprint")
    retired_at = item["retired_at"]
    return KeyRecord(
        kid=kid,
        created_at=_parse_time(item["created_at"]),
        retired_at=None if retired_at is None else _parse_time(retired_at),
    )


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError("a time must be an ISO 8601 string")
    return _utc(datetime.fromisoformat(value))


def _write_manifest(keys_dir: Path, manifest: RingManifest) -> None:
    """Replace ring.json atomically: readers see the old file or the new one, never a mix."""
    document = {
        "version": MANIFEST_VERSION,
        "current": manifest.current,
        "keys": [
            {
                "kid": record.kid,
                "created_at": record.created_at.isoformat(),
                "retired_at": None if record.retired_at is None else record.retired_at.isoformat(),
            }
            for record in manifest.keys
        ],
    }
    ring_dir = _ring_dir(keys_dir)
    temporary = ring_dir / f".{MANIFEST}.{random_token(16)}"
    _write_durably(temporary, json.dumps(document, indent=2).encode("utf-8") + b"\n")
    temporary.replace(ring_dir / MANIFEST)
    _sync_directory(ring_dir)
