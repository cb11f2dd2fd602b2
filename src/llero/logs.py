"""Structured logging: JSON lines (or console lines in development) through structlog.

Each request binds its request id with ``structlog.contextvars`` so every line logged while it is
handled carries the same id as the error body the client sees. structlog events and standard
library records (uvicorn, SQLAlchemy) go through the same formatter, which turns exceptions into
text and then removes secrets (``llero.log_redaction``) before any handler writes a byte.

Standard error gets the configured format. ``LLERO_LOG_FILE`` adds a file that always gets JSON
lines, rotated by size and by age, each file created with mode 0600.
"""

import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

import structlog
import structlog.testing

from llero.config.settings import LogFormat, Settings
from llero.errors import SettingsError
from llero.log_redaction import redact_event

# The handlers this module installed on the root logger, replaced when logging is configured again.
_installed: list[logging.Handler] = []


class _CurrentStderrHandler(logging.StreamHandler[IO[str]]):
    """Writes to whatever ``sys.stderr`` is at the time of the call.

    Binding the stream object at configure time breaks logging once that object is replaced and
    closed (test runners and embedding servers do both), and a failing log call must never turn
    an error response into a crash.
    """

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


class _LevelFilter(logging.Filter):
    """Passes Llero's records from LLERO_LOG_LEVEL up, and other libraries' from warning up.

    Other libraries were heard only from warning up before Llero configured logging, and some
    set their own loggers to info (alembic) or log every outbound request at info (httpx).
    A logger's own level does not stop records that its children propagate, so the handlers
    filter.
    """

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name == "llero" or record.name.startswith("llero.")
        return record.levelno >= (self.level if ours else max(self.level, logging.WARNING))


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A log file that rotates at ``max_bytes`` or after ``interval_seconds``, whichever is first.

    Rotated files are named ``.1`` (newest) to ``.<backup_count>``, and older ones are deleted.
    The file is opened without following a symbolic link and set to mode 0600. Rotation renames
    files, so every rotated file keeps that mode.

    NOTE: rotation is safe within one process only. Several Llero processes need one file each,
    or a log collector that reads standard error.
    """

    def __init__(
        self, path: Path, *, max_bytes: int, interval_seconds: int, backup_count: int
    ) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")
        self.interval_seconds = interval_seconds
        self.rollover_at = time.time() + interval_seconds

    def _open(self) -> IO[str]:  # type: ignore[override] # the stdlib annotates a subclass
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(self.baseFilename, flags, 0o600)
        # The mode given to open applies only to a new file; an existing one is narrowed too.
        os.fchmod(descriptor, 0o600)
        return os.fdopen(descriptor, "a", encoding=self.encoding, errors=self.errors)

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 - stdlib name
        if time.time() >= self.rollover_at:
            return True
        return bool(super().shouldRollover(record))

    def doRollover(self) -> None:  # noqa: N802 - stdlib name
        super().doRollover()
        self.rollover_at = time.time() + self.interval_seconds


def _hand_to_handlers(logger: object, method: str, event: structlog.types.EventDict) -> Any:
    """Pass the event to the standard library handlers, or render it redacted in place.

    ``structlog.testing.capture_logs`` restores the processors but not the logger factory, so
    this chain can end up in front of structlog's default print logger; that logger gets a
    finished, redacted JSON line instead of a crash.
    """
    if isinstance(logger, logging.Logger):
        return structlog.stdlib.ProcessorFormatter.wrap_for_formatter(logger, method, event)
    event = structlog.processors.format_exc_info(logger, method, event)
    return _JSON(logger, method, redact_event(logger, method, event))


_JSON = structlog.processors.JSONRenderer()


def ensure_logging(settings: Settings) -> None:
    """Configure logging unless the process already did, so an embedded app never falls back to
    structlog's development defaults, which print tracebacks with local variables."""
    if not _configured_by_llero():
        configure_logging(settings)


def _configured_by_llero() -> bool:
    # structlog.testing.capture_logs leaves structlog marked as configured, with its default
    # logger printing to stdout, so only Llero's own processors or a capture in progress count.
    if not structlog.is_configured():
        return False
    processors = structlog.get_config()["processors"]
    return _hand_to_handlers in processors or any(
        isinstance(processor, structlog.testing.LogCapture) for processor in processors
    )


def _formatter(renderer: structlog.types.Processor) -> structlog.stdlib.ProcessorFormatter:
    return structlog.stdlib.ProcessorFormatter(
        # Standard library records get the fields that structlog events got on the way in.
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
    )


def _file_handler(settings: Settings, path: Path) -> logging.Handler:
    try:
        handler = PrivateRotatingFileHandler(
            path,
            max_bytes=settings.log_file_max_bytes,
            interval_seconds=settings.log_file_rotate_hours * 3600,
            backup_count=settings.log_file_backups,
        )
    except OSError as error:
        raise SettingsError(
            f"invalid setting LLERO_LOG_FILE: cannot open {path} ({error.strerror}); "
            "its directory must exist and the file must not be a symbolic link"
        ) from None
    handler.setFormatter(_formatter(structlog.processors.JSONRenderer()))
    return handler


def _install(handlers: list[logging.Handler], level: int) -> None:
    root = logging.getLogger()
    for old in _installed:
        root.removeHandler(old)
        old.close()
    _installed[:] = handlers
    for handler in handlers:
        handler.addFilter(_LevelFilter(level))
        root.addHandler(handler)
    root.setLevel(level)


def configure_logging(settings: Settings) -> None:
    """Send structlog and standard library logging, redacted, to stderr and LLERO_LOG_FILE.

    Raises SettingsError when the log file cannot be opened.
    """
    renderer: structlog.types.Processor
    if settings.log_format is LogFormat.CONSOLE:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]

    stderr = _CurrentStderrHandler()
    stderr.setFormatter(_formatter(renderer))
    handlers: list[logging.Handler] = [stderr]
    if settings.log_file is not None:
        handlers.append(_file_handler(settings, settings.log_file))
    _install(handlers, level)

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _hand_to_handlers,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


def close_logging() -> None:
    """Detach and close the handlers ``configure_logging`` installed, flushing the log file."""
    _install([], logging.WARNING)
