"""`llero users`, `llero keys` and `llero init --admin-email` as an operator runs them: settings
from the environment only, standard input never read, the code printed once."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.cli.main import cli
from llero.identity.signing_keys import load_signing_key_ring
from llero.storage.db import Database
from tests.conftest import MakeUser
from tests.identity.helpers import PASSWORD, bearer, sign_in, user_row

LLERO = Path(sys.executable).with_name("llero")
CODE = re.compile(r"^  (llero_el_[0-9A-Za-z]{49})$", re.MULTILINE)
COMMAND_TIMEOUT = 60


@pytest.fixture
def environ(
    data_dir: Path, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    # A .env file in the working directory would be read as settings, so run elsewhere.
    monkeypatch.chdir(tmp_path)
    return {"LLERO_DATA_DIR": str(data_dir), "LLERO_DATABASE_URL": database.url}


def llero(environ: dict[str, str], *arguments: str) -> Result:
    return CliRunner().invoke(cli, list(arguments), env=environ, input="")


def _code_in(output: str) -> str:
    codes = CODE.findall(output)
    assert len(codes) == 1, output
    return str(codes[0])


def test_create_admin_prints_code_once(environ: dict[str, str], database: Database) -> None:
    result = llero(environ, "users", "create-admin", "--email", "Boss@Example.com")

    assert result.exit_code == 0, result.output
    code = _code_in(result.output)
    created = re.search(
        r"^admin Boss@Example.com \(user (\d+)\) is pending until they enroll$",
        result.output,
        re.MULTILINE,
    )
    assert created is not None, result.output
    assert "POST /api/auth/enroll" in result.output
    stored = user_row(database, int(created[1]))
    assert stored.role == "admin"
    assert stored.status == "pending"
    assert code not in repr(stored.__dict__)


def test_created_admin_enrolls_and_must_add_totp(
    environ: dict[str, str], anonymous_client: TestClient
) -> None:
    code = _code_in(llero(environ, "users", "create-admin", "--email", "boss@example.com").output)

    enrolled = anonymous_client.post("/api/auth/enroll", json={"code": code, "password": PASSWORD})
    signed_in = sign_in(anonymous_client, "boss@example.com").json()

    assert enrolled.status_code == 200
    assert signed_in["mfa_enrollment_required"] is True
    tools = anonymous_client.get("/api/tools", headers=bearer(signed_in["access_token"]))
    assert tools.json()["error"] == "mfa_enrollment_required"


def test_create_admin_again_replaces_code(
    environ: dict[str, str], anonymous_client: TestClient
) -> None:
    first = _code_in(llero(environ, "users", "create-admin", "--email", "boss@example.com").output)
    second = _code_in(llero(environ, "users", "create-admin", "--email", "boss@example.com").output)

    old = anonymous_client.post("/api/auth/enroll", json={"code": first, "password": PASSWORD})
    new = anonymous_client.post("/api/auth/enroll", json={"code": second, "password": PASSWORD})

    assert old.status_code == 401
    assert new.status_code == 200


def test_create_admin_for_active_user_fails(environ: dict[str, str]) -> None:
    code = _code_in(llero(environ, "users", "create-admin", "--email", "boss@example.com").output)
    assert code

    result = llero(environ, "users", "create-admin", "--email", "viewer@example.com")
    llero(environ, "users", "disable", "viewer@example.com")
    again = llero(environ, "users", "create-admin", "--email", "viewer@example.com")

    assert result.exit_code == 0
    assert again.exit_code == 2
    assert again.stderr.endswith("llero: a user with this email address already exists\n")


@pytest.mark.parametrize("email", ["not-an-address", "a@b", "x" * 400 + "@example.com"])
def test_create_admin_invalid_email_one_line(environ: dict[str, str], email: str) -> None:
    result = llero(environ, "users", "create-admin", "--email", email)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("llero: ")
    assert result.stderr.count("\n") == 1


def test_disable_ends_access_at_once(
    environ: dict[str, str], client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    developer = make_user(role=Role.DEVELOPER, email="dev@example.com")

    result = llero(environ, "users", "disable", "DEV@example.com")

    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(
        f"disabled user {developer.id}; their sessions and API tokens are revoked\n"
    )
    assert anonymous_client.get("/api/users/me", headers=developer.headers).status_code == 401


def test_disable_last_admin_refused(environ: dict[str, str], client: TestClient) -> None:
    result = llero(environ, "users", "disable", "admin@example.com")

    assert result.exit_code == 2
    assert result.stderr.endswith(
        "llero: the last active admin cannot be demoted or disabled; make another admin first\n"
    )
    assert client.get("/api/users/me").status_code == 200


def test_disable_unknown_user_fails(environ: dict[str, str]) -> None:
    result = llero(environ, "users", "disable", "nobody@example.com")

    assert result.exit_code == 2
    assert result.stderr.endswith("llero: no user has this email address\n")


def test_rotate_signing_keeps_old_tokens(
    environ: dict[str, str], data_dir: Path, client: TestClient
) -> None:
    before = load_signing_key_ring(data_dir / "keys").current_kid

    result = llero(environ, "keys", "rotate-signing")

    ring = load_signing_key_ring(data_dir / "keys")
    assert result.exit_code == 0, result.output
    assert ring.current_kid != before
    assert set(ring.kids) == {before, ring.current_kid}
    assert f"new signing key {ring.current_kid} is current" in result.output
    # The running app still holds the old ring until restarted, and its tokens still verify.
    assert client.get("/api/users/me").status_code == 200


def _run(arguments: list[str], data_dir: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    environ = {name: value for name, value in os.environ.items() if not name.startswith("LLERO_")}
    environ["LLERO_DATA_DIR"] = str(data_dir)
    # An open pipe that no one writes to, so a command that reads standard input would hang.
    with subprocess.Popen(
        [str(LLERO), *arguments],
        cwd=workdir,
        env=environ,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
        finally:
            process.kill()
    return subprocess.CompletedProcess(arguments, process.returncode, stdout, stderr)


def test_init_creates_first_admin(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    workdir = tmp_path / "work"
    workdir.mkdir()

    first = _run(["init", "--admin-email", "root@example.com"], data_dir, workdir)
    second = _run(["init", "--admin-email", "other@example.com"], data_dir, workdir)

    assert first.returncode == 0, first.stderr
    assert '"event": "user:created"' in first.stderr
    assert _code_in(first.stdout)
    assert "admin root@example.com (user 1) is pending" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "an admin exists already, so --admin-email was ignored" in second.stdout
    assert not CODE.search(second.stdout)


def test_init_without_admin_says_how(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()

    result = _run(["init"], tmp_path / "data", workdir)

    assert result.returncode == 0, result.stderr
    assert "no admin yet: run `llero users create-admin --email ADDRESS`" in result.stdout


@pytest.mark.parametrize(
    "arguments",
    [
        ["users", "create-admin", "--email", "root@example.com"],
        ["users", "disable", "root@example.com"],
        ["keys", "rotate-signing"],
    ],
)
def test_identity_commands_never_read_stdin(tmp_path: Path, arguments: list[str]) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    assert _run(["init"], tmp_path / "data", workdir).returncode == 0

    result = _run(arguments, tmp_path / "data", workdir)

    # disable fails for the unknown user, the others succeed; none waits for input.
    assert result.returncode == (2 if arguments[1] == "disable" else 0), result.stderr


def test_create_admin_missing_email_is_usage_error(environ: dict[str, str]) -> None:
    result = llero(environ, "users", "create-admin")

    assert result.exit_code == 2
    assert "Missing option '--email'" in result.output
