"""AES-256-GCM and AES key wrap in llero.crypto, checked against published test vectors."""

import pytest

from llero.crypto import (
    GCM_NONCE_BYTES,
    AesGcmKey,
    DecryptionFailed,
    Secret,
    aes_gcm_decrypt,
    aes_gcm_encrypt,
    new_data_key,
    unwrap_key,
    wrap_key,
    zero,
)

KEY = bytes(range(32))
AD = b"table|1|field|1"


def test_aes_gcm_matches_published_vector() -> None:
    # McGrew and Viega, "The Galois/Counter Mode of Operation", test case 14: AES-256, all-zero
    # key, nonce and 16-byte plaintext, no associated data.
    ciphertext = bytes.fromhex("cea7403d4d606b6e074ec5d3baf39d18")
    tag = bytes.fromhex("d0d1c8a799996bf0265b98b5d48ab919")

    plaintext = aes_gcm_decrypt(bytes(32), bytes(12), ciphertext + tag, b"")

    assert plaintext == bytes(16)


def test_wrap_key_matches_rfc_3394_vector() -> None:
    kek = bytes.fromhex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
    data_key = bytes.fromhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
    expected = bytes.fromhex(
        "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"
    )

    assert wrap_key(kek, data_key) == expected
    assert unwrap_key(Secret(kek), expected) == bytearray(data_key)


def test_aes_gcm_round_trip_with_associated_data() -> None:
    nonce, ciphertext = aes_gcm_encrypt(KEY, b"value", AD)

    assert len(nonce) == GCM_NONCE_BYTES
    assert len(ciphertext) == len(b"value") + 16
    assert b"value" not in ciphertext
    assert aes_gcm_decrypt(Secret(KEY), nonce, ciphertext, AD) == b"value"


def test_aes_gcm_nonce_fresh_for_every_call() -> None:
    key = AesGcmKey(KEY)

    nonces = {key.encrypt(b"same", AD)[0] for _ in range(10_000)}

    assert len(nonces) == 10_000


@pytest.mark.parametrize(
    ("key", "associated_data"),
    [
        (bytes(range(1, 33)), AD),
        (KEY, b"table|2|field|1"),
        (KEY, b""),
    ],
)
def test_aes_gcm_wrong_key_or_associated_data_fails(key: bytes, associated_data: bytes) -> None:
    nonce, ciphertext = aes_gcm_encrypt(KEY, b"value", AD)

    with pytest.raises(DecryptionFailed):
        aes_gcm_decrypt(key, nonce, ciphertext, associated_data)


@pytest.mark.parametrize("nonce_length", [0, 8, 11, 13, 16])
def test_aes_gcm_wrong_nonce_length_fails(nonce_length: int) -> None:
    _, ciphertext = aes_gcm_encrypt(KEY, b"value", AD)

    with pytest.raises(DecryptionFailed):
        aes_gcm_decrypt(KEY, bytes(nonce_length), ciphertext, AD)


@pytest.mark.parametrize("length", [0, 16, 24, 31, 33, 64])
def test_aes_key_of_wrong_length_rejected(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        AesGcmKey(bytes(length))
    with pytest.raises(ValueError, match="32 bytes"):
        wrap_key(bytes(length), KEY)


def test_unwrap_with_wrong_kek_fails() -> None:
    wrapped = wrap_key(KEY, new_data_key())

    with pytest.raises(DecryptionFailed):
        unwrap_key(bytes(range(1, 33)), wrapped)


@pytest.mark.parametrize("position", range(40))
def test_unwrap_of_changed_byte_fails(position: int) -> None:
    wrapped = bytearray(wrap_key(KEY, new_data_key()))
    wrapped[position] ^= 0x01

    with pytest.raises(DecryptionFailed):
        unwrap_key(KEY, bytes(wrapped))


@pytest.mark.parametrize("length", [0, 8, 32, 39, 41, 48])
def test_unwrap_of_wrong_length_fails(length: int) -> None:
    with pytest.raises(DecryptionFailed):
        unwrap_key(KEY, bytes(length))


def test_new_data_key_is_random_256_bits() -> None:
    keys = {bytes(new_data_key()) for _ in range(1000)}

    assert len(keys) == 1000
    assert all(len(key) == 32 for key in keys)


def test_zero_overwrites_buffer_in_place() -> None:
    data_key = new_data_key()
    view = memoryview(data_key)

    zero(data_key)

    assert data_key == bytearray(32)
    assert bytes(view) == bytes(32)


def test_aes_gcm_key_repr_hides_key() -> None:
    assert KEY.hex() not in repr(AesGcmKey(KEY))
    assert repr(AesGcmKey(KEY)) == "AesGcmKey(<hidden>)"
