"""The second notice: the resident hears when billing has committed their reading (the cabinet
always, SMS only with `[sms] billing_notices`, within SMS hours), from an outbox the commit writes;
and a reading only awaiting confirmation does not stop the period's reminders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import held
from gateway.calendar import WorkCalendar
from gateway.config import Config
from gateway.held_job import held_job
from gateway.intake import Intake
from gateway.model import Channel, Status, Submission
from gateway.store.schema_held import notices
from tests.adapters.web.test_cabinet import Web, start_web
from tests.conftest import BILLING_TOKEN, FakeClock
from tests.gateway.test_held_lifecycle import KEY, msk, sendsms, sms
from tests.gateway.test_reminders import FakeNotifier, at, job
from tests.gateway.test_reminders import world as world  # noqa: F401 - the fixture

__all__ = ["sendsms"]  # the fixture, used by name


@pytest.fixture(params=[False, True], ids=["sms-notices-off", "sms-notices-on"])
async def gateway_web(
    request: pytest.FixtureRequest,
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    sendsms: tuple[str, list[dict[str, str]]],
) -> AsyncIterator[Web]:
    # The job's first pass runs at start-up with the clock of that moment: before every test's story.
    clock.now = datetime(2026, 8, 1, tzinfo=UTC)
    w = await start_web(
        db_url,
        tmp_path,
        clock,
        sms={
            "kannel_key": KEY,
            "sendsms_url": sendsms[0],
            "reminders": False,
            "billing_notices": request.param,
        },
        cabinet={"trust_forwarded_for": True},
        verification={"phone_digits": True},
        held={"check_seconds": 3600},
    )
    yield w
    await w.close()


async def test_commit_is_told_in_the_cabinet_and_by_sms_only_when_configured(
    gateway_web: Web, sendsms: tuple[str, list[dict[str, str]]]
) -> None:
    w, (_, got) = gateway_web, sendsms
    w.clock.now = msk(17, 20, 30)
    assert (await sms(w, "12345")).startswith("Принято")
    meter = await w.gateway.intake.submit(
        Submission(Channel.DEVICE, w.clock(), "dev", meter_serial="M-5", values={"T": "100"})
    )
    assert meter.status is Status.ACCEPTED
    c = w.client()
    headers = {"Authorization": f"Bearer {BILLING_TOKEN}"}
    async with c.http.post(w.base + "/api/v1/billing/batches", json={"limit": 10}, headers=headers) as resp:
        batch = await resp.json()
    assert sorted(r["value"] for r in batch["readings"]) == ["100", "12345"]
    async with c.http.post(
        w.base + f"/api/v1/billing/batches/{batch['batch_id']}/commit", headers=headers
    ) as r:
        assert r.status == 200
    async with w.engine.connect() as conn:
        queued = (await conn.execute(select(notices.c.kind, notices.c.channel))).all()
    # Written by the commit itself; a meter's own reading is not told (one notice per reading).
    assert [tuple(q) for q in queued] == [("committed", "*")]

    w.clock.now = msk(17, 21, 30)  # after 21:00: no SMS now
    await held_job(w.gateway).run_once()
    assert got == []
    resident = w.client()
    assert (await resident.sign_in("1000001", "4567")).status == 200
    history = await resident.get("/cabinet/history")
    assert "учтены 17.11" in history.text

    w.clock.now = msk(18, 10, 5)
    await held_job(w.gateway).run_once()
    await held_job(w.gateway).run_once()
    if w.gateway.config.sms.billing_notices:
        assert [q["to"] for q in got] == ["+79161234567"]
        assert got[0]["text"].startswith("Показания за ноябрь переданы в расчёт: л/с 1000001, 12 345")
    else:
        assert got == []


async def test_a_reading_awaiting_confirmation_does_not_stop_reminders(
    engine: AsyncEngine, world: tuple[Intake, Config, WorkCalendar], clock: FakeClock
) -> None:
    intake, config, _ = world
    for month, value in ((8, "1000"), (9, "1300"), (10, "1600")):
        clock.now = datetime(2026, month, 18 if month == 8 else 17, 7, 0, tzinfo=UTC)
        v = await intake.submit(
            Submission(Channel.CABINET, clock(), "x", account="1000001", values={"T": value})
        )
        assert v.status is Status.ACCEPTED
    clock.now = at(16, 12)
    unusual = await intake.submit(
        Submission(Channel.CABINET, clock(), "x", account="1000001", values={"T": "2400"})
    )
    assert unusual.status is Status.NEEDS_CONFIRMATION and unusual.receipt is not None
    notifier = FakeNotifier()
    clock.now = at(17, 12)
    await job(engine, world, clock, notifier).run_once()
    assert "+79161234567" in [to for to, _ in notifier.sent]  # still reminded: it may never be confirmed

    await held.confirm(engine, config, unusual.receipt, "resident", clock(), account="1000001")
    clock.now = at(25, 12)
    await job(engine, world, clock, notifier).run_once()
    last_day = notifier.sent[4:]
    assert last_day and "+79161234567" not in [to for to, _ in last_day]  # confirmed: it counts
