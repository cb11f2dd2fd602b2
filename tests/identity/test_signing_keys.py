"""The Ed25519 signing key ring on disk: loading, rotation, pruning and hostile ring files."""

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from llero.config.keyfiles import SIGNING_KEY, create_key_files, read_signing_key
from llero.errors import InvalidInput, KeyFileError
from llero.identity.signing_keys import (
    MIN_KEY_RETENTION,
    key_id,
    load_signing_key_ring,
    prune_signing_keys,
    rotate_signing_key,
)

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    create_key_files(path)
    return path


def legacy_kid(keys_dir: Path) -> str:
    return key_id(read_signing_key(keys_dir / SIGNING_KEY).public_key())


def read_manifest(keys_dir: Path) -> dict[str, object]:
    document: dict[str, object] = json.loads((keys_dir / "signing" / "ring.json").read_text())
    return document


def write_manifest(keys_dir: Path, document: object) -> None:
    path = keys_dir / "signing" / "ring.json"
    path.unlink()
    path.write_text(json.dumps(document))
    path.chmod(0o600)


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_key_id_matches_rfc_8037_thumbprint() -> None:
    # RFC 8037 appendix A.1 key and its A.3 JWK thumbprint.
    private = base64.urlsafe_b64decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
    public_key = Ed25519PrivateKey.from_private_bytes(private).public_key()

    assert key_id(public_key) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_ring_without_rotation_is_legacy_key(keys_dir: Path) -> None:
    ring = load_signing_key_ring(keys_dir)

    assert ring.current_kid == legacy_kid(keys_dir)
    assert ring.kids == (legacy_kid(keys_dir),)
    assert not (keys_dir / "signing" / "ring.json").exists()


def test_ring_missing_legacy_key_rejected(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="missing"):
        load_signing_key_ring(tmp_path)


def test_rotate_makes_new_current_key_and_keeps_previous(keys_dir: Path) -> None:
    old_kid = legacy_kid(keys_dir)

    new_kid = rotate_signing_key(keys_dir, now=T0)
    ring = load_signing_key_ring(keys_dir)

    assert new_kid != old_kid
    assert ring.current_kid == new_kid
    assert set(ring.kids) == {old_kid, new_kid}
    assert ring.verification_key(old_kid) is not None


def test_rotate_records_retirement_time(keys_dir: Path) -> None:
    old_kid = legacy_kid(keys_dir)

    first = rotate_signing_key(keys_dir, now=T0)
    second = rotate_signing_key(keys_dir, now=T0 + timedelta(days=1))
    records = {item["kid"]: item for item in read_manifest(keys_dir)["keys"]}  # type: ignore[attr-defined]

    assert records[old_kid]["retired_at"] == T0.isoformat()
    assert records[first]["retired_at"] == (T0 + timedelta(days=1)).isoformat()
    assert records[second]["retired_at"] is None
    assert read_manifest(keys_dir)["current"] == second


def test_rotate_writes_private_files(keys_dir: Path) -> None:
    kid = rotate_signing_key(keys_dir, now=T0)

    assert mode_of(keys_dir / "signing") == 0o700
    assert mode_of(keys_dir / "signing" / f"{kid}.pem") == 0o600
    assert mode_of(keys_dir / "signing" / "ring.json") == 0o600


def test_rotated_key_file_holds_key_of_its_name(keys_dir: Path) -> None:
    kid = rotate_signing_key(keys_dir, now=T0)

    key = read_signing_key(keys_dir / "signing" / f"{kid}.pem")

    assert key_id(key.public_key()) == kid


@pytest.mark.parametrize(
    "older_than", [timedelta(0), timedelta(minutes=15), MIN_KEY_RETENTION - timedelta(seconds=1)]
)
def test_prune_shorter_than_token_lifetime_rejected(keys_dir: Path, older_than: timedelta) -> None:
    rotate_signing_key(keys_dir, now=T0)

    with pytest.raises(InvalidInput, match="at least 65 minutes"):
        prune_signing_keys(keys_dir, older_than, now=T0 + timedelta(days=30))


def test_prune_keeps_recently_retired_key(keys_dir: Path) -> None:
    old_kid = legacy_kid(keys_dir)
    rotate_signing_key(keys_dir, now=T0)

    pruned = prune_signing_keys(keys_dir, timedelta(hours=2), now=T0 + timedelta(minutes=119))

    assert pruned == []
    assert old_kid in load_signing_key_ring(keys_dir).kids


def test_prune_removes_retired_legacy_key(keys_dir: Path) -> None:
    old_kid = legacy_kid(keys_dir)
    new_kid = rotate_signing_key(keys_dir, now=T0)

    pruned = prune_signing_keys(keys_dir, timedelta(hours=2), now=T0 + timedelta(hours=2))

    assert pruned == [old_kid]
    assert not (keys_dir / SIGNING_KEY).exists()
    assert load_signing_key_ring(keys_dir).kids == (new_kid,)


def test_prune_removes_only_old_rotated_keys(keys_dir: Path) -> None:
    old_kid = legacy_kid(keys_dir)
    first = rotate_signing_key(keys_dir, now=T0)
    second = rotate_signing_key(keys_dir, now=T0 + timedelta(days=1))
    third = rotate_signing_key(keys_dir, now=T0 + timedelta(days=2))

    pruned = prune_signing_keys(keys_dir, timedelta(hours=6), now=T0 + timedelta(days=2, hours=1))

    ring = load_signing_key_ring(keys_dir)
    assert pruned == [old_kid, first]
    assert not (keys_dir / "signing" / f"{first}.pem").exists()
    assert set(ring.kids) == {second, third}
    assert ring.current_kid == third


def test_prune_never_removes_current_key(keys_dir: Path) -> None:
    kid = rotate_signing_key(keys_dir, now=T0)

    prune_signing_keys(keys_dir, MIN_KEY_RETENTION, now=T0 + timedelta(days=3650))

    assert load_signing_key_ring(keys_dir).current_kid == kid


def test_prune_before_any_rotation_does_nothing(keys_dir: Path) -> None:
    assert prune_signing_keys(keys_dir, MIN_KEY_RETENTION, now=T0) == []
    assert (keys_dir / SIGNING_KEY).exists()


def test_ring_ignores_unlisted_key_file(keys_dir: Path) -> None:
    rotate_signing_key(keys_dir, now=T0)
    stray = Ed25519PrivateKey.generate()
    stray_kid = key_id(stray.public_key())
    pem = stray.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = keys_dir / "signing" / f"{stray_kid}.pem"
    path.write_bytes(pem)
    path.chmod(0o600)

    assert stray_kid not in load_signing_key_ring(keys_dir).kids


def test_ring_ignores_recreated_legacy_key_after_prune(keys_dir: Path) -> None:
    new_kid = rotate_signing_key(keys_dir, now=T0)
    prune_signing_keys(keys_dir, MIN_KEY_RETENTION, now=T0 + timedelta(days=1))

    create_key_files(keys_dir)

    assert load_signing_key_ring(keys_dir).kids == (new_kid,)


@pytest.mark.parametrize(
    "hostile_kid",
    [
        "../../etc/passwd",
        "../signing-ed25519",
        "/etc/passwd",
        "abc\x00def",
        "A" * 42,
        "A" * 44,
        "",
    ],
)
def test_ring_file_with_non_thumbprint_kid_rejected(keys_dir: Path, hostile_kid: str) -> None:
    rotate_signing_key(keys_dir, now=T0)
    document = read_manifest(keys_dir)
    document["keys"].append(  # type: ignore[attr-defined]
        {"kid": hostile_kid, "created_at": T0.isoformat(), "retired_at": T0.isoformat()}
    )
    write_manifest(keys_dir, document)

    with pytest.raises(KeyFileError, match="not a JWK thumbprint"):
        load_signing_key_ring(keys_dir)


def test_ring_key_file_holding_other_key_rejected(keys_dir: Path) -> None:
    kid = rotate_signing_key(keys_dir, now=T0)
    path = keys_dir / "signing" / f"{kid}.pem"
    path.unlink()
    path.write_bytes((keys_dir / SIGNING_KEY).read_bytes())
    path.chmod(0o600)

    with pytest.raises(KeyFileError, match="does not hold the key"):
        load_signing_key_ring(keys_dir)


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"version": 2, "current": "x", "keys": []},
        {"version": 1, "keys": []},
        {"version": 1, "current": "x", "keys": "abc"},
        {"version": 1, "current": "x", "keys": [{"kid": "A" * 43}]},
    ],
)
def test_ring_file_malformed_rejected(keys_dir: Path, document: object) -> None:
    rotate_signing_key(keys_dir, now=T0)
    write_manifest(keys_dir, document)

    with pytest.raises(KeyFileError, match=r"ring\.json is invalid"):
        load_signing_key_ring(keys_dir)


def test_ring_file_with_two_current_keys_rejected(keys_dir: Path) -> None:
    rotate_signing_key(keys_dir, now=T0)
    document = read_manifest(keys_dir)
    for item in document["keys"]:  # type: ignore[attr-defined]
        item["retired_at"] = None
    write_manifest(keys_dir, document)

    with pytest.raises(KeyFileError, match="exactly one key"):
        load_signing_key_ring(keys_dir)


def test_ring_file_readable_by_group_rejected(keys_dir: Path) -> None:
    rotate_signing_key(keys_dir, now=T0)
    (keys_dir / "signing" / "ring.json").chmod(0o640)

    with pytest.raises(KeyFileError, match="readable by group or others"):
        load_signing_key_ring(keys_dir)


def test_ring_key_file_readable_by_others_rejected(keys_dir: Path) -> None:
    kid = rotate_signing_key(keys_dir, now=T0)
    (keys_dir / "signing" / f"{kid}.pem").chmod(0o604)

    with pytest.raises(KeyFileError, match="readable by group or others"):
        load_signing_key_ring(keys_dir)


def test_ring_directory_open_to_group_rejected(keys_dir: Path) -> None:
    rotate_signing_key(keys_dir, now=T0)
    (keys_dir / "signing").chmod(0o770)

    with pytest.raises(KeyFileError, match="open to group or others"):
        load_signing_key_ring(keys_dir)


def test_ring_directory_symlink_rejected(keys_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.symlink(elsewhere, keys_dir / "signing")

    with pytest.raises(KeyFileError, match="must be a directory"):
        rotate_signing_key(keys_dir, now=T0)


def test_rotate_without_keys_directory_rejected(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="run `llero init`"):
        rotate_signing_key(tmp_path / "missing", now=T0)


def test_jwks_lists_public_keys_without_private_part(keys_dir: Path) -> None:
    rotate_signing_key(keys_dir, now=T0)
    ring = load_signing_key_ring(keys_dir)

    document = ring.jwks()

    assert [key["kid"] for key in document["keys"]] == list(ring.kids)
    for key in document["keys"]:
        assert "d" not in key
        assert key["kty"] == "OKP"
        assert key["crv"] == "Ed25519"
        assert key["alg"] == "EdDSA"
        assert key["use"] == "sig"
        assert len(base64.urlsafe_b64decode(key["x"] + "=")) == 32


def test_jwks_contains_no_private_key_bytes(keys_dir: Path) -> None:
    rotate_signing_key(keys_dir, now=T0)
    ring = load_signing_key_ring(keys_dir)
    text = json.dumps(ring.jwks())

    for kid in ring.kids:
        path = keys_dir / "signing" / f"{kid}.pem"
        key = read_signing_key(path if path.exists() else keys_dir / SIGNING_KEY)
        private = key.private_bytes_raw()
        assert base64.urlsafe_b64encode(private).rstrip(b"=").decode() not in text
        assert private.hex() not in text


def test_ring_repr_shows_no_key_material(keys_dir: Path) -> None:
    ring = load_signing_key_ring(keys_dir)
    private = read_signing_key(keys_dir / SIGNING_KEY).private_bytes_raw()

    assert base64.urlsafe_b64encode(private).rstrip(b"=").decode() not in repr(ring)
    assert ring.current_kid in repr(ring)
