"""`llero audit verify`, `hash` and `export`, invoked as the group the lead registers."""

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from llero.audit import parallel, service
from llero.audit.events import AuditEvent
from llero.audit.keys import AuditKeys, load_audit_keys
from llero.audit.redaction import audit_hash
from llero.cli.audit import audit
from llero.storage.db import Database
from tests.audit.helpers import append, execute_raw, scalar_raw

PLANTED = "sk-live-PLANTED-cli-0b1c2d3e"


@pytest.fixture
def environ(
    data_dir: Path, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    # A .env file in the working directory would be read as settings, so run elsewhere.
    monkeypatch.chdir(tmp_path)
    return {"LLERO_DATA_DIR": str(data_dir), "LLERO_DATABASE_URL": database.url}


@pytest.fixture
def keys(data_dir: Path) -> AuditKeys:
    return load_audit_keys(data_dir / "keys")


def llero_audit(environ: dict[str, str], *arguments: str, stdin: str = "") -> Result:
    return CliRunner().invoke(audit, list(arguments), env=environ, input=stdin)


def test_verify_intact_chain_exits_0(
    environ: dict[str, str], database: Database, keys: AuditKeys
) -> None:
    append(database, keys, 5)

    result = llero_audit(environ, "verify")

    assert result.exit_code == 0, result.output
    assert result.stdout == "audit chain ok: 5 records checked (1 to 5)\n"


def test_verify_empty_chain_exits_0(environ: dict[str, str]) -> None:
    result = llero_audit(environ, "verify")

    assert result.exit_code == 0, result.output
    assert result.stdout == "audit chain ok: no records in this range\n"


def test_verify_names_first_broken_record(
    environ: dict[str, str], database: Database, keys: AuditKeys
) -> None:
    append(database, keys, 6)
    execute_raw(database, "DELETE FROM audit_events WHERE sequence = 4")

    result = llero_audit(environ, "verify")

    assert result.exit_code == 1
    assert result.stdout == (
        "audit chain broken at record 4 (deleted): record 4 is missing; "
        "the next stored record is 5\n"
    )


def test_verify_range(environ: dict[str, str], database: Database, keys: AuditKeys) -> None:
    append(database, keys, 6)
    execute_raw(database, "UPDATE audit_events SET detail = '{}' WHERE sequence = 5")

    before = llero_audit(environ, "verify", "--from", "2", "--to", "4")
    covering = llero_audit(environ, "verify", "--from", "4")

    assert before.exit_code == 0, before.output
    assert before.stdout == "audit chain ok: 3 records checked (2 to 4)\n"
    assert covering.exit_code == 1
    assert "at record 5 (edited)" in covering.stdout


def test_verify_edited_head_exits_1(
    environ: dict[str, str], database: Database, keys: AuditKeys
) -> None:
    append(database, keys, 2)
    execute_raw(database, "UPDATE audit_chain SET last_sequence = 1")

    result = llero_audit(environ, "verify")

    assert result.exit_code == 1
    assert result.stdout.startswith("audit chain broken at the chain head (head_invalid)")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--from", "5", "--to", "2"), "--from 5 is after --to 2"),
        (("--from", "0"), "0 is not in the range x>=1"),
        (("--to", "abc"), "'abc' is not a valid integer"),
    ],
)
def test_verify_rejects_bad_range(
    environ: dict[str, str], arguments: tuple[str, ...], message: str
) -> None:
    result = llero_audit(environ, "verify", *arguments)

    assert result.exit_code == 2
    assert message in result.stderr


def test_hash_argument_matches_audit_hash(environ: dict[str, str], keys: AuditKeys) -> None:
    result = llero_audit(environ, "hash", PLANTED)

    assert result.exit_code == 0, result.output
    assert result.stdout == audit_hash(PLANTED, keys) + "\n"


def test_hash_reads_stdin(environ: dict[str, str], keys: AuditKeys) -> None:
    result = llero_audit(environ, "hash", "-", stdin=PLANTED + "\n")

    assert result.exit_code == 0, result.output
    assert result.stdout == audit_hash(PLANTED, keys) + "\n"


def test_hash_rejects_empty_value(environ: dict[str, str]) -> None:
    result = llero_audit(environ, "hash", "-", stdin="\n")

    assert result.exit_code == 2
    assert "VALUE is empty" in result.stderr


def test_hash_needs_key_file(environ: dict[str, str], data_dir: Path) -> None:
    (data_dir / "keys" / "audit.key").unlink()

    result = llero_audit(environ, "hash", "value")

    assert result.exit_code != 0
    assert PLANTED not in result.output


def test_export_to_stdout(environ: dict[str, str], database: Database, keys: AuditKeys) -> None:
    append(database, keys, 3, detail={"api_key": PLANTED})

    result = llero_audit(environ, "export")

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [item["sequence"] for item in records] == [1, 2, 3, 4]
    assert records[-1]["event"] == "audit:exported"
    assert records[0]["detail"] == {"api_key": audit_hash(PLANTED, keys)}
    assert PLANTED not in result.output


def test_export_records_itself(
    environ: dict[str, str], database: Database, keys: AuditKeys
) -> None:
    result = llero_audit(environ, "export", "--event", "tool:deleted")

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    detail = json.loads(str(scalar_raw(database, "SELECT detail FROM audit_events")))
    assert detail["events"] == ["tool:deleted"]
    assert detail["output"] == "stdout"
    assert scalar_raw(database, "SELECT actor_id FROM audit_events") == "cli"


def test_export_filters(environ: dict[str, str], database: Database, keys: AuditKeys) -> None:
    append(database, keys, 2)
    append(database, keys, 1, event=AuditEvent.TOOL_DELETED)

    by_event = llero_audit(environ, "export", "--event", "tool:deleted")
    by_actor = llero_audit(environ, "export", "--actor", "user:7", "--since", "2000-01-01")
    by_hash = llero_audit(environ, "export", "--detail-hash", audit_hash("nothing", keys))

    assert [json.loads(line)["sequence"] for line in by_event.stdout.splitlines()] == [3]
    assert [json.loads(line)["sequence"] for line in by_actor.stdout.splitlines()] == [1, 2, 3]
    assert by_hash.stdout == ""


def test_export_to_private_file(
    environ: dict[str, str], database: Database, keys: AuditKeys, tmp_path: Path
) -> None:
    append(database, keys, 2)
    output = tmp_path / "audit.jsonl"

    result = llero_audit(environ, "export", "--output", str(output))

    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert len(output.read_text().splitlines()) == 3
    assert result.stderr == f"exported 3 audit records to {output}\n"


def test_export_keeps_existing_file(
    environ: dict[str, str], database: Database, keys: AuditKeys, tmp_path: Path
) -> None:
    output = tmp_path / "audit.jsonl"
    output.write_text("keep me\n")

    result = llero_audit(environ, "export", "--output", str(output))

    assert result.exit_code == 2
    assert "already exists" in result.stderr
    assert output.read_text() == "keep me\n"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--since", "yesterday"), "--since 'yesterday' is not an ISO 8601"),
        (("--actor", "robot:1"), "--actor 'robot:1' must be KIND or KIND:ID"),
        (("--event", "tool:exploded"), "'tool:exploded' is not one of"),
        (("--detail-hash", "abc"), "--detail-hash: must be hmac-sha256:"),
    ],
)
def test_export_rejects_bad_option(
    environ: dict[str, str], database: Database, arguments: tuple[str, ...], message: str
) -> None:
    result = llero_audit(environ, "export", *arguments)

    assert result.exit_code == 2
    assert message in result.stderr
    assert scalar_raw(database, "SELECT count(*) FROM audit_events") == 0


@pytest.fixture
def small_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Split even a short chain, so the test starts real processes.
    monkeypatch.setattr(parallel, "MIN_RECORDS_PER_JOB", 3)


@pytest.mark.usefixtures("small_jobs")
def test_verify_jobs_intact_chain(
    environ: dict[str, str], database: Database, keys: AuditKeys
) -> None:
    append(database, keys, 9)

    result = llero_audit(environ, "verify", "--jobs", "3")

    assert result.exit_code == 0, result.output
    assert result.stdout == "audit chain ok: 9 records checked (1 to 9)\n"


@pytest.mark.usefixtures("small_jobs")
@pytest.mark.parametrize(
    ("statement", "first_broken"),
    [
        ("UPDATE audit_events SET detail = '{}' WHERE sequence IN (5, 8)", "record 5 (edited)"),
        ("DELETE FROM audit_events WHERE sequence = 3", "record 3 (deleted)"),
        ("DELETE FROM audit_events WHERE sequence = 9", "record 9 (deleted)"),
        ("UPDATE audit_chain SET last_sequence = 8", "the chain head (head_invalid)"),
    ],
)
def test_verify_jobs_names_first_break(
    environ: dict[str, str], database: Database, keys: AuditKeys, statement: str, first_broken: str
) -> None:
    append(database, keys, 9)
    execute_raw(database, statement)

    result = llero_audit(environ, "verify", "--jobs", "3")

    assert result.exit_code == 1
    assert f"audit chain broken at {first_broken}" in result.stdout


def _append_days_ago(
    database: Database, keys: AuditKeys, count: int, days: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(service, "utc_now", lambda: datetime.now(UTC) - timedelta(days=days))
        append(database, keys, count)


def test_purge_uses_retention_setting(
    environ: dict[str, str],
    database: Database,
    keys: AuditKeys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _append_days_ago(database, keys, 3, 40, monkeypatch)
    append(database, keys, 2)

    kept = llero_audit({**environ, "LLERO_AUDIT_RETENTION_DAYS": "60"}, "purge")
    purged = llero_audit({**environ, "LLERO_AUDIT_RETENTION_DAYS": "30"}, "purge")

    assert kept.exit_code == 0, kept.output
    assert kept.stdout.startswith("removed 0 audit records older than 60 days")
    assert purged.exit_code == 0, purged.output
    assert purged.stdout == (
        "removed 3 audit records older than 30 days; the chain now starts at record 4\n"
    )
    assert llero_audit(environ, "verify").stdout == "audit chain ok: 4 records checked (4 to 7)\n"
    assert scalar_raw(database, "SELECT event FROM audit_events WHERE sequence = 7") == (
        "audit:purged"
    )


def test_purge_days_option_overrides_setting(
    environ: dict[str, str],
    database: Database,
    keys: AuditKeys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _append_days_ago(database, keys, 2, 10, monkeypatch)

    result = llero_audit(environ, "purge", "--days", "5")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("removed 2 audit records older than 5 days")


def test_purge_refuses_broken_chain(
    environ: dict[str, str],
    database: Database,
    keys: AuditKeys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _append_days_ago(database, keys, 3, 10, monkeypatch)
    execute_raw(database, "UPDATE audit_events SET detail = '{}' WHERE sequence = 2")

    result = llero_audit(environ, "purge", "--days", "5")

    assert result.exit_code == 2
    assert "refusing to purge a broken chain" in result.stderr
    assert scalar_raw(database, "SELECT count(*) FROM audit_events") == 3
