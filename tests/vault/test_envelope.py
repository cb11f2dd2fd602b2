"""Envelopes: a value opens only at its own binding, under a KEK the keyring holds, and any cut or
changed byte is rejected with CiphertextInvalid and the reason for the log."""

from dataclasses import replace
from pathlib import Path

import pytest

from llero.crypto import Secret
from llero.vault.envelope import (
    FORMAT_V1,
    MIN_ENVELOPE_BYTES,
    Binding,
    Envelope,
    envelope_kek_id,
    open_plaintext,
    rewrap,
    seal_plaintext,
)
from llero.vault.errors import CiphertextInvalid, InvalidReason, VaultSealed
from llero.vault.keyring import Kek, Keyring, add_kek, kek_id_of, load_keyring
from tests.vault.conftest import PLANTED

BINDING = Binding(table="secret_versions", record_id=7, field="value", version=1)
VALUE = Secret(PLANTED.encode())


def _kek(seed: int) -> Kek:
    material = bytes([seed]) * 32
    return Kek(kek_id_of(material), seed, Secret(material))


def test_envelope_round_trip(keyring: Keyring) -> None:
    envelope = seal_plaintext(keyring, VALUE, BINDING)

    assert open_plaintext(keyring, envelope, BINDING) == VALUE
    assert PLANTED.encode() not in envelope


def test_envelope_layout_is_format_1(keyring: Keyring) -> None:
    envelope = seal_plaintext(keyring, Secret(b"abc"), BINDING)

    assert envelope[0] == FORMAT_V1
    assert envelope[1:9].hex() == keyring.current.id
    assert len(envelope) == MIN_ENVELOPE_BYTES + 3
    assert envelope_kek_id(envelope) == keyring.current.id
    assert Envelope.from_bytes(envelope).to_bytes() == envelope


def test_empty_value_round_trips(keyring: Keyring) -> None:
    envelope = seal_plaintext(keyring, Secret(b""), BINDING)

    assert len(envelope) == MIN_ENVELOPE_BYTES
    assert open_plaintext(keyring, envelope, BINDING).reveal() == b""


def test_same_value_sealed_twice_differs(keyring: Keyring) -> None:
    first = seal_plaintext(keyring, VALUE, BINDING)
    second = seal_plaintext(keyring, VALUE, BINDING)

    # A fresh data key and nonce each time: equal values cannot be spotted in the table.
    assert first[9:49] != second[9:49]
    assert first[49:61] != second[49:61]
    assert first[61:] != second[61:]


@pytest.mark.parametrize(
    "other",
    [
        replace(BINDING, table="provider_keys"),
        replace(BINDING, record_id=8),
        replace(BINDING, record_id="7 "),
        replace(BINDING, field="description"),
        replace(BINDING, version=2),
        replace(BINDING, version=0),
    ],
)
def test_envelope_at_other_binding_fails(keyring: Keyring, other: Binding) -> None:
    envelope = seal_plaintext(keyring, VALUE, BINDING)

    with pytest.raises(CiphertextInvalid) as caught:
        open_plaintext(keyring, envelope, other)

    assert caught.value.reason is InvalidReason.AUTHENTICATION_FAILED
    assert caught.value.code == "ciphertext_invalid"


def test_binding_encoding_is_unambiguous() -> None:
    # Without length prefixes these two would both encode as "ab" + "c".
    first = Binding(table="ab", record_id="c", field="f", version=1)
    second = Binding(table="a", record_id="bc", field="f", version=1)

    assert first.associated_data() != second.associated_data()


@pytest.mark.parametrize(
    "arguments",
    [
        {"table": "", "record_id": 1, "field": "f", "version": 1},
        {"table": "t", "record_id": "", "field": "f", "version": 1},
        {"table": "t", "record_id": 1, "field": "", "version": 1},
        {"table": "t" * 65536, "record_id": 1, "field": "f", "version": 1},
        {"table": "t", "record_id": 1, "field": "f", "version": -1},
        {"table": "t", "record_id": 1, "field": "f", "version": 2**63},
    ],
)
def test_invalid_binding_rejected(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="binding"):
        Binding(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("keep", [0, 1, 9, 48, 60, MIN_ENVELOPE_BYTES - 1])
def test_truncated_envelope_fails(keyring: Keyring, keep: int) -> None:
    envelope = seal_plaintext(keyring, VALUE, BINDING)

    with pytest.raises(CiphertextInvalid) as caught:
        open_plaintext(keyring, envelope[:keep], BINDING)

    assert caught.value.reason is InvalidReason.TRUNCATED


@pytest.mark.parametrize("cut", [1, 4, 15, 16, 17])
def test_envelope_missing_tail_fails_authentication(keyring: Keyring, cut: int) -> None:
    envelope = seal_plaintext(keyring, VALUE, BINDING)

    with pytest.raises(CiphertextInvalid) as caught:
        open_plaintext(keyring, envelope[:-cut], BINDING)

    assert caught.value.reason is InvalidReason.AUTHENTICATION_FAILED


def _expected_reason(position: int) -> InvalidReason:
    if position == 0:
        return InvalidReason.UNKNOWN_FORMAT
    if position < 9:
        return InvalidReason.UNKNOWN_KEK
    if position < 49:
        return InvalidReason.UNWRAP_FAILED
    return InvalidReason.AUTHENTICATION_FAILED


@pytest.mark.parametrize("bit", [0x01, 0x80])
def test_every_flipped_bit_fails(keyring: Keyring, bit: int) -> None:
    envelope = seal_plaintext(keyring, Secret(b"sk-short"), BINDING)

    for position in range(len(envelope)):
        flipped = bytearray(envelope)
        flipped[position] ^= bit
        with pytest.raises(CiphertextInvalid) as caught:
            open_plaintext(keyring, bytes(flipped), BINDING)
        assert caught.value.reason is _expected_reason(position), position


def test_appended_byte_fails(keyring: Keyring) -> None:
    envelope = seal_plaintext(keyring, VALUE, BINDING)

    with pytest.raises(CiphertextInvalid) as caught:
        open_plaintext(keyring, envelope + b"\x00", BINDING)

    assert caught.value.reason is InvalidReason.AUTHENTICATION_FAILED


def test_envelope_under_unknown_kek_fails(keyring: Keyring) -> None:
    envelope = seal_plaintext(Keyring([_kek(1)], _kek(1).id), VALUE, BINDING)

    with pytest.raises(CiphertextInvalid) as caught:
        open_plaintext(keyring, envelope, BINDING)

    assert caught.value.reason is InvalidReason.UNKNOWN_KEK
    assert caught.value.kek_id == _kek(1).id


def test_error_message_same_for_every_reason(keyring: Keyring) -> None:
    envelope = seal_plaintext(keyring, VALUE, BINDING)
    messages = set()
    for broken in (b"", b"\x02" + envelope[1:], envelope[:-1], envelope + b"x"):
        with pytest.raises(CiphertextInvalid) as caught:
            open_plaintext(keyring, broken, BINDING)
        messages.add(caught.value.message)

    assert messages == {"the stored secret cannot be decrypted"}


def test_sealed_keyring_cannot_seal_or_open(keyring: Keyring) -> None:
    envelope = seal_plaintext(keyring, VALUE, BINDING)
    sealed = Keyring()

    assert sealed.sealed
    with pytest.raises(VaultSealed):
        seal_plaintext(sealed, VALUE, BINDING)
    with pytest.raises(VaultSealed) as caught:
        open_plaintext(sealed, envelope, BINDING)
    assert caught.value.code == "vault_sealed"


def test_rewrap_changes_only_kek_fields(keyring: Keyring) -> None:
    old, new = _kek(1), _kek(2)
    both = Keyring([old, new], new.id)
    envelope = seal_plaintext(Keyring([old], old.id), VALUE, BINDING)

    rewrapped = rewrap(both, envelope, new)

    assert rewrapped[0] == envelope[0]
    assert rewrapped[1:9].hex() == new.id
    assert rewrapped[9:49] != envelope[9:49]
    assert rewrapped[49:] == envelope[49:]
    assert open_plaintext(Keyring([new], new.id), rewrapped, BINDING) == VALUE


def test_rewrap_under_same_kek_returns_input(keyring: Keyring) -> None:
    envelope = seal_plaintext(keyring, VALUE, BINDING)

    assert rewrap(keyring, envelope, keyring.current) is envelope


def test_rewrap_needs_old_kek() -> None:
    envelope = seal_plaintext(Keyring([_kek(1)], _kek(1).id), VALUE, BINDING)

    with pytest.raises(CiphertextInvalid) as caught:
        rewrap(Keyring([_kek(2)], _kek(2).id), envelope, _kek(2))

    assert caught.value.reason is InvalidReason.UNKNOWN_KEK


def test_plaintext_hidden_in_repr(keyring: Keyring) -> None:
    envelope = seal_plaintext(keyring, VALUE, BINDING)
    opened = open_plaintext(keyring, envelope, BINDING)

    assert PLANTED not in repr(opened)
    assert PLANTED not in str(opened)
    assert PLANTED not in repr(Envelope.from_bytes(envelope))
    assert keyring.current.material.reveal().hex() not in repr(keyring.current)


def test_kek_added_elsewhere_found_on_read(keys_dir: Path, keyring: Keyring) -> None:
    writer_view = load_keyring(keys_dir)
    added = add_kek(keys_dir)
    writer_view.refresh()

    envelope = seal_plaintext(writer_view, VALUE, BINDING)

    assert envelope_kek_id(envelope) == added.id
    assert open_plaintext(keyring, envelope, BINDING) == VALUE
