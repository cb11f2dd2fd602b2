"""A chunked AES-256-GCM stream, so a backup of any size is encrypted and checked piece by piece.

Layout: a header, then chunks. Each chunk is at most ``chunk_size`` bytes of plaintext sealed
with AES-256-GCM. The key is derived for this file alone, as HKDF-SHA256 of the backup key with
the header's random salt, so two backups never share a key and counter nonces never repeat. The
96-bit nonce is the header's 7-byte random prefix, the chunk's 32-bit index, and one byte that is
1 on the final chunk and 0 before it. Every chunk authenticates the header as associated data,
so:

- a changed byte anywhere fails that chunk's tag,
- chunks swapped or dropped fail, because their index is part of the nonce,
- a file cut at a chunk boundary fails, because its last chunk was sealed as "not final",
- bytes appended after the final chunk are rejected.

The header also carries a key check value (HKDF output under another label), so a wrong key is
reported as such instead of as tampering. AES-GCM alone does not commit to its key.
"""

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from llero.crypto import AES_KEY_BYTES, GCM_TAG_BYTES, Secret, constant_time_equals
from llero.errors import LleroError

MAGIC = b"LLEROBAK"
VERSION = 1
DEFAULT_CHUNK_SIZE = 1024 * 1024
MIN_CHUNK_SIZE = 4096
MAX_CHUNK_SIZE = 16 * 1024 * 1024
SALT_BYTES = 32
NONCE_PREFIX_BYTES = 7
KEY_CHECK_BYTES = 32
# Index limit of the 32-bit counter: at 1 MiB chunks, 4 PiB per backup.
MAX_CHUNKS = 2**32

_HEADER = struct.Struct(f">{len(MAGIC)}sBI{SALT_BYTES}s{NONCE_PREFIX_BYTES}s{KEY_CHECK_BYTES}s")
HEADER_BYTES = _HEADER.size
_CHUNK_KEY_LABEL = b"llero backup v1 chunk key"
_KEY_CHECK_LABEL = b"llero backup v1 key check"


class Writable(Protocol):
    def write(self, data: bytes) -> int: ...


class Readable(Protocol):
    def read(self, count: int) -> bytes: ...


class BackupInvalid(LleroError):
    """A backup file is not one, was changed, was cut short, or needs another key."""

    code = "backup_invalid"


def _derive(key: Secret[bytes], salt: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=AES_KEY_BYTES, salt=salt, info=label).derive(
        key.reveal()
    )


@dataclass(frozen=True)
class _Header:
    raw: bytes
    chunk_size: int
    nonce_prefix: bytes
    aead: AESGCM

    def nonce(self, index: int, final: bool) -> bytes:
        return self.nonce_prefix + struct.pack(">IB", index, 1 if final else 0)


class EncryptingWriter:
    """Encrypt what is written to it into ``output``; ``close`` seals the final chunk."""

    def __init__(
        self, output: Writable, key: Secret[bytes], chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> None:
        _check_chunk_size(chunk_size)
        salt = os.urandom(SALT_BYTES)
        prefix = os.urandom(NONCE_PREFIX_BYTES)
        check = _derive(key, salt, _KEY_CHECK_LABEL)
        raw = _HEADER.pack(MAGIC, VERSION, chunk_size, salt, prefix, check)
        aead = AESGCM(_derive(key, salt, _CHUNK_KEY_LABEL))
        self._header = _Header(raw, chunk_size, prefix, aead)
        self._output = output
        self._buffer = bytearray()
        self._index = 0
        self._closed = False
        output.write(raw)

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("the backup stream is closed")
        self._buffer += data
        size = self._header.chunk_size
        # One chunk always stays buffered, so the final one can be sealed as final on close.
        while len(self._buffer) > size:
            self._seal(bytes(self._buffer[:size]), final=False)
            del self._buffer[:size]
        return len(data)

    def close(self) -> None:
        if not self._closed:
            self._seal(bytes(self._buffer), final=True)
            self._buffer.clear()
            self._closed = True

    def _seal(self, plaintext: bytes, *, final: bool) -> None:
        if self._index >= MAX_CHUNKS:
            raise ValueError("the backup is too large for one stream")
        header = self._header
        sealed = header.aead.encrypt(header.nonce(self._index, final), plaintext, header.raw)
        self._output.write(sealed)
        self._index += 1


def decrypt_chunks(source: Readable, key: Secret[bytes]) -> Iterator[bytes]:
    """Yield the plaintext of each chunk once it is authenticated; raise BackupInvalid.

    A chunk is yielded only after the next one has been read, because only then is it known
    whether it must be the final chunk. Nothing unauthenticated is ever yielded.
    """
    header = _read_header(source, key)
    sealed_size = header.chunk_size + GCM_TAG_BYTES
    index = 0
    current = source.read(sealed_size)
    if not current:
        raise BackupInvalid("the backup is truncated: it ends after its header")
    while True:
        following = source.read(sealed_size)
        final = not following
        yield _open_chunk(header, index, current, final=final)
        if final:
            return
        current = following
        index += 1


def _open_chunk(header: _Header, index: int, sealed: bytes, *, final: bool) -> bytes:
    try:
        return header.aead.decrypt(header.nonce(index, final), sealed, header.raw)
    except InvalidTag:
        pass
    if final:
        # A chunk that opens as "not final" at the end of the file means the rest was cut off.
        try:
            header.aead.decrypt(header.nonce(index, False), sealed, header.raw)
        except InvalidTag:
            pass
        else:
            raise BackupInvalid(
                f"the backup is truncated: it ends after chunk {index} without its final chunk"
            )
    raise BackupInvalid(
        f"chunk {index} of the backup failed authentication: the file was changed, reordered "
        "or cut short"
    )


def _read_header(source: Readable, key: Secret[bytes]) -> _Header:
    raw = source.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES or not raw.startswith(MAGIC):
        raise BackupInvalid("the file is not a Llero backup (its header is missing or malformed)")
    _, version, chunk_size, salt, prefix, check = _HEADER.unpack(raw)
    if version != VERSION:
        raise BackupInvalid(f"the backup has format version {version}; this Llero reads {VERSION}")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise BackupInvalid(f"the backup header names an invalid chunk size ({chunk_size})")
    if not constant_time_equals(check, _derive(key, salt, _KEY_CHECK_LABEL)):
        raise BackupInvalid(
            "the backup key does not match this backup; give the key it was made with "
            "(--key-file or LLERO_BACKUP_KEY)"
        )
    return _Header(raw, chunk_size, prefix, AESGCM(_derive(key, salt, _CHUNK_KEY_LABEL)))


def _check_chunk_size(chunk_size: int) -> None:
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}")
