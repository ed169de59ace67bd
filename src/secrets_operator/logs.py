"""Structured logging (JSON or text) that cannot carry Secret data.

Log records carry names, reasons and counts as ``extra`` fields; the formatters print those
fields and nothing else. Libraries that could print payloads are silenced below WARNING:
kubernetes_asyncio's ``rest`` logger writes whole response bodies (Secret data included) at
DEBUG, so it is pinned to WARNING whatever LOG_LEVEL says.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import traceback
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}

#: Loggers that may print request or response payloads at DEBUG.
_PAYLOAD_LOGGERS = (
    "kubernetes_asyncio",
    "kubernetes_asyncio.client.rest",
    "aiohttp.client",
    "aiohttp.access",
)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {key: value for key, value in record.__dict__.items() if key not in _STANDARD}
    if record.exc_info and record.exc_info[0] is not None:
        # The exception's type and where it was raised, never its message: messages of parsing
        # and validation errors can quote their input.
        fields["error_type"] = record.exc_info[0].__name__
        fields["traceback"] = "".join(traceback.format_tb(record.exc_info[2])).strip()
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC).strftime("%H:%M:%S.%f")[:-3]
        extras = " ".join(f"{key}={value}" for key, value in _fields(record).items())
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        return f"{line} {extras}".rstrip()


def configure(*, level: str = "INFO", fmt: str = "json") -> None:
    """Install the formatter on the root logger (stderr) and silence payload-printing loggers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
