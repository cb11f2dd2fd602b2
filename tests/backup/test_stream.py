"""The chunked AES-256-GCM backup stream: a round trip, and every kind of damage detected."""

import io
import os

import pytest

from llero.backup.stream import (
    GCM_TAG_BYTES,
    HEADER_BYTES,
    MIN_CHUNK_SIZE,
    BackupInvalid,
    EncryptingWriter,
    decrypt_chunks,
)
from llero.crypto import Secret

KEY = Secret(bytes(range(32)))
CHUNK = MIN_CHUNK_SIZE
SEALED = CHUNK + GCM_TAG_BYTES


def _encrypt(plaintext: bytes, key: Secret[bytes] = KEY) -> bytes:
    output = io.BytesIO()
    writer = EncryptingWriter(output, key, chunk_size=CHUNK)
    writer.write(plaintext)
    writer.close()
    return output.getvalue()


def _decrypt(data: bytes, key: Secret[bytes] = KEY) -> bytes:
    return b"".join(decrypt_chunks(io.BytesIO(data), key))


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7])
def test_stream_round_trip(size: int) -> None:
    plaintext = os.urandom(size)

    assert _decrypt(_encrypt(plaintext)) == plaintext


def test_stream_hides_plaintext() -> None:
    planted = b"sk-live-planted-secret-value-0123456789"

    encrypted = _encrypt(planted * 500)

    assert planted not in encrypted
    assert planted[:16] not in encrypted


def test_stream_two_backups_differ() -> None:
    assert _encrypt(b"same") != _encrypt(b"same")


@pytest.mark.parametrize("offset", [0, 9, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + SEALED])
def test_stream_flipped_byte_rejected(offset: int) -> None:
    damaged = bytearray(_encrypt(os.urandom(3 * CHUNK)))
    damaged[offset] ^= 0x01

    with pytest.raises(BackupInvalid):
        _decrypt(bytes(damaged))


def test_stream_flipped_byte_names_chunk() -> None:
    damaged = bytearray(_encrypt(os.urandom(3 * CHUNK)))
    damaged[HEADER_BYTES + SEALED + 5] ^= 0x80

    with pytest.raises(BackupInvalid) as raised:
        _decrypt(bytes(damaged))

    assert raised.value.message == (
        "chunk 1 of the backup failed authentication: the file was changed, reordered or cut short"
    )


def test_stream_truncated_at_chunk_boundary_rejected() -> None:
    encrypted = _encrypt(os.urandom(3 * CHUNK + 10))

    with pytest.raises(BackupInvalid) as raised:
        _decrypt(encrypted[: HEADER_BYTES + 2 * SEALED])

    assert raised.value.message == (
        "the backup is truncated: it ends after chunk 1 without its final chunk"
    )


def test_stream_truncated_inside_chunk_rejected() -> None:
    encrypted = _encrypt(os.urandom(3 * CHUNK))

    with pytest.raises(BackupInvalid):
        _decrypt(encrypted[:-5])


def test_stream_header_only_rejected() -> None:
    with pytest.raises(BackupInvalid) as raised:
        _decrypt(_encrypt(b"data")[:HEADER_BYTES])

    assert raised.value.message == "the backup is truncated: it ends after its header"


def test_stream_reordered_chunks_rejected() -> None:
    encrypted = _encrypt(os.urandom(3 * CHUNK + 10))
    header, body = encrypted[:HEADER_BYTES], encrypted[HEADER_BYTES:]
    first, second = body[:SEALED], body[SEALED : 2 * SEALED]

    with pytest.raises(BackupInvalid):
        _decrypt(header + second + first + body[2 * SEALED :])


def test_stream_appended_chunk_rejected() -> None:
    encrypted = _encrypt(os.urandom(2 * CHUNK + 10))
    # A whole extra chunk copied from the body makes the real final chunk no longer last.
    extra = encrypted[HEADER_BYTES : HEADER_BYTES + SEALED]

    with pytest.raises(BackupInvalid):
        _decrypt(encrypted + extra)


def test_stream_wrong_key_named() -> None:
    encrypted = _encrypt(b"data")

    with pytest.raises(BackupInvalid) as raised:
        _decrypt(encrypted, Secret(bytes(32)))

    assert raised.value.message.startswith("the backup key does not match this backup")


@pytest.mark.parametrize("data", [b"", b"not a backup", b"LLEROBAK" + bytes(10)])
def test_stream_not_a_backup_rejected(data: bytes) -> None:
    with pytest.raises(BackupInvalid) as raised:
        _decrypt(data)

    assert "not a Llero backup" in raised.value.message
