"""Measure `llero backup` and `llero restore` on a SQLite database of about 1 GB.

Initialises a data directory in a temporary folder and grows its database with a table of
random (incompressible) bytes. Then it times the real commands: a backup to a file, a
verification of it, and a restore into an empty data directory, which ends by verifying the
audit chain.
"""

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LLERO = str(Path(sys.executable).parent / "llero")
ROW_BYTES = 64 * 1024


def grow(database: Path, megabytes: int) -> None:
    """Add ``megabytes`` MiB of random bytes to ``database`` in a table of its own."""
    connection = sqlite3.connect(database)
    connection.execute("CREATE TABLE bench_filler (id INTEGER PRIMARY KEY, data BLOB)")
    rows = megabytes * 1024 * 1024 // ROW_BYTES
    batch = 256
    for start in range(0, rows, batch):
        count = min(batch, rows - start)
        connection.executemany(
            "INSERT INTO bench_filler (data) VALUES (?)",
            ((os.urandom(ROW_BYTES),) for _ in range(count)),
        )
        connection.commit()
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=1024, help="filler size in MiB")
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="llero-bench-backup-"))
    try:
        source = workdir / "data"
        env = {**os.environ, "LLERO_DATA_DIR": str(source), "LLERO_LOG_LEVEL": "warning"}
        subprocess.run([LLERO, "init"], env=env, check=True, capture_output=True)
        grow(source / "llero.db", options.megabytes)
        size = (source / "llero.db").stat().st_size
        key_file = source / "keys" / "backup.key"

        backup_file = workdir / "bench.backup"
        backup_s = timed([LLERO, "backup", "--output", str(backup_file)], env)
        verify_s = timed(
            [LLERO, "backup", "verify", str(backup_file), "--key-file", str(key_file)], env
        )
        shutil.copy(key_file, workdir / "backup.key")
        restore_env = {**env, "LLERO_DATA_DIR": str(workdir / "restored")}
        restore_s = timed(
            [LLERO, "restore", str(backup_file), "--key-file", str(workdir / "backup.key")],
            restore_env,
        )
        restored = (workdir / "restored" / "llero.db").stat().st_size
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    mib = size / 1024 / 1024
    print(f"database: {mib:.0f} MiB (restored {restored / 1024 / 1024:.0f} MiB)")
    print(f"backup: {backup_s:.1f} s ({mib / backup_s:.0f} MiB/s)")
    print(f"verify: {verify_s:.1f} s ({mib / verify_s:.0f} MiB/s)")
    print(f"restore, audit chain verified: {restore_s:.1f} s ({mib / restore_s:.0f} MiB/s)")


if __name__ == "__main__":
    main()
