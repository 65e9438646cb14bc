"""Structured logging: one JSON object per line, with the fields passed as `extra=`.

Every line the gateway writes is JSON (issue 22): its own `moeprune.*` loggers
(`configure_logging`), and uvicorn's loggers and anything else that logs at
warning or above (asyncio, httpx), through the logging config uvicorn is
started with (`uvicorn_log_config`). uvicorn applies its own text config when
it starts, after the app exists, so only that argument can replace it.
"""

from __future__ import annotations

import json
import logging
import sys
import time

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged. uvicorn adds
# `color_message`, the same message with terminal colour codes: noise in a JSON line.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


# What `json.dumps(entry, default=str)` builds on every call, built once (one line per request: it adds up).
_encode = json.JSONEncoder(default=str).encode


class JsonFormatter(logging.Formatter):
    # The formatted second, remembered: one strftime per second instead of per line. One tuple, replaced
    # whole, so a formatter shared by threads never pairs a second with another second's text.
    _second: tuple[int, str] = (-1, "")

    def _time(self, created: float) -> str:
        second, text = self._second
        if int(created) != second:
            second = int(created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return text

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self._time(record.created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)


def configure_logging(level: str = "INFO") -> None:
    """Send the gateway's `moeprune.*` loggers to stderr as JSON lines (idempotent)."""
    logger = logging.getLogger("moeprune")
    logger.setLevel(level.upper())
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    logger.propagate = False


def uvicorn_log_config(stream=None) -> dict:
    """The `log_config` for `uvicorn.run`: uvicorn's loggers, and the root logger's warnings, as JSON lines.

    Levels are left to uvicorn (`log_level`); `uvicorn.error` propagates to `uvicorn`, which holds the handler.
    `stream` defaults to stderr (tests pass their own)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,  # the gateway's moeprune.* loggers are configured already
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr" if stream is None else stream,
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["json"], "propagate": False},
            "uvicorn.error": {"propagate": True},
            "uvicorn.access": {"handlers": ["json"], "propagate": False},
        },
        "root": {"handlers": ["json"], "level": "WARNING"},
    }
