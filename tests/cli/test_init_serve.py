"""`llero init` and `llero serve` as an operator runs them: the installed command in a fresh
directory, settings only from the environment, standard input never a terminal.

Servers started here listen on 127.0.0.1 only, on a port picked free for each test.
"""

import datetime
import gc
import ipaddress
import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
import structlog
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.x509.oid import NameOID

from llero.cli import serving
from llero.cli.main import cli
from llero.config.keyfiles import AUDIT_KEY, MASTER_KEY, SIGNING_KEY

LLERO = Path(sys.executable).with_name("llero")
# Serve either rejects this address or runs with uvicorn.run replaced, so nothing listens on it.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a setting under test, never bound
KEY_NAMES = (MASTER_KEY, AUDIT_KEY, SIGNING_KEY)
COMMAND_TIMEOUT = 60
START_TIMEOUT = 30


def _environ(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without any LLERO_ variable, plus the data directory."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("LLERO_")}
    environ["LLERO_DATA_DIR"] = str(data_dir)
    environ.update(extra or {})
    return environ


def run_llero(
    arguments: list[str], workdir: Path, data_dir: Path, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # With the usual umask 022, a private file proves that the command set its own modes.
    return subprocess.run(
        [str(LLERO), *arguments],
        cwd=workdir,
        env=_environ(data_dir, extra),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        umask=0o022,
        check=False,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty working directory, so no .env is read."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "llero-data"


@pytest.fixture
def initialised(workdir: Path, data_dir: Path) -> Path:
    result = run_llero(["init"], workdir, data_dir)
    assert result.returncode == 0, result.stderr
    return data_dir


@pytest.fixture(scope="module")
def shared_install(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One initialised data directory for the tests that only read it."""
    workdir = tmp_path_factory.mktemp("work")
    data_dir = tmp_path_factory.mktemp("install") / "data"
    result = run_llero(["init"], workdir, data_dir)
    assert result.returncode == 0, result.stderr
    return workdir, data_dir


def test_init_creates_private_data_dir(workdir: Path, data_dir: Path) -> None:
    result = run_llero(["init"], workdir, data_dir)

    assert result.returncode == 0
    assert result.stderr == ""
    for name in KEY_NAMES:
        assert f"created key file {data_dir / 'keys' / name}" in result.stdout
    assert f"data directory {data_dir} is ready" in result.stdout
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "keys") == 0o700
    for name in KEY_NAMES:
        assert _mode(data_dir / "keys" / name) == 0o600, name
    database_files = sorted(data_dir.glob("llero.db*"))
    assert data_dir / "llero.db" in database_files
    for path in database_files:
        assert _mode(path) & 0o077 == 0, path.name


def test_init_twice_keeps_keys(initialised: Path, workdir: Path) -> None:
    keys = {name: (initialised / "keys" / name).read_bytes() for name in KEY_NAMES}

    result = run_llero(["init"], workdir, initialised)

    assert result.returncode == 0
    assert "created key file" not in result.stdout
    assert {name: (initialised / "keys" / name).read_bytes() for name in KEY_NAMES} == keys


# Unsafe settings and the one line each must produce, after "llero: ".
UNSAFE_SERVE_SETTINGS = [
    pytest.param(
        [],
        {"LLERO_ALLOWED_ORIGINS": "*"},
        "invalid setting LLERO_ALLOWED_ORIGINS: wildcard origins are not allowed; "
        "list each origin exactly",
        id="cors_wildcard",
    ),
    pytest.param(
        [],
        {"LLERO_DEBUG": "true"},
        "invalid setting LLERO_DEBUG: debug is allowed only with LLERO_ENVIRONMENT=development",
        id="debug",
    ),
    pytest.param(
        [],
        {"LLERO_HOST": ALL_INTERFACES},
        "invalid setting LLERO_HOST: listening on 0.0.0.0 beyond loopback needs TLS "
        "(LLERO_TLS_CERTFILE and LLERO_TLS_KEYFILE) or a TLS-terminating proxy in "
        "LLERO_TRUSTED_PROXIES",
        id="public_host",
    ),
    pytest.param(
        ["--host", "192.168.1.10"],
        {},
        "invalid setting LLERO_HOST: listening on 192.168.1.10 beyond loopback needs TLS "
        "(LLERO_TLS_CERTFILE and LLERO_TLS_KEYFILE) or a TLS-terminating proxy in "
        "LLERO_TRUSTED_PROXIES",
        id="public_host_option",
    ),
    pytest.param(
        ["--port", "0"],
        {},
        "invalid setting LLERO_PORT: Input should be greater than or equal to 1",
        id="port_zero",
    ),
    pytest.param(
        [],
        {"LLERO_PORT": "70000"},
        "invalid setting LLERO_PORT: Input should be less than or equal to 65535",
        id="port_too_high",
    ),
    pytest.param(
        [],
        {"LLERO_PROT": "8080"},
        "unknown setting LLERO_PROT; check the spelling against the README",
        id="unknown_variable",
    ),
    pytest.param(
        [],
        {"LLERO_TRUSTED_PROXIES": "proxy.internal"},
        "invalid setting LLERO_TRUSTED_PROXIES: 'proxy.internal' is not an IP address or network",
        id="invalid_proxy",
    ),
    pytest.param(
        [],
        {"LLERO_WORKERS": "2"},
        "invalid setting LLERO_WORKERS: with several workers, rate limits need a shared store; "
        "set LLERO_RATE_LIMIT_STORAGE to a redis:// URL",
        id="workers_with_memory_rate_limits",
    ),
    pytest.param(
        [],
        {
            "LLERO_WORKERS": "2",
            "LLERO_RATE_LIMIT_STORAGE": "redis://127.0.0.1:6379/0",
            "LLERO_LOG_FILE": "llero.log",
        },
        "invalid setting LLERO_WORKERS: several workers cannot rotate one LLERO_LOG_FILE; unset "
        "it and collect standard error, or run one worker",
        id="workers_with_log_file",
    ),
]

# Each run of the installed command takes seconds of imports, so only these go through it.
SUBPROCESS_CASES = ("cors_wildcard", "debug", "public_host", "port_zero")


@pytest.mark.parametrize(
    ("arguments", "extra", "expected"),
    [case for case in UNSAFE_SERVE_SETTINGS if case.id in SUBPROCESS_CASES],
)
def test_serve_unsafe_setting_stops_start(
    shared_install: tuple[Path, Path], arguments: list[str], extra: dict[str, str], expected: str
) -> None:
    workdir, data_dir = shared_install

    result = run_llero(["serve", *arguments], workdir, data_dir, extra)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"llero: {expected}"]
    assert result.stdout == ""


@pytest.mark.parametrize(("arguments", "extra", "expected"), UNSAFE_SERVE_SETTINGS)
def test_serve_command_unsafe_setting_one_line(
    shared_install: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    extra: dict[str, str],
    expected: str,
) -> None:
    workdir, data_dir = shared_install
    monkeypatch.chdir(workdir)

    result = CliRunner().invoke(
        cli, ["serve", *arguments], env={"LLERO_DATA_DIR": str(data_dir), **extra}
    )

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"llero: {expected}"]
    assert result.stdout == ""


def test_serve_rejects_key_file_open_to_others(initialised: Path, workdir: Path) -> None:
    master = initialised / "keys" / MASTER_KEY
    master.chmod(0o644)

    result = run_llero(["serve", "--port", str(free_port())], workdir, initialised)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"llero: key file {master} is readable by group or others (mode 0644); "
        f"run `chmod 600 {master}`"
    ]


def test_serve_with_workers_refuses_sealed_vault(initialised: Path, workdir: Path) -> None:
    (initialised / "keys" / MASTER_KEY).unlink()

    result = run_llero(
        ["serve", "--port", str(free_port())],
        workdir,
        initialised,
        {"LLERO_WORKERS": "2", "LLERO_RATE_LIMIT_ENABLED": "false"},
    )

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "llero: invalid setting LLERO_WORKERS: the vault would start sealed, and an unseal "
        "request reaches one worker only; give the master key at start or run one worker"
    ]


def test_serve_before_init_says_run_init(workdir: Path, data_dir: Path) -> None:
    result = run_llero(["serve", "--port", str(free_port())], workdir, data_dir)

    # master.key alone may be missing (the vault then starts sealed), so the audit key is the
    # first that stops the start.
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"llero: key file {data_dir / 'keys' / AUDIT_KEY} is missing; run `llero init`"
    ]


def test_serve_unmigrated_database_says_run_migrate(initialised: Path, workdir: Path) -> None:
    for path in initialised.glob("llero.db*"):
        path.unlink()

    rejected = run_llero(["serve", "--port", str(free_port())], workdir, initialised)
    migrated = run_llero(["migrate"], workdir, initialised)
    again = run_llero(["migrate"], workdir, initialised)

    assert rejected.returncode == 2
    assert rejected.stderr.splitlines() == [
        "llero: the database is not at the latest migration; run `llero migrate`"
    ]
    assert migrated.returncode == 0
    assert migrated.stdout.startswith("migrated database from empty to ")
    assert again.returncode == 0
    assert again.stdout.startswith("database is up to date at migration ")


@pytest.mark.parametrize("arguments", [["init"], ["migrate"], ["serve", "--port", "0"]])
def test_commands_never_read_stdin(initialised: Path, workdir: Path, arguments: list[str]) -> None:
    # An open pipe that no one writes to, so a command that reads standard input would hang.
    with subprocess.Popen(
        [str(LLERO), *arguments],
        cwd=workdir,
        env=_environ(initialised),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        try:
            process.wait(timeout=COMMAND_TIMEOUT)
        finally:
            process.kill()

    assert process.returncode == (2 if arguments[0] == "serve" else 0)


def test_migrate_before_init_fails_with_one_line(workdir: Path, data_dir: Path) -> None:
    result = run_llero(["migrate"], workdir, data_dir)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "llero: cannot open the database (unable to open database file); check LLERO_DATA_DIR "
        "or LLERO_DATABASE_URL and run `llero init`"
    ]


@pytest.mark.parametrize("command", [["migrate"], ["init"], ["serve"]])
def test_unreachable_database_one_line_without_password(
    workdir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    # A loopback port with nothing listening, picked free just before.
    password = "sk-test-PLANTED-db-password"
    url = f"postgresql://llero:{password}@127.0.0.1:{free_port()}/llero"
    monkeypatch.chdir(workdir)
    environ = {"LLERO_DATA_DIR": str(data_dir), "LLERO_DATABASE_URL": url}
    if command == ["serve"]:
        init = CliRunner().invoke(cli, ["init"], env={"LLERO_DATA_DIR": str(data_dir)})
        assert init.exit_code == 0, init.output

    result = CliRunner().invoke(cli, command, env=environ)

    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("llero: cannot open the database (connection failed: ")
    assert password not in result.output


def _wait_until_serving(process: subprocess.Popen[str], url: str, **client: Any) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"llero serve exited with {process.returncode}: {stderr}")
        try:
            httpx.get(url, timeout=1, **client)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        return
    pytest.fail(f"llero serve did not answer {url} within {START_TIMEOUT} s")


@pytest.fixture
def serve(workdir: Path) -> Iterator[Any]:
    """Start `llero serve` on a free loopback port; stop it by its pid at the end."""
    processes: list[subprocess.Popen[str]] = []

    def start(data_dir: Path, extra: dict[str, str] | None = None) -> tuple[Any, int]:
        port = free_port()
        process = subprocess.Popen(
            [str(LLERO), "serve", "--port", str(port)],
            cwd=workdir,
            env=_environ(data_dir, extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        return process, port

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=COMMAND_TIMEOUT)


def _raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        return connection.recv(65536)


def test_serve_answers_and_stops_cleanly(initialised: Path, serve: Any) -> None:
    process, port = serve(initialised)
    base = f"http://127.0.0.1:{port}"
    _wait_until_serving(process, f"{base}/healthz")

    health = httpx.get(f"{base}/healthz")
    forged = httpx.get(f"{base}/healthz", headers={"host": "evil.com"})
    # Headers only: the server must respond without waiting for the 20 MiB they announce.
    oversized = _raw_exchange(
        port,
        b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 20971520\r\n\r\n",
    )
    process.terminate()
    _, stderr = process.communicate(timeout=COMMAND_TIMEOUT)

    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert "server" not in health.headers
    assert health.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in health.headers
    assert forged.status_code == 400
    assert forged.json()["error"] == "invalid_host"
    assert oversized.startswith(b"HTTP/1.1 413 ")
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal to exit with it.
    assert process.returncode == -signal.SIGTERM
    assert "Traceback" not in stderr
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    request_ids = {entry.get("request_id") for entry in logged if entry["event"] == "request"}
    assert health.headers["x-request-id"] in request_ids
    events = [entry["event"] for entry in logged]
    assert events[-1] == "server_stopped"


def _children(pid: int) -> list[int]:
    """Return the ids of the processes whose parent is ``pid``, read from /proc."""
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            children.append(int(status.parent.name))
    return children


def test_serve_with_two_workers(initialised: Path, serve: Any) -> None:
    process, port = serve(initialised, {"LLERO_WORKERS": "2", "LLERO_RATE_LIMIT_ENABLED": "false"})
    base = f"http://127.0.0.1:{port}"
    _wait_until_serving(process, f"{base}/healthz")

    workers = [
        child
        for child in _children(process.pid)
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    answers = [httpx.get(f"{base}/healthz").status_code for _ in range(20)]
    process.terminate()
    _, stderr = process.communicate(timeout=COMMAND_TIMEOUT)

    assert len(workers) == 2
    assert answers == [200] * 20
    assert "Traceback" not in stderr
    assert all(not Path(f"/proc/{worker}").exists() for worker in workers)


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    key = generate_private_key(SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certfile = directory / "cert.pem"
    keyfile = directory / "tls-key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    keyfile.chmod(0o600)
    return certfile, keyfile


# The test enables TLS 1.0 and 1.1 on purpose, to see Llero's server reject them.
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1.* is deprecated:DeprecationWarning")
def test_serve_with_tls_sends_hsts(initialised: Path, serve: Any, tmp_path: Path) -> None:
    certfile, keyfile = _self_signed_certificate(tmp_path)
    process, port = serve(
        initialised, {"LLERO_TLS_CERTFILE": str(certfile), "LLERO_TLS_KEYFILE": str(keyfile)}
    )
    url = f"https://127.0.0.1:{port}/healthz"
    trust = ssl.create_default_context(cafile=str(certfile))
    _wait_until_serving(process, url, verify=trust)

    response = httpx.get(url, verify=trust)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)

    assert response.status_code == 200
    assert response.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    assert _handshake_version(port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake_version(port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    # The same client completes TLS 1.1 with a server that allows it, so the failure below is
    # Llero's server rejecting the version, not this client being unable to offer it.
    assert _control_handshake(certfile, keyfile, ssl.TLSVersion.TLSv1_1) == "TLSv1.1"
    with pytest.raises(ssl.SSLError):
        _handshake_version(port, ssl.TLSVersion.TLSv1_1)


def _control_handshake(certfile: Path, keyfile: Path, version: ssl.TLSVersion) -> str | None:
    """Run the client handshake against a loopback server that accepts TLS 1.0 and later."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certfile, keyfile)
    server_context.minimum_version = ssl.TLSVersion.TLSv1
    server_context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]

        def accept_one() -> None:
            connection, _ = listener.accept()
            with server_context.wrap_socket(connection, server_side=True):
                pass

        server = threading.Thread(target=accept_one)
        server.start()
        try:
            return _handshake_version(port, version)
        finally:
            server.join(timeout=10)


def _handshake_version(port: int, version: ssl.TLSVersion) -> str | None:
    """Complete a TLS handshake that offers only ``version``; return the version agreed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = version
    context.maximum_version = version
    # Security level 0 lets this client offer TLS 1.1 at all, so a failure is the server's.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as connection,
        context.wrap_socket(connection) as tls,
    ):
        return tls.version()


@pytest.fixture
def captured_server_options(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, workdir: Path
) -> Iterator[dict[str, Any]]:
    """Run `serve` in this process with uvicorn.run replaced, recording its options."""
    init = CliRunner().invoke(cli, ["init"], env={"LLERO_DATA_DIR": str(data_dir)})
    assert init.exit_code == 0, init.output
    options: dict[str, Any] = {}
    monkeypatch.setattr(serving.uvicorn, "run", lambda app, **kwargs: options.update(kwargs))
    monkeypatch.chdir(workdir)
    yield options
    structlog.reset_defaults()
    # The server froze what this test process had made; the collector gets it back.
    gc.unfreeze()


def test_serve_ignores_forwarded_headers(
    captured_server_options: dict[str, Any], data_dir: Path
) -> None:
    result = CliRunner().invoke(cli, ["serve"], env={"LLERO_DATA_DIR": str(data_dir)})

    assert result.exit_code == 0, result.output
    assert captured_server_options["proxy_headers"] is False
    assert "forwarded_allow_ips" not in captured_server_options
    assert captured_server_options["server_header"] is False
    assert captured_server_options["host"] == "127.0.0.1"
    assert captured_server_options["ssl_certfile"] is None


def test_serve_behind_trusted_proxy_binds_public_address(
    captured_server_options: dict[str, Any], data_dir: Path
) -> None:
    environ = {"LLERO_DATA_DIR": str(data_dir), "LLERO_TRUSTED_PROXIES": "10.0.0.1"}

    result = CliRunner().invoke(cli, ["serve", "--host", ALL_INTERFACES], env=environ)

    assert result.exit_code == 0, result.output
    assert captured_server_options["host"] == ALL_INTERFACES
    assert captured_server_options["proxy_headers"] is False


def test_help_lists_every_command(workdir: Path, data_dir: Path) -> None:
    result = run_llero(["--help"], workdir, data_dir)

    assert result.returncode == 0
    assert result.stdout.startswith("Usage: llero [OPTIONS] COMMAND [ARGS]...")
    for name in cli.commands:
        assert f"  {name} " in result.stdout, name


def _all_commands(
    group: click.Group, prefix: list[str]
) -> Iterator[tuple[list[str], click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield [*prefix, name], command
        if isinstance(command, click.Group):
            yield from _all_commands(command, [*prefix, name])


@pytest.mark.parametrize(
    ("path", "command"),
    list(_all_commands(cli, [])),
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_command_help_describes_it(path: list[str], command: click.Command) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="llero")

    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: llero {' '.join(path)} ")
    summary = command.get_short_help_str(limit=200)
    assert summary, f"llero {' '.join(path)} has no help text"
    assert summary.rstrip(".") in " ".join(result.output.split())


def test_version_printed(workdir: Path, data_dir: Path) -> None:
    result = run_llero(["--version"], workdir, data_dir)

    assert result.returncode == 0
    assert result.stdout.startswith("llero, version ")
