"""structlog configuration: JSON lines on stderr, constant event names, bound context."""

from __future__ import annotations

import contextlib
import logging
import sys

import orjson
import structlog


class _StderrLogger:
    """Writes each rendered line to whatever ``sys.stderr`` is *now* (tests swap it)."""

    def msg(self, message: bytes) -> None:
        stream = sys.stderr
        try:
            stream.buffer.write(message + b"\n")
            stream.flush()
        except (AttributeError, ValueError):  # a text-only or closed stream: best effort
            with contextlib.suppress(ValueError):
                print(message.decode(), file=sys.__stderr__)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _factory(*_: object) -> _StderrLogger:
    return _StderrLogger()


def configure(level: str = "info") -> None:
    """Configure structlog once per process; safe to call again (tests, subcommands)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=_factory,
        cache_logger_on_first_use=False,
    )
