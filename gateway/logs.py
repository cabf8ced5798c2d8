"""Structured logs: one JSON object per line, phone numbers masked in every message."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson
from aiohttp.http_exceptions import HttpProcessingError

from gateway.privacy import mask_phones_in


class JsonFormatter(logging.Formatter):
    """JSON lines with time, level, logger and message; personal data never printed in full."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_phones_in(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = mask_phones_in(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


class MalformedRequestFilter(logging.Filter):
    """aiohttp answers a malformed request (a header over 8 KiB, a broken request line) with 400
    itself, but logs it at ERROR with a traceback: any client could fill the log with them. Such
    a record becomes one INFO line naming what was wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = f"{record.getMessage()}: malformed request refused with {exc.code}: {exc.message}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration step is noise
