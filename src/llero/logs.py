"""Structured logging: JSON lines (or console lines in development) through structlog.

Each request binds its request id with ``structlog.contextvars`` so every line logged while it is
handled carries the same id as the error body the client sees.
"""

import logging
import sys

import structlog

from llero.config.settings import LogFormat, Settings


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the call.

    Binding the stream object at configure time breaks logging once that object is replaced and
    closed (test runners and embedding servers do both), and a failing log call must never turn
    an error response into a crash.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def ensure_logging(settings: Settings) -> None:
    """Configure logging unless the process already did, so an embedded app never falls back to
    structlog's development defaults, which print tracebacks with local variables."""
    if not structlog.is_configured():
        configure_logging(settings)


def configure_logging(settings: Settings) -> None:
    renderer: structlog.types.Processor
    if settings.log_format is LogFormat.CONSOLE:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
