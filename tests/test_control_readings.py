"""Inspectors' control readings end to end, on both databases: an inspectors' handheld file
imported through the partners' files (a partner with `control = true`), a resident's reading that
disagrees held for the back office with both values on the desk, and the billing API and the
export saying which readings are control readings."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from adapters.partner_files.config import FilesConfig, Partner
from adapters.partner_files.importing import Importer
from adapters.partner_files.layouts import load_layouts
from adapters.partner_files.samples import write_sample
from gateway.exporting import export_readings
from gateway.model import Channel, Status, Submission
from tests.adapters.web.test_cabinet import OPERATOR_PASSWORD, Web
from tests.adapters.web.test_cabinet import web as web  # noqa: F401 - the fixture
from tests.conftest import BILLING_TOKEN

HEADER = ["НОМЕР_ЗАПИСИ", "ДАТА_ОБХОДА", "КОНТРОЛЁР", "ЛС", "ЗАВ_НОМЕР", "ПОКАЗАНИЕ", "Т1", "Т2", "Т3"]
INSPECTORS = Partner(id="inspectors", name="Контролёры", layout="inspector-handheld-csv", control=True)


async def test_a_reading_that_disagrees_with_the_inspectors_is_held_and_control_readings_are_marked(
    web: Web, tmp_path: Path
) -> None:
    await web.seed_history("1000001", {"T": "1000"}, {"T": "1300"})  # ~10 kWh a day
    await web.seed_history("1000002", {"T1": "1000", "T2": "500"}, {"T1": "1300", "T2": "600"})
    layout = load_layouts()["inspector-handheld-csv"]
    path = write_sample(
        tmp_path / "obhod.csv",
        layout,
        HEADER,
        [
            ["T7-1", "16.11.2026 10:40", "Смирнов", "1000001", "M-1", "1620", "", "", ""],
            ["T7-2", "16.11.2026 11:05", "Смирнов", "1000002", "M-2", "", "1630", "700", ""],
        ],
    )
    gateway = web.gateway
    importer = Importer(
        gateway.engine,
        gateway.intake,
        FilesConfig(partners=[INSPECTORS]),
        gateway.calendar.timezone,
        web.clock,
    )
    summary = await importer.run(
        path, "obhod.csv", "inspectors", layout, "cli", "test", lambda _id: tmp_path / "obhod.result.csv"
    )
    assert (summary.rows, summary.accepted) == (2, 2)

    def resident(account: str, values: dict[str, str]) -> Submission:
        return Submission(Channel.CABINET, web.clock(), "resident", account=account, values=values)

    far = await gateway.intake.submit(resident("1000001", {"T": "1700"}))  # a day later: 1620 + ~35 at most
    near = await gateway.intake.submit(resident("1000002", {"T1": "1640", "T2": "705"}))
    assert far.status is Status.FLAGGED and near.status is Status.ACCEPTED
    (why,) = far.reasons
    assert why.code == "control_mismatch"
    assert why.message_ru == "расходится с контрольным показанием 1 620 от 16.11. Проверим"

    # The desk: the held reading beside the inspector's value; control readings tagged.
    c = web.client()
    await c.operator_sign_in("ivanova", OPERATOR_PASSWORD)
    queue = await c.get("/operator/queue")
    assert f"№ {far.receipt}" in queue.text and "<b>1 700</b>" in queue.text
    assert "расходится с контрольным показанием 1 620 от 16.11. Проверим" in queue.text
    account = await c.get("/operator/accounts/1000001")
    assert account.text.count(">контрольное</span>") == 1

    # Billing and the export say which readings are control readings.
    web.clock.advance(minutes=1)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {BILLING_TOKEN}"}) as http:
        async with http.post(f"{web.base}/api/v1/billing/batches", json={"limit": 100}) as resp:
            leased = (await resp.json())["readings"]
    control = {(r["account"], r["zone"], r["value"]) for r in leased if r["control"]}
    assert control == {("1000001", "T", "1620"), ("1000002", "T1", "1630"), ("1000002", "T2", "700")}
    assert all(r["control"] is False for r in leased if r["source"] != "file:inspectors")
    out = io.StringIO()
    await export_readings(gateway.config, out, "csv", datetime(2026, 9, 1, tzinfo=UTC), every_verdict=True)
    rows = list(csv.DictReader(io.StringIO(out.getvalue()), delimiter=";"))
    assert {r["value"]: r["control"] for r in rows if r["account"] == "1000001"} == {
        "1000": "0",
        "1300": "0",
        "1620": "1",
        "1700": "0",
    }
