"""`[sinks.folder]`: each batch written as one file in `path`, as CSV (UTF-8 with BOM, `;`, the
columns of `meter-gateway export`) or XML, named `readings-<UTC time written>-<batch id>.csv`.

A file is written under a temporary name (`.<name>.tmp`, which importers should skip), flushed
to disk and renamed into place, then the folder itself is flushed: an importer sees a whole file
or none, and the rename is the acknowledgement. A batch offered again after a crash is written
under its own name again, with the same readings.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from adapters.billing.sinks.config import FolderSinkConfig
from gateway.billing_delivery import Batch
from gateway.exporting import FIELDS, cell


def render_csv(batch: Batch) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, delimiter=";", lineterminator="\r\n")
    writer.writeheader()
    for item in batch.readings:
        writer.writerow({k: cell(k, item.get(k)) for k in FIELDS})
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def render_xml(batch: Batch) -> bytes:
    root = ElementTree.Element("readings", batch_id=batch.id, count=str(len(batch.readings)))
    for item in batch.readings:
        node = ElementTree.SubElement(root, "reading")
        for key in FIELDS:
            value: Any = item.get(key)
            child = ElementTree.SubElement(node, key)
            if key == "reasons":
                for code in value:
                    ElementTree.SubElement(child, "reason").text = code
            elif value is not None:
                child.text = str(cell(key, value))
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


class FolderSink:
    def __init__(self, settings: FolderSinkConfig) -> None:
        self.settings = settings
        self.folder = Path(settings.path)

    def file_name(self, batch: Batch, now: datetime) -> str:
        return f"readings-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{batch.id}.{self.settings.format}"

    async def deliver(self, batch: Batch) -> None:
        data = render_csv(batch) if self.settings.format == "csv" else render_xml(batch)
        await asyncio.to_thread(self._write, batch, data)

    def _write(self, batch: Batch, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = sorted(self.folder.glob(f"readings-*-{batch.id}.{self.settings.format}"))
        # The batch again (its acknowledgement was lost in a crash): the same file, not a second one.
        name = existing[0].name if existing else self.file_name(batch, datetime.now(UTC))
        tmp = self.folder / f".{name}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / name)
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    async def close(self) -> None:
        return None
