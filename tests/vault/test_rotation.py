"""KEK rotation: data keys are re-wrapped in batches without touching the values, a crash resumes
at the last committed batch, the server keeps reading and writing, and the old KEK is retired only
when nothing needs it."""

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, select

from llero.crypto import Secret
from llero.errors import Refused
from llero.storage.db import Database
from llero.vault import rotation
from llero.vault.envelope import seal_plaintext
from llero.vault.errors import CiphertextInvalid
from llero.vault.keyring import Keyring, add_kek, load_keyring
from llero.vault.models import KekRotation, SecretKind, SecretVersion, StoredSecret
from llero.vault.rotation import records_needing, retire_kek, rotate_data_keys
from llero.vault.secret_keys import create_secret_key, seal_inner
from llero.vault.service import VaultService, value_binding

RECORDS = 3000
BATCH = 250


class SimulatedCrash(Exception):
    pass


def _value(index: int) -> str:
    return f"sk-live-rotation-test-{index:06d}"


def _store_many(database: Database, keyring: Keyring, count: int) -> None:
    """Insert ``count`` secrets with their keys and one version each, sealed as the service seals
    them. Each secret has two envelopes, its key's and its version's."""
    with database.transaction() as session:
        secrets = [StoredSecret(name=f"s{index:06d}", current_version=1) for index in range(count)]
        session.add_all(secrets)
        session.flush()
        for index, secret in enumerate(secrets):
            binding = value_binding(secret.id, 1)
            key = create_secret_key(session, keyring, secret.id)
            inner = seal_inner(key, _value(index).encode(), binding)
            envelope = seal_plaintext(keyring, Secret(inner), binding)
            session.add(
                SecretVersion(
                    secret_id=secret.id, version=1, envelope=envelope, kek_id=keyring.current.id
                )
            )


def _kek_counts(database: Database) -> dict[str | None, int]:
    with database.reader() as session:
        rows = session.execute(
            select(SecretVersion.kek_id, func.count()).group_by(SecretVersion.kek_id)
        ).all()
    return dict(rows)


def _payloads(database: Database) -> dict[int, bytes]:
    with database.reader() as session:
        rows = session.execute(select(SecretVersion.id, SecretVersion.envelope)).all()
    return {row_id: envelope[49:] for row_id, envelope in rows if envelope is not None}


def _assert_all_readable(database: Database, keyring: Keyring, count: int) -> None:
    with database.reader() as session:
        rows = session.execute(
            select(StoredSecret.name, SecretVersion.secret_id, SecretVersion.envelope).join(
                StoredSecret, StoredSecret.id == SecretVersion.secret_id
            )
        ).all()
    assert len(rows) == count
    vault = VaultService(database, keyring)
    for name, secret_id, envelope in rows:
        assert envelope is not None
        assert vault.read_plaintext(secret_id).reveal() == _value(int(name[1:]))


def _crash_after(monkeypatch: pytest.MonkeyPatch, calls: int) -> None:
    real_rewrap = rotation.rewrap  # type: ignore[attr-defined]
    done = 0

    def crashing_rewrap(*args: object) -> bytes:
        nonlocal done
        if done == calls:
            raise SimulatedCrash
        done += 1
        return real_rewrap(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(rotation, "rewrap", crashing_rewrap)


def test_rotation_resumes_after_crash_and_retires_old_kek(
    database: Database, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_keyring = load_keyring(keys_dir)
    old_id = old_keyring.current.id
    _store_many(database, old_keyring, RECORDS)
    payloads_before = _payloads(database)
    new_id = add_kek(keys_dir).id
    keyring = load_keyring(keys_dir)

    # Crash in the middle of the seventh batch: six batches are committed, the seventh is not.
    _crash_after(monkeypatch, 6 * BATCH + BATCH // 2)
    with pytest.raises(SimulatedCrash):
        rotate_data_keys(database, keyring, batch_size=BATCH)
    monkeypatch.undo()

    assert _kek_counts(database) == {new_id: 6 * BATCH, old_id: RECORDS - 6 * BATCH}
    with database.reader() as session:
        progress = session.scalars(
            select(KekRotation).where(KekRotation.table_name == "secret_versions")
        ).one()
        sixth_batch_end = session.scalars(
            select(SecretVersion.id).order_by(SecretVersion.id).offset(6 * BATCH - 1).limit(1)
        ).one()
    assert progress.cursor == sixth_batch_end
    assert progress.rewrapped == 6 * BATCH
    assert progress.finished_at is None
    # The versions left, and every secret's key: the keys' table comes after the versions'.
    remaining = RECORDS - 6 * BATCH + RECORDS
    with pytest.raises(Refused, match=f"still wraps {remaining} data keys"):
        retire_kek(database, keys_dir, old_id)

    result = rotate_data_keys(database, keyring, batch_size=BATCH)

    assert result.rewrapped == remaining
    assert result.batches == 2 * (RECORDS // BATCH) - 6
    assert result.finished
    assert _kek_counts(database) == {new_id: RECORDS}
    assert _payloads(database) == payloads_before

    retire_kek(database, keys_dir, old_id)

    retired_keyring = load_keyring(keys_dir)
    assert retired_keyring.ids == (new_id,)
    _assert_all_readable(database, retired_keyring, RECORDS)


def test_rotation_stops_after_max_batches_and_resumes(database: Database, keys_dir: Path) -> None:
    _store_many(database, load_keyring(keys_dir), 100)
    add_kek(keys_dir)
    keyring = load_keyring(keys_dir)

    first = rotate_data_keys(database, keyring, batch_size=30, max_batches=2)
    second = rotate_data_keys(database, keyring, batch_size=30)

    assert (first.rewrapped, first.batches, first.finished) == (60, 2, False)
    # 40 versions in 2 batches, then 100 secret keys in 4.
    assert (second.rewrapped, second.batches, second.finished) == (140, 6, True)
    assert _kek_counts(database) == {keyring.current.id: 100}


def test_rotation_with_nothing_to_do_finishes(database: Database, keyring: Keyring) -> None:
    _store_many(database, keyring, 10)

    result = rotate_data_keys(database, keyring)

    assert (result.rewrapped, result.batches, result.finished) == (0, 0, True)


def test_rerun_after_finish_finds_late_records(database: Database, keys_dir: Path) -> None:
    stale = load_keyring(keys_dir)
    old_id = stale.current.id
    _store_many(database, stale, 20)
    add_kek(keys_dir)
    keyring = load_keyring(keys_dir)
    rotate_data_keys(database, keyring, batch_size=7)
    # A process that has not reloaded its keyring yet seals under the old KEK.
    VaultService(database, Keyring([stale.kek(old_id)], old_id)).create_secret(  # type: ignore[list-item]
        name="late", kind=SecretKind.GENERIC, value=Secret("late-value-0123456789")
    )

    # The late secret's version and its key.
    with pytest.raises(Refused, match="still wraps 2 data keys"):
        retire_kek(database, keys_dir, old_id)
    result = rotate_data_keys(database, keyring, batch_size=7)

    assert result.rewrapped == 2
    retire_kek(database, keys_dir, old_id)
    assert records_needing(database, old_id) == 0


def test_destroyed_versions_are_skipped(database: Database, keys_dir: Path) -> None:
    vault = VaultService(database, load_keyring(keys_dir))
    secret_id = vault.create_secret(
        name="gone", kind=SecretKind.GENERIC, value=Secret("gone-value-0123456789")
    ).secret_id
    vault.destroy_version(secret_id, 1)
    add_kek(keys_dir)

    result = rotate_data_keys(database, load_keyring(keys_dir))

    # Only the secret's key is re-wrapped; the destroyed version has no envelope left.
    assert result.rewrapped == 1
    assert _kek_counts(database) == {None: 1}


def test_retire_current_kek_refused(database: Database, keys_dir: Path) -> None:
    current = add_kek(keys_dir).id

    with pytest.raises(Refused, match="current KEK"):
        retire_kek(database, keys_dir, current)


def test_rotation_stops_on_envelope_it_cannot_unwrap(database: Database, keys_dir: Path) -> None:
    keyring = load_keyring(keys_dir)
    old_id = keyring.current.id
    _store_many(database, keyring, 5)
    with database.transaction() as session:
        row = session.scalars(select(SecretVersion).order_by(SecretVersion.id).limit(1)).one()
        assert row.envelope is not None
        broken = bytearray(row.envelope)
        broken[20] ^= 0x01
        row.envelope = bytes(broken)
    add_kek(keys_dir)

    with pytest.raises(CiphertextInvalid):
        rotate_data_keys(database, load_keyring(keys_dir), batch_size=2)

    assert _kek_counts(database) == {old_id: 5}


def test_rotation_while_serving_reads_and_writes(database: Database, keys_dir: Path) -> None:
    stale = load_keyring(keys_dir)
    old_id = stale.current.id
    _store_many(database, stale, 600)
    with database.reader() as session:
        secret_ids = session.scalars(select(StoredSecret.id).order_by(StoredSecret.id)).all()
    # The server process loaded its keyring before the new KEK existed.
    server = VaultService(database, stale)
    add_kek(keys_dir)
    keyring = load_keyring(keys_dir)
    serving, stop = threading.Event(), threading.Event()
    failures: list[Exception] = []
    served = {"reads": 0, "writes": 0}

    def serve() -> None:
        try:
            while not stop.is_set():
                index = served["reads"] % len(secret_ids)
                value = server.read_plaintext(secret_ids[index]).reveal()
                assert value == _value(index)
                served["reads"] += 1
                serving.set()
                if served["reads"] % 10 == 0:
                    server.create_secret(
                        name=f"new{served['writes']:05d}",
                        kind=SecretKind.GENERIC,
                        value=Secret(f"new-value-{served['writes']:012d}"),
                    )
                    served["writes"] += 1
        except Exception as error:  # noqa: BLE001 - the test thread reports every failure
            failures.append(error)

    worker = threading.Thread(target=serve)
    worker.start()
    try:
        assert serving.wait(timeout=30)
        reads_before = served["reads"]
        rotate_data_keys(database, keyring, batch_size=25)
        reads_during = served["reads"] - reads_before
    finally:
        stop.set()
        worker.join()

    assert failures == []
    assert reads_during > 0
    rotate_data_keys(database, keyring, batch_size=25)
    retire_kek(database, keys_dir, old_id)
    assert records_needing(database, old_id) == 0
    assert old_id not in load_keyring(keys_dir).ids
    _assert_all_readable_service(server, secret_ids)


def _assert_all_readable_service(server: VaultService, secret_ids: Sequence[int]) -> None:
    for index in (0, len(secret_ids) // 2, len(secret_ids) - 1):
        assert server.read_plaintext(secret_ids[index]).reveal() == _value(index)
