"""The folder sink: batches as whole CSV or XML files, committed once written (role billing) or
copied once billing committed them through the pull API (role copy). Both databases."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from xml.etree import ElementTree

from adapters.billing.sinks.config import FolderSinkConfig
from adapters.billing.sinks.folder import FolderSink
from gateway.billing_delivery import Batch
from tests.adapters.billing.rigs import gateway_with, push_readings, sla, until
from tests.conftest import BILLING_TOKEN, FakeClock


def _folder(tmp_path: Path, **keys: object) -> dict[str, object]:
    settings = FolderSinkConfig.model_validate(
        {"enabled": True, "path": str(tmp_path / "outbox"), "interval_seconds": 0.05, "batch_size": 4, **keys}
    )
    return {"folder": settings}


def _csv_ids(path: Path) -> list[int]:
    raw = path.read_bytes()
    assert raw.startswith("\ufeff".encode())  # opens in Excel as is
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert all(r["verdict"] == "accepted" and r["account"].startswith("100000") for r in rows)
    return [int(r["reading_id"]) for r in rows]


async def test_csv_files_are_billing_and_commit_their_readings(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with gateway_with(db_url, tmp_path, clock, _folder(tmp_path)) as running:
        ids = await push_readings(running, 10)

        async def drained() -> bool:
            return (await sla(running))["pending"] == 0

        await until(drained)
        files = sorted((tmp_path / "outbox").iterdir())
        assert [f for f in files if not f.name.endswith(".csv")] == []  # no temporary file left
        assert len(files) == 3  # batches of at most 4
        written = [i for f in files for i in _csv_ids(f)]
        assert sorted(written) == sorted(ids)
        sink = (await sla(running))["sinks"][0]
        assert sink["sink"] == "folder" and sink["pending"] == 0 and sink["failing"] is None


async def test_xml_copies_of_what_billing_committed(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    async with gateway_with(db_url, tmp_path, clock, _folder(tmp_path, role="copy", format="xml")) as running:
        ids = await push_readings(running, 6)
        status, lease = await running.post("/api/v1/billing/batches", {"limit": 4}, token=BILLING_TOKEN)
        assert status == 201 and isinstance(lease, dict)
        status, _ = await running.post(
            f"/api/v1/billing/batches/{lease['batch_id']}/commit", token=BILLING_TOKEN
        )
        assert status == 200

        async def copied() -> bool:
            sink = (await sla(running))["sinks"][0]
            return sink["pending"] == 0 and sink["last_delivered_at"] is not None

        await until(copied)
        (only,) = (tmp_path / "outbox").glob("*.xml")
        assert lease["batch_id"] in only.name
        root = ElementTree.fromstring(only.read_bytes())
        assert root.get("batch_id") == lease["batch_id"] and root.get("count") == "4"
        copied_ids = [int(r.findtext("reading_id") or 0) for r in root.iter("reading")]
        assert copied_ids == [r["reading_id"] for r in lease["readings"]]
        assert set(copied_ids) < set(ids)  # the two readings billing has not committed are not copied
        view = await sla(running)
        assert view["pending"] == 2  # a copy sink commits nothing


async def test_a_batch_written_again_replaces_its_own_file(tmp_path: Path) -> None:
    sink = FolderSink(FolderSinkConfig(enabled=True, path=str(tmp_path), format="csv"))
    reading = {
        "reading_id": 7, "account": "1000001", "meter_serial": "M-1", "zone": "T", "value": "12345",
        "taken_at": "2026-11-17T09:00:00+00:00", "received_at": "2026-11-17T09:00:00+00:00",
        "channel": "device", "source": "d", "employee": None, "period": "2026-11", "verdict": "accepted",
        "reasons": [], "due_at": "2026-11-18T21:00:00+00:00", "committed_at": None,
    }  # fmt: skip
    batch = Batch("0b7e1f7e-0000-4000-8000-000000000001", [reading])
    await sink.deliver(batch)
    await sink.deliver(batch)
    (only,) = await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
    assert _csv_ids(only) == [7]
