"""What partners' file imports did, for `/metrics` and `/healthz`: one `FileStats` per running
gateway (per Prometheus registry), shared by every door that imports files (the API, the drop
folder, the desk's upload), so each import is counted once whichever door took it."""

from __future__ import annotations

import weakref
from datetime import datetime
from typing import Any

from prometheus_client import Counter

from adapters.partner_files.importing import ImportSummary

_BY_REGISTRY: weakref.WeakKeyDictionary[Any, FileStats] = weakref.WeakKeyDictionary()


class FileStats:
    """Counters in the gateway's registry and the last import, for the health probe."""

    def __init__(self, registry: Any) -> None:
        self.imports = Counter(
            "gateway_file_imports_total",
            "Partners' files by partner, the way they came (api, desk, drop, cli) and outcome (imported, refused)",
            ["partner", "via", "outcome"],
            registry=registry,
        )
        self.rows = Counter(
            "gateway_file_rows_total",
            "Rows of partners' files by partner and result (accepted, held, rejected, repeated, unreadable)",
            ["partner", "result"],
            registry=registry,
        )
        self.count = 0
        self.refused = 0
        self.last_import_at: datetime | None = None
        self.last_error: str | None = None

    def imported(self, summary: ImportSummary, via: str, now: datetime) -> None:
        self.imports.labels(summary.partner, via, "imported").inc()
        for result in ("accepted", "held", "rejected", "repeated", "unreadable"):
            n = getattr(summary, result)
            if n:
                self.rows.labels(summary.partner, result).inc(n)
        self.count += 1
        self.last_import_at = now

    def refused_file(self, partner: str, via: str, why: str) -> None:
        self.imports.labels(partner, via, "refused").inc()
        self.refused += 1
        self.last_error = f"{partner}: {why}"[:300]

    def health(self) -> dict[str, Any]:
        return {
            "imports": self.count,
            "refused_files": self.refused,
            "last_import_at": self.last_import_at.isoformat() if self.last_import_at else None,
            "last_error": self.last_error,
        }


def stats_for(registry: Any) -> FileStats:
    """The gateway's one FileStats (made on first use)."""
    found = _BY_REGISTRY.get(registry)
    if found is None:
        found = _BY_REGISTRY[registry] = FileStats(registry)
    return found
