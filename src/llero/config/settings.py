"""Settings read from LLERO_* environment variables and an optional .env file.

Every setting is validated when it is loaded, and the unsafe combinations that pydantic cannot see
field by field are rejected by ``check_safe_to_serve``. Errors become one line that names the
variable, so an admin can fix a start-up failure without reading a traceback.
"""

import base64
import ipaddress
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from limits import parse_many
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from llero.config.keyfiles import SYMMETRIC_KEY_BYTES
from llero.egress import DEFAULT_ALLOWED_HOSTS, parse_allowed_endpoint, parse_allowed_host
from llero.errors import InvalidInput, SettingsError
from llero.identity.emails import normalize_email
from llero.identity.policy import MAXIMUM_LENGTH, MFA_MINIMUM_LENGTH, check_minimum_length

ENV_PREFIX = "LLERO_"

# Variables under this prefix belong to the test suite, not to the server.
TEST_ENV_PREFIX = "LLERO_TEST_"

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class VaultBackend(StrEnum):
    BUILTIN = "builtin"
    HASHICORP = "hashicorp"
    AWS = "aws"


class KekSourceKind(StrEnum):
    FILE = "file"  # LLERO_MASTER_KEY, or else keys/master.key
    HASHICORP_TRANSIT = "hashicorp_transit"
    AWS_KMS = "aws_kms"


class HashiCorpAuthKind(StrEnum):
    TOKEN = "token"  # noqa: S105 - the name of an auth method, not a token
    APPROLE = "approle"


# Vault mount paths and path prefixes: path segments of letters, digits and - _ . separated by /.
MOUNT_PATTERN = r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*"
NAME_PATTERN = r"[A-Za-z0-9_.-]{1,128}"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class SmtpSecurity(StrEnum):
    """The protection of the connection to the SMTP relay."""

    # Plain SMTP upgraded with STARTTLS before anything is sent; fails if the relay cannot.
    STARTTLS = "starttls"
    # TLS from the first byte ("implicit TLS", RFC 8314), usually on port 465.
    TLS = "tls"
    # No encryption: allowed only for a relay on 127.0.0.1 or ::1.
    NONE = "none"


DEFAULT_SMTP_PORTS = {SmtpSecurity.STARTTLS: 587, SmtpSecurity.TLS: 465, SmtpSecurity.NONE: 25}


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every setting Llero reads; the environment variable is the field name, upper-cased,
    with the LLERO_ prefix."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_default=True,
    )

    environment: Environment = Environment.PRODUCTION
    debug: bool = False

    data_dir: Path = Path("data")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; SQLite under data_dir when unset.",
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Server processes sharing the port. More than one needs rate limits in Redis (or none), no
    # log file, and the vault's master key at start; `llero serve` names the first one missing.
    workers: int = Field(default=1, ge=1, le=32)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    trusted_proxies: CommaList = Field(default_factory=list)
    allowed_hosts: CommaList = Field(default_factory=lambda: ["127.0.0.1", "localhost", "[::1]"])
    allowed_origins: CommaList = Field(default_factory=list)

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_json_depth: int = Field(default=32, ge=4, le=256)
    max_import_specs: int = Field(default=5000, ge=1, le=100_000)

    # The vault's base key-encryption key, base64 of 32 random bytes. When set, the vault uses it
    # instead of data/keys/master.key, so the key can stay out of the data directory and backups.
    master_key: SecretStr | None = Field(default=None, repr=False)
    # The key that encrypts backups, base64 of 32 random bytes, in place of data/keys/backup.key.
    backup_key: SecretStr | None = Field(default=None, repr=False)

    # Where secret values live, and where the base KEK comes from. Metadata, grants and audit
    # records stay in the database either way (see docs/vault-backends.md).
    vault_backend: VaultBackend = VaultBackend.BUILTIN
    vault_kek_source: KekSourceKind = KekSourceKind.FILE

    # HashiCorp Vault, for LLERO_VAULT_BACKEND=hashicorp or
    # LLERO_VAULT_KEK_SOURCE=hashicorp_transit.
    hashicorp_url: str | None = None
    hashicorp_auth: HashiCorpAuthKind = HashiCorpAuthKind.TOKEN
    hashicorp_token: SecretStr | None = Field(default=None, repr=False)
    hashicorp_token_file: Path | None = None
    hashicorp_role_id: str | None = Field(default=None, max_length=256)
    hashicorp_secret_id: SecretStr | None = Field(default=None, repr=False)
    hashicorp_secret_id_file: Path | None = None
    hashicorp_approle_mount: str = Field(default="approle", pattern=MOUNT_PATTERN)
    hashicorp_kv_mount: str = Field(default="secret", pattern=MOUNT_PATTERN)
    hashicorp_path_prefix: str = Field(default="llero", pattern=MOUNT_PATTERN)
    hashicorp_transit_mount: str = Field(default="transit", pattern=MOUNT_PATTERN)
    hashicorp_transit_key: str = Field(default="llero", pattern=NAME_PATTERN)
    hashicorp_ca_cert: Path | None = None
    hashicorp_timeout_seconds: int = Field(default=5, ge=1, le=60)

    # AWS, for LLERO_VAULT_BACKEND=aws or LLERO_VAULT_KEK_SOURCE=aws_kms. Credentials come from
    # boto3's own chain (AWS_* variables, shared files, an instance or task role).
    aws_region: str | None = Field(default=None, pattern=r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
    aws_endpoint_url: str | None = None
    aws_secrets_prefix: str = Field(default="llero/", pattern=r"[A-Za-z0-9/_+=.@-]{0,256}")
    aws_kms_key_id: str | None = Field(default=None, min_length=1, max_length=2048)
    aws_timeout_seconds: int = Field(default=5, ge=1, le=60)

    # Where provider calls and webhook tools may go (llero.egress). Hosts are reached over
    # https at public addresses only. Endpoints are exact host:port pairs that may be private or
    # loopback, such as a local Ollama at 127.0.0.1:11434.
    egress_allowed_hosts: CommaList = Field(default_factory=lambda: list(DEFAULT_ALLOWED_HOSTS))
    egress_allowed_endpoints: CommaList = Field(default_factory=list)

    # Security alerts: a signed JSON POST to this https URL (see llero.incident.alerts).
    alert_webhook_url: str | None = None
    # The HMAC key of the alert signatures, at least 32 characters; or data/keys/alert-webhook.key.
    alert_webhook_secret: SecretStr | None = Field(default=None, repr=False)
    # Loopback host:port endpoints that may receive alerts over plain http, for a local relay.
    alert_webhook_loopback: CommaList = Field(default_factory=list)
    # A burst of this many failed sign-ins within the window raises one alert.
    alert_sign_in_failures: int = Field(default=20, ge=2, le=100_000)
    alert_sign_in_window_seconds: int = Field(default=300, ge=10, le=86_400)
    # While mail is on (smtp_host), alerts are also mailed to every active admin, unless false.
    alert_mail: bool = True

    log_level: str = "info"
    log_format: LogFormat = LogFormat.JSON
    # A file that gets JSON lines besides standard error, created mode 0600. It is rotated when
    # it would pass the size or the age below, and that many rotated files are kept.
    log_file: Path | None = None
    log_file_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=1024**3)
    log_file_rotate_hours: int = Field(default=24, ge=1, le=366 * 24)
    log_file_backups: int = Field(default=14, ge=1, le=1000)

    # Audit records older than this many days are removed by `llero audit purge` and
    # POST /api/audit/purge; nothing removes them on its own.
    audit_retention_days: int = Field(default=365, ge=1, le=100 * 366)

    # Rate limits, each a `limits` expression such as "10/minute;50/hour" (see llero.web.ratelimit).
    rate_limit_enabled: bool = True
    # memory:// for one process; redis://host:port/db when several processes share the load.
    rate_limit_storage: SecretStr = Field(default=SecretStr("memory://"), repr=False)
    rate_limit_key_prefix: str = Field(default="llero", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    rate_limit_address: str = "1200/minute"
    rate_limit_auth: str = "10/minute;60/hour"
    rate_limit_read: str = "600/minute"
    rate_limit_write: str = "120/minute"
    rate_limit_export: str = "10/minute"
    rate_limit_agent: str = "60/minute"

    # Sign-in. The access token limits match what identity.signing_keys keeps retired keys for.
    access_token_minutes: int = Field(default=15, ge=1, le=60)
    clock_skew_seconds: int = Field(default=30, ge=0, le=300)
    # NIST SP 800-63B (revision 3, sections 4.2.2 and 4.2.3) requires AAL2 reauthentication
    # after 30 minutes of inactivity and at least every 12 hours; the defaults are those limits.
    refresh_idle_minutes: int = Field(default=30, ge=5, le=30 * 24 * 60)
    refresh_absolute_hours: int = Field(default=12, ge=1, le=90 * 24)
    mfa_required_for_admins: bool = True
    mfa_required_for_everyone: bool = False
    signup_open: bool = False
    password_min_length: int = Field(default=15, ge=MFA_MINIMUM_LENGTH, le=MAXIMUM_LENGTH)
    # Failed sign-ins (wrong password or wrong second factor), counted per account and per client
    # address. After the "delay" count each further failure makes the next attempt wait, from
    # 1 second doubling up to 30; at each multiple of the "lock" count the account or address is
    # locked, first for signin_lockout_minutes and twice as long at each further lock, up to a
    # day. Counts start again after signin_failure_window_hours, or for an account at its next
    # successful sign-in. An address gets more room than an account, because many users may
    # share one address behind NAT or a proxy.
    signin_account_delay_after: int = Field(default=3, ge=1, le=1000)
    signin_account_lock_after: int = Field(default=10, ge=2, le=1000)
    signin_address_delay_after: int = Field(default=20, ge=1, le=100_000)
    signin_address_lock_after: int = Field(default=100, ge=2, le=100_000)
    signin_lockout_minutes: int = Field(default=15, ge=1, le=24 * 60)
    signin_failure_window_hours: int = Field(default=24, ge=1, le=30 * 24)

    # The address users open Llero at, such as https://llero.example.com; links in mail start
    # with it. The validators below read it, so it is declared before the mail settings.
    public_url: str | None = None

    # Outgoing mail; mail is off while smtp_host is unset.
    smtp_host: str | None = None
    # None picks the usual port of smtp_security: 587, 465 or 25.
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_security: SmtpSecurity = SmtpSecurity.STARTTLS
    smtp_username: str | None = Field(default=None, max_length=256)
    smtp_password: SecretStr | None = Field(default=None, repr=False)
    smtp_from: str | None = None
    # A PEM file of certificate authorities that sign the relay's certificate, for a relay with a
    # private CA; the system's trust store is used when unset.
    smtp_ca_file: Path | None = None
    smtp_timeout_seconds: int = Field(default=10, ge=1, le=120)

    @field_validator(
        "trusted_proxies",
        "allowed_hosts",
        "allowed_origins",
        "alert_webhook_loopback",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins_are_exact(cls, value: list[str]) -> list[str]:
        for origin in value:
            _check_origin(origin)
        # Browsers send the scheme and host in lower case, so an upper-case entry could never match.
        return [origin.lower() for origin in value]

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts_are_names(cls, value: list[str]) -> list[str]:
        for host in value:
            if "*" in host or "/" in host or not host:
                raise ValueError(f"{host!r} must be a plain host name, without wildcards")
        return [host.lower() for host in value]

    @field_validator("egress_allowed_hosts", "egress_allowed_endpoints", mode="before")
    @classmethod
    def _egress_comma_separated(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("egress_allowed_hosts")
    @classmethod
    def _egress_hosts_are_names(cls, value: list[str]) -> list[str]:
        return [parse_allowed_host(host) for host in value]

    @field_validator("egress_allowed_endpoints")
    @classmethod
    def _egress_endpoints_are_exact(cls, value: list[str]) -> list[str]:
        return [str(parse_allowed_endpoint(item)) for item in value]

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        levels = {"debug", "info", "warning", "error", "critical"}
        if value.lower() not in levels:
            raise ValueError(f"must be one of {', '.join(sorted(levels))}")
        return value.lower()

    @field_validator(
        "rate_limit_address",
        "rate_limit_auth",
        "rate_limit_read",
        "rate_limit_write",
        "rate_limit_export",
        "rate_limit_agent",
    )
    @classmethod
    def _limits_parse(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate limit such as 10/minute or 10/minute;100/hour"
            ) from None
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _storage_is_known(cls, value: SecretStr) -> SecretStr:
        # The message never repeats the URL, which may contain a Redis password.
        scheme = value.get_secret_value().partition("://")[0]
        if scheme not in {"memory", "redis", "rediss"}:
            raise ValueError("must be memory:// or a redis:// or rediss:// URL")
        return value

    @field_validator("refresh_absolute_hours")
    @classmethod
    def _absolute_covers_idle(cls, value: int, info: ValidationInfo) -> int:
        idle = info.data.get("refresh_idle_minutes")
        if idle is not None and idle > value * 60:
            needed = -(-idle // 60)
            raise ValueError(
                f"must be at least {needed} hours, because a session may not stay idle "
                f"(LLERO_REFRESH_IDLE_MINUTES, {idle} minutes) longer than it may last"
            )
        return value

    @field_validator("password_min_length")
    @classmethod
    def _length_fits_mfa(cls, value: int, info: ValidationInfo) -> int:
        try:
            check_minimum_length(
                value, mfa_required=bool(info.data.get("mfa_required_for_everyone"))
            )
        except SettingsError as error:
            raise ValueError(error.message) from None
        return value

    @field_validator("signin_account_lock_after", "signin_address_lock_after")
    @classmethod
    def _lock_after_delay(cls, value: int, info: ValidationInfo) -> int:
        delay_name = info.field_name.replace("lock_after", "delay_after") if info.field_name else ""
        delay = info.data.get(delay_name)
        if delay is not None and value <= delay:
            raise ValueError(
                f"must be greater than LLERO_{delay_name.upper()} ({delay}), because delays come "
                "before the lock"
            )
        return value

    @field_validator("master_key", "backup_key")
    @classmethod
    def _key_is_256_bits(cls, value: SecretStr | None) -> SecretStr | None:
        # The messages never contain the value, which is a key.
        if value is None:
            return None
        try:
            material = base64.b64decode(value.get_secret_value().strip(), validate=True)
        except ValueError:
            raise ValueError("must be base64, for example from `openssl rand -base64 32`") from None
        if len(material) != SYMMETRIC_KEY_BYTES:
            raise ValueError(f"must decode to {SYMMETRIC_KEY_BYTES} bytes, not {len(material)}")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url_is_a_base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an address like https://llero.example.com")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not have a query, fragment or user")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("must use https unless it is a loopback address")
        return value.rstrip("/")

    @field_validator("smtp_host")
    @classmethod
    def _mail_needs_public_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be a host name or address; leave it unset to turn mail off")
        if value is not None and info.data.get("public_url") is None:
            raise ValueError("mail needs LLERO_PUBLIC_URL, the address that links in mail open")
        return value

    @field_validator("smtp_security")
    @classmethod
    def _plain_smtp_only_on_loopback(
        cls, value: SmtpSecurity, info: ValidationInfo
    ) -> SmtpSecurity:
        host = info.data.get("smtp_host")
        if value is SmtpSecurity.NONE and host is not None and not _is_loopback_address(host):
            raise ValueError(
                "none sends mail and the SMTP password unencrypted, so it is allowed only for a "
                "relay on 127.0.0.1 or ::1; use starttls or tls"
            )
        return value

    @field_validator("smtp_password")
    @classmethod
    def _credentials_in_pairs(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        # The messages never contain the value, which is a password.
        has_username = info.data.get("smtp_username") is not None
        if value is None and has_username:
            raise ValueError("is required when LLERO_SMTP_USERNAME is set")
        if value is not None and not has_username:
            raise ValueError("needs LLERO_SMTP_USERNAME as well")
        return value

    @field_validator("smtp_from")
    @classmethod
    def _sender_is_an_address(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("smtp_host") is not None:
                raise ValueError("is required when LLERO_SMTP_HOST is set")
            return None
        try:
            normalize_email(value)
        except InvalidInput:
            raise ValueError("must be an email address such as llero@example.com") from None
        return value

    @field_validator("smtp_ca_file")
    @classmethod
    def _ca_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value

    @property
    def mail_enabled(self) -> bool:
        return self.smtp_host is not None

    @property
    def resolved_smtp_port(self) -> int:
        return self.smtp_port or DEFAULT_SMTP_PORTS[self.smtp_security]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'llero.db').resolve()}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_certfile is not None and self.tls_keyfile is not None


def _check_origin(origin: str) -> None:
    """Reject wildcards and anything but scheme://host[:port]; browsers send exactly that."""
    if origin == "*" or "*" in origin:
        raise ValueError("wildcard origins are not allowed; list each origin exactly")
    parts = urlsplit(origin)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
    if parts.path or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{origin!r} must not have a path, query, fragment or user")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_NAMES:
        raise ValueError(f"{origin!r} must use https unless it is a loopback origin")


def _reject_unknown_variables(environ: dict[str, str]) -> None:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for name in sorted(environ):
        if (
            name.startswith(ENV_PREFIX)
            and not name.startswith(TEST_ENV_PREFIX)
            and name not in known
        ):
            raise SettingsError(f"unknown setting {name}; check the spelling against the README")


def _describe(error: ValidationError) -> str:
    first = error.errors(include_input=False, include_url=False)[0]
    location = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        # Only .env gets here, because unknown variables in the environment are rejected by name
        # first. pydantic-settings reports the .env name as written, prefix included or not.
        return f"unknown setting {location.upper()} in .env; check the spelling against the README"
    variable = ENV_PREFIX + location.upper() if location else "settings"
    message = first["msg"].removeprefix("Value error, ")
    return f"invalid setting {variable}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Load settings from the environment and .env; raise SettingsError with one line on failure."""
    _reject_unknown_variables(dict(os.environ))
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def _is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or _is_loopback_address(host)


def _is_loopback_address(host: str) -> bool:
    """Return whether ``host`` is a loopback IP address; names, even localhost, are not."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_safe_to_serve(settings: Settings) -> None:
    """Reject combinations that are valid field by field but unsafe to serve with."""
    if settings.debug and settings.environment is not Environment.DEVELOPMENT:
        raise SettingsError(
            "invalid setting LLERO_DEBUG: debug is allowed only with LLERO_ENVIRONMENT=development"
        )
    if (settings.tls_certfile is None) != (settings.tls_keyfile is None):
        raise SettingsError(
            "invalid setting LLERO_TLS_CERTFILE: set both LLERO_TLS_CERTFILE and LLERO_TLS_KEYFILE"
        )
    check_vault_backends(settings)
    if (
        not _is_loopback(settings.host)
        and not settings.tls_enabled
        and not settings.trusted_proxies
    ):
        raise SettingsError(
            f"invalid setting LLERO_HOST: listening on {settings.host} beyond loopback needs TLS "
            "(LLERO_TLS_CERTFILE and LLERO_TLS_KEYFILE) or a TLS-terminating proxy in "
            "LLERO_TRUSTED_PROXIES"
        )
    if settings.workers > 1:
        _check_workers(settings)
    if settings.signup_open and not settings.mail_enabled:
        raise SettingsError(
            "invalid setting LLERO_SIGNUP_OPEN: sign-up sends a verification mail, so it needs "
            "LLERO_SMTP_HOST"
        )


def _check_workers(settings: Settings) -> None:
    storage = settings.rate_limit_storage.get_secret_value()
    if settings.rate_limit_enabled and storage.startswith("memory:"):
        raise SettingsError(
            "invalid setting LLERO_WORKERS: with several workers, rate limits need a shared "
            "store; set LLERO_RATE_LIMIT_STORAGE to a redis:// URL"
        )
    if settings.log_file is not None:
        raise SettingsError(
            "invalid setting LLERO_WORKERS: several workers cannot rotate one LLERO_LOG_FILE; "
            "unset it and collect standard error, or run one worker"
        )


def check_vault_backends(settings: Settings) -> None:
    """Reject a vault backend or KEK source whose connection settings are missing or unsafe."""
    uses_hashicorp = (
        settings.vault_backend is VaultBackend.HASHICORP
        or settings.vault_kek_source is KekSourceKind.HASHICORP_TRANSIT
    )
    uses_aws = (
        settings.vault_backend is VaultBackend.AWS
        or settings.vault_kek_source is KekSourceKind.AWS_KMS
    )
    if settings.vault_kek_source is not KekSourceKind.FILE and settings.master_key is not None:
        raise SettingsError(
            "invalid setting LLERO_MASTER_KEY: it cannot be used with "
            f"LLERO_VAULT_KEK_SOURCE={settings.vault_kek_source}; unset one of them"
        )
    if uses_hashicorp:
        _check_hashicorp(settings)
    if uses_aws:
        _check_aws(settings)


def _check_hashicorp(settings: Settings) -> None:
    if not settings.hashicorp_url:
        raise SettingsError("invalid setting LLERO_HASHICORP_URL: set the Vault server's URL")
    _check_service_url("LLERO_HASHICORP_URL", settings.hashicorp_url)
    if settings.hashicorp_auth is HashiCorpAuthKind.TOKEN:
        _check_one_of(
            "LLERO_HASHICORP_TOKEN", settings.hashicorp_token, settings.hashicorp_token_file
        )
        return
    if not settings.hashicorp_role_id:
        raise SettingsError(
            "invalid setting LLERO_HASHICORP_ROLE_ID: AppRole auth needs the role id"
        )
    _check_one_of(
        "LLERO_HASHICORP_SECRET_ID", settings.hashicorp_secret_id, settings.hashicorp_secret_id_file
    )


def _check_aws(settings: Settings) -> None:
    if not settings.aws_region:
        raise SettingsError(
            "invalid setting LLERO_AWS_REGION: set the AWS region, such as eu-west-1"
        )
    if settings.aws_endpoint_url:
        _check_service_url("LLERO_AWS_ENDPOINT_URL", settings.aws_endpoint_url)
    if settings.vault_kek_source is KekSourceKind.AWS_KMS and not settings.aws_kms_key_id:
        raise SettingsError(
            "invalid setting LLERO_AWS_KMS_KEY_ID: LLERO_VAULT_KEK_SOURCE=aws_kms needs a KMS key"
        )


def _check_one_of(variable: str, value: SecretStr | None, path: Path | None) -> None:
    if (value is None) == (path is None):
        raise SettingsError(
            f"invalid setting {variable}: set either {variable} or {variable}_FILE, not both"
            if value is not None
            else f"invalid setting {variable}: set {variable} or {variable}_FILE"
        )


def _check_service_url(variable: str, url: str) -> None:
    """Accept https, or http to a loopback address, so no credential crosses a network in clear."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise SettingsError(f"invalid setting {variable}: must be a URL like https://host:port")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise SettingsError(
            f"invalid setting {variable}: must not contain a user, query or fragment"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise SettingsError(
            f"invalid setting {variable}: must use https unless the host is loopback"
        )
