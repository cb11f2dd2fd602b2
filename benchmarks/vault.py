"""Measure the vault: decryption latency, AES-GCM throughput against raw AESGCM, rotation time.

Run: .venv/bin/python benchmarks/vault.py [--records N] [--database-url URL]

1. Latency to decrypt one secret, p50 and p99 over many calls: the envelope alone (parse, unwrap
   the data key, AES-GCM decrypt), and VaultService.read_plaintext, which adds the database read
   and at most one last-used update a minute. A transaction running SELECT 1 is timed as well, as
   the floor that the database alone sets.
2. AES-GCM throughput of llero.crypto.AesGcmKey against cryptography's AESGCM, encryption and
   decryption, in the same run, best of ROUNDS rounds that alternate their order. The raw
   encryption draws its nonce the same way (os.urandom), and a second baseline reuses one fixed
   nonce to show the cipher alone.
3. Time to re-wrap N secrets (100,000 by default, two envelopes each) under a new KEK, as
   `llero keys rotate` does it: count the envelopes per KEK, add the KEK with its audit records,
   re-wrap in batches of 500, and record the end.

The database is a new SQLite file in a temporary directory unless --database-url names another,
for example an empty PostgreSQL database. The benchmark creates its tables there, and opens it
with the audit and field keys attached, as the server does.
"""

import argparse
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import insert, select

from llero.audit.context import Origin
from llero.config.keyfiles import create_key_files, make_private_dir
from llero.config.settings import Settings
from llero.crypto import AesGcmKey, Secret
from llero.logs import configure_logging
from llero.storage import migrate
from llero.storage.db import Database
from llero.vault import kek_admin
from llero.vault.envelope import open_plaintext, seal_plaintext
from llero.vault.kek_sources import load_vault_keyring
from llero.vault.keyring import Keyring
from llero.vault.models import SecretKey, SecretKind, SecretVersion, StoredSecret
from llero.vault.secret_keys import key_binding
from llero.vault.service import VaultService, value_binding

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keyed import keyed_database

ROUNDS = 15
LATENCY_CALLS = 20_000
SIZES = (64, 1024, 16 * 1024, 1024 * 1024)
INSERT_BATCH = 5000
VALUE = "sk-live-benchmark-0123456789abcdef0123456789abcdef"


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    """Return p50 and p99 in microseconds."""
    cut = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return cut[49] / 1000, cut[98] / 1000


def time_calls(operation: Callable[[], object], calls: int) -> list[int]:
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        operation()
        samples.append(time.perf_counter_ns() - start)
    return samples


def select_one(database: Database) -> None:
    """Run the smallest transaction, the floor under any read through the database."""
    with database.transaction() as session:
        session.execute(select(1)).one()


def measure_latency(database: Database, keyring: Keyring) -> None:
    vault = VaultService(database, keyring)
    info = vault.create_secret(name="latency", kind=SecretKind.GENERIC, value=Secret(VALUE))
    binding = value_binding(info.secret_id, 1)
    with database.reader() as session:
        envelope = session.scalars(select(SecretVersion.envelope)).one()
    assert envelope is not None
    # The envelope holds the value encrypted under the secret's own key, never the value itself.
    assert VALUE.encode() not in open_plaintext(keyring, envelope, binding).reveal()
    assert vault.read_plaintext(info.secret_id).reveal() == VALUE

    for name, operation, calls in (
        ("envelope open", lambda: open_plaintext(keyring, envelope, binding), LATENCY_CALLS),
        ("read_plaintext", lambda: vault.read_plaintext(info.secret_id), LATENCY_CALLS // 4),
        ("SELECT 1 (base)", lambda: select_one(database), LATENCY_CALLS // 4),
    ):
        time_calls(operation, calls // 10)
        p50, p99 = percentiles(time_calls(operation, calls))
        print(f"decrypt one secret, {name:<15} p50 {p50:8.1f} us   p99 {p99:8.1f} us")


def fastest_round(operation: Callable[[], object], calls: int) -> float:
    """Return the seconds that ``calls`` calls took."""
    return timeit.timeit(operation, number=calls)


def operations(data: bytes) -> dict[str, Callable[[], object]]:
    """Return the operations compared, on ``data``, under one random key."""
    key = secrets.token_bytes(32)
    module_key, raw = AesGcmKey(key), AESGCM(key)
    fixed_nonce = secrets.token_bytes(12)
    associated_data = b"benchmark"
    nonce, ciphertext = module_key.encrypt(data, associated_data)
    return {
        "encrypt llero": lambda: module_key.encrypt(data, associated_data),
        "encrypt raw": lambda: raw.encrypt(os.urandom(12), data, associated_data),
        "encrypt fixed": lambda: raw.encrypt(fixed_nonce, data, associated_data),
        "decrypt llero": lambda: module_key.decrypt(nonce, ciphertext, associated_data),
        "decrypt raw": lambda: raw.decrypt(nonce, ciphertext, associated_data),
    }


def measure_throughput() -> None:
    print(f"\nAES-256-GCM, MB/s, best of {ROUNDS} rounds in alternating order")
    print(
        f"{'size':>9} {'enc llero':>10} {'enc raw':>9} {'ratio':>6} {'fixed nonce':>12}"
        f" {'dec llero':>10} {'dec raw':>9} {'ratio':>6}"
    )
    for size in SIZES:
        compared = operations(secrets.token_bytes(size))
        # About 2 MB per round, so each round lasts a few milliseconds at any size.
        calls = max(1, 2_000_000 // (size + 200))
        best = dict.fromkeys(compared, float("inf"))
        for round_number in range(ROUNDS):
            order = list(compared) if round_number % 2 else list(reversed(compared))
            for name in order:
                best[name] = min(best[name], fastest_round(compared[name], calls))
        rate = {name: calls * size / seconds / 1e6 for name, seconds in best.items()}
        print(
            f"{size:>9} {rate['encrypt llero']:>10.0f} {rate['encrypt raw']:>9.0f}"
            f" {rate['encrypt llero'] / rate['encrypt raw']:>6.0%} {rate['encrypt fixed']:>12.0f}"
            f" {rate['decrypt llero']:>10.0f} {rate['decrypt raw']:>9.0f}"
            f" {rate['decrypt llero'] / rate['decrypt raw']:>6.0%}"
        )


def store_records(database: Database, keyring: Keyring, count: int) -> None:
    """Insert ``count`` secrets with one sealed version each, in batches of INSERT_BATCH.

    The versions hold the value without the inner layer under a per-secret key, and one key row
    per secret is stored alongside, so rotation finds two envelopes per secret as it does for
    secrets that VaultService stores.
    """
    for first in range(0, count, INSERT_BATCH):
        numbers = range(first, min(first + INSERT_BATCH, count))
        with database.transaction() as session:
            ids = session.scalars(
                insert(StoredSecret).returning(StoredSecret.id),
                [{"name": f"r{number:07d}", "current_version": 1} for number in numbers],
            ).all()
            versions = []
            for secret_id in ids:
                envelope = seal_plaintext(
                    keyring, Secret(VALUE.encode()), value_binding(secret_id, 1)
                )
                versions.append(
                    {
                        "secret_id": secret_id,
                        "version": 1,
                        "envelope": envelope,
                        "kek_id": keyring.current.id,
                    }
                )
            session.execute(insert(SecretVersion), versions)
            session.execute(
                insert(SecretKey),
                [_key_row(keyring, secret_id) for secret_id in ids],
            )


def _key_row(keyring: Keyring, secret_id: int) -> dict[str, object]:
    envelope = seal_plaintext(keyring, Secret(secrets.token_bytes(32)), key_binding(secret_id))
    return {"secret_id": secret_id, "envelope": envelope, "kek_id": keyring.current.id}


def measure_rotation(database: Database, settings: Settings, count: int) -> None:
    keyring = load_vault_keyring(settings)
    start = time.perf_counter()
    store_records(database, keyring, count)
    stored = time.perf_counter() - start

    origin = Origin.system("benchmark")
    start = time.perf_counter()
    begun = kek_admin.start_rotation(database, keyring, origin)
    counted = time.perf_counter() - start
    result = kek_admin.run_rotation(database, keyring, origin)
    rotated = time.perf_counter() - start

    assert begun.added
    assert result.finished
    assert result.rewrapped == begun.pending >= 2 * count
    print(f"\nstore {count:,} secrets: {stored:6.1f} s (setup, for scale)")
    print(
        f"rotate {result.rewrapped:,} envelopes of {count:,} secrets in {result.batches} "
        f"batches: {rotated:6.1f} s ({result.rewrapped / rotated:,.0f} envelopes/s), of which "
        f"{counted:.1f} s to count them and add the KEK"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records to rotate")
    parser.add_argument("--database-url", help="SQLAlchemy URL of an empty database")
    arguments = parser.parse_args()
    print(f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}")
    print(f"CPUs: {os.cpu_count()}, processor: {platform.processor() or 'unknown'}\n")

    with tempfile.TemporaryDirectory() as directory:
        data_dir = Path(directory) / "data"
        make_private_dir(data_dir)
        create_key_files(data_dir / "keys")
        url = arguments.database_url or f"sqlite:///{data_dir / 'llero.db'}"
        settings = Settings(_env_file=None, data_dir=data_dir, database_url=url)  # type: ignore[call-arg]
        # Log lines at the settings' level (info), not structlog's default of every batch.
        configure_logging(settings)
        database = keyed_database(settings)
        try:
            migrate.upgrade(database.engine)
            print(f"database: {database.engine.dialect.name}")
            measure_latency(database, load_vault_keyring(settings))
            measure_throughput()
            measure_rotation(database, settings, arguments.records)
        finally:
            database.dispose()


if __name__ == "__main__":
    main()
