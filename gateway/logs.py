"""Structured logs: one JSON object per line, phone numbers masked in every message."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

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


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration step is noise
