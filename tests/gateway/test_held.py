"""Held readings: a resident confirms an unusual value; the back office accepts or rejects flagged ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import held
from gateway.config import Config
from gateway.intake import Intake
from gateway.model import Channel, Status, Submission
from gateway.store.schema import audit, meter_state
from tests.conftest import FakeClock, make_config, start_intake


@pytest.fixture
async def setup(
    engine: AsyncEngine, db_url: str, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[Intake, Config]]:
    config = make_config(db_url, tmp_path)
    it = await start_intake(engine, config, clock)
    yield it, config
    await it.stop()


async def _history(intake: Intake, clock: FakeClock, channel: Channel) -> None:
    """Two months of about 10 kWh a day on meter M-1."""
    for value in ("1000", "1300", "1600"):
        v = await intake.submit(Submission(channel, clock(), "x", account="1000001", values={"T": value}))
        assert v.status is Status.ACCEPTED, v
        clock.advance(days=30)


async def _last_value(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return (
            await conn.execute(select(meter_state.c.last_value).where(meter_state.c.meter_id == 1))
        ).scalar_one()


async def test_resident_confirms_an_unusual_value(
    setup: tuple[Intake, Config], engine: AsyncEngine, clock: FakeClock
) -> None:
    intake, config = setup
    await _history(intake, clock, Channel.CABINET)
    unusual = await intake.submit(
        Submission(Channel.CABINET, clock(), "x", account="1000001", values={"T": "2400"})
    )
    assert unusual.status is Status.NEEDS_CONFIRMATION
    assert unusual.reasons[0].code == "unexpected_consumption"
    assert "расход 800 кВт·ч, обычно 210-480" in unusual.reasons[0].message_ru
    assert await _last_value(engine) == "1600"  # not the history until confirmed

    clock.advance(hours=1)
    assert unusual.receipt is not None
    with pytest.raises(held.NotHeld):
        await held.confirm(engine, config, unusual.receipt, "resident", clock(), account="1000002")
    confirmed = await held.confirm(engine, config, unusual.receipt, "resident", clock(), account="1000001")
    assert confirmed.status is Status.ACCEPTED
    assert [r.code for r in confirmed.reasons] == ["confirmed"]
    assert await _last_value(engine) == "2400"
    again = await held.confirm(engine, config, unusual.receipt, "resident", clock(), account="1000001")
    assert again.status is Status.ACCEPTED
    async with engine.connect() as conn:
        trail = (await conn.execute(select(audit.c.action, audit.c.actor))).all()
    assert trail == [("confirm", "resident")]


async def test_back_office_rejects_a_flagged_reading_with_a_comment(
    setup: tuple[Intake, Config], engine: AsyncEngine, clock: FakeClock
) -> None:
    intake, _ = setup
    await _history(intake, clock, Channel.DEVICE)
    flagged = await intake.submit(
        Submission(Channel.DEVICE, clock(), "dev", meter_serial="M-1", values={"T": "2400"})
    )
    assert flagged.status is Status.FLAGGED
    assert flagged.receipt is not None
    decided = await held.review(
        engine, flagged.receipt, held.Decision(False, "Иванова И.И.", "сбой счётчика"), clock()
    )
    assert decided.status is Status.REJECTED
    assert await _last_value(engine) == "1600"  # the rejected value never became the history
    assert decided.reasons[-1].code == "rejected_by_operator"
    assert "сбой счётчика" in decided.reasons[-1].message_ru
    with pytest.raises(held.NotHeld):
        await held.review(engine, flagged.receipt, held.Decision(True, "Иванова И.И."), clock())
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(audit.c.actor, audit.c.comment, audit.c.before, audit.c.after))
        ).one()
    assert row.actor == "Иванова И.И." and row.comment == "сбой счётчика"
    assert '"flagged"' in row.before and '"rejected"' in row.after


async def test_back_office_accepts_a_flagged_reading_and_it_becomes_the_history(
    setup: tuple[Intake, Config], engine: AsyncEngine, clock: FakeClock
) -> None:
    intake, _ = setup
    await _history(intake, clock, Channel.DEVICE)
    flagged = await intake.submit(
        Submission(Channel.DEVICE, clock(), "dev", meter_serial="M-1", values={"T": "2400"})
    )
    assert flagged.status is Status.FLAGGED and flagged.receipt is not None
    assert await _last_value(engine) == "1600"
    decided = await held.review(
        engine, flagged.receipt, held.Decision(True, "Петров П.П.", "проверено"), clock()
    )
    assert decided.status is Status.ACCEPTED
    assert decided.reasons[-1].code == "released"
    assert await _last_value(engine) == "2400"


async def test_the_next_reading_is_judged_against_a_value_confirmed_meanwhile(
    setup: tuple[Intake, Config], engine: AsyncEngine, clock: FakeClock
) -> None:
    """The SQLite writer process keeps zone states between groups; a confirmation committed by
    another connection must reach it before the next reading is judged."""
    intake, config = setup
    await _history(intake, clock, Channel.CABINET)
    unusual = await intake.submit(
        Submission(Channel.CABINET, clock(), "x", account="1000001", values={"T": "2400"})
    )
    assert unusual.status is Status.NEEDS_CONFIRMATION and unusual.receipt is not None
    clock.advance(hours=1)
    await held.confirm(engine, config, unusual.receipt, "resident", clock(), account="1000001")
    clock.advance(hours=1)
    lower = await intake.submit(
        Submission(Channel.CABINET, clock(), "x", account="1000001", values={"T": "2390"})
    )
    assert lower.status is Status.REJECTED
    assert [r.code for r in lower.reasons] == ["lower_than_previous"]
    assert "2 390 меньше прежних 2 400" in lower.reasons[0].message_ru
