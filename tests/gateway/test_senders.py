"""Senders nobody verified, through the real intake on both databases: the site's form without
sign-in (held or accepted by `[senders] site_form`, never asked back, told nothing of the account,
limited per address and per account) and `Intake.preview`, the desk's check of a paper form's row."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import senders
from gateway.intake import Intake
from gateway.model import Channel, Status, Submission
from gateway.store.schema import inbound, readings
from tests.conftest import FakeClock, make_config, start_intake


def site(
    clock: FakeClock, account: str, *values: str, address: str = "203.0.113.7", mid: str | None = None
) -> Submission:
    return Submission(
        Channel.SITE, clock(), address, account=account, positional_values=values, channel_message_id=mid
    )


async def _history(intake: Intake, clock: FakeClock) -> None:
    """M-1 (account 1000001) read by its holder in September and October, about 10 kWh a day."""
    now = clock.now
    for when, value in (
        (datetime(2026, 9, 16, 9, tzinfo=UTC), "1000"),
        (datetime(2026, 10, 16, 9, tzinfo=UTC), "1300"),
    ):
        clock.now = when
        verdict = await intake.submit(
            Submission(Channel.CABINET, clock(), "holder", account="1000001", values={"T": value})
        )
        assert verdict.status is Status.ACCEPTED
    clock.now = now


async def test_the_site_form_is_held_never_asked_back_and_told_nothing(
    engine: AsyncEngine, intake: Intake, clock: FakeClock
) -> None:
    await _history(intake, clock)
    held = await intake.submit(site(clock, "1000001", "1620"))
    assert held.status is Status.FLAGGED
    assert [r.code for r in held.reasons] == ["unverified_sender"]
    assert held.reasons[0].message_ru == "Проверим: показания переданы через форму на сайте без входа"
    # Far above the usual: a resident would be asked to confirm; nobody can be asked here.
    unusual = await intake.submit(site(clock, "1000001", "2500"))
    assert unusual.status is Status.FLAGGED
    assert [(r.code, r.severity.name) for r in unusual.reasons] == [
        ("unexpected_consumption", "FLAG"),
        ("unverified_sender", "FLAG"),
    ]
    lower = await intake.submit(site(clock, "1000001", "100"))
    assert lower.status is Status.REJECTED
    assert [r.message_ru for r in lower.reasons] == [
        "Меньше предыдущего показания. Проверьте"
    ]  # no value, no date
    unknown = await intake.submit(site(clock, "9999999", "100"))
    assert unknown.status is Status.REJECTED and unknown.account == "9999999" and unknown.meter_serial is None
    async with engine.connect() as conn:
        sources = set(
            (await conn.execute(select(inbound.c.source).where(inbound.c.channel == "site"))).scalars()
        )
    assert (
        len(sources) == 1
        and next(iter(sources)).startswith("site:#")
        and "203.0.113.7" not in next(iter(sources))
    )


async def test_the_site_form_accepted_when_configured(
    engine: AsyncEngine, db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(db_url, tmp_path, senders={"site_form": "accept"})
    intake = await start_intake(engine, config, clock)
    try:
        verdict = await intake.submit(site(clock, "1000002", "4521,5", "1720"))
        assert verdict.status is Status.ACCEPTED and [r.zone for r in verdict.readings] == ["T1", "T2"]
    finally:
        await intake.stop()


async def test_the_site_form_is_limited_per_address_and_per_account(
    engine: AsyncEngine, db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(
        db_url, tmp_path, senders={"site_per_address_per_hour": 2, "site_per_account_per_hour": 1}
    )
    intake = await start_intake(engine, config, clock)
    try:
        first = await intake.submit(site(clock, "1000001", "100"))
        again = await intake.submit(
            site(clock, "1000001", "101", address="198.51.100.1")
        )  # the account's one is used
        other = await intake.submit(site(clock, "1000002", "1", "2"))
        third = await intake.submit(site(clock, "1000003", "1", "2", "3"))  # the address's two are used
        assert first.status is Status.FLAGGED and other.status is Status.FLAGGED
        for refused in (again, third):
            assert refused.status is Status.REJECTED and [r.code for r in refused.reasons] == [
                "sender_rate_limited"
            ]
        assert await senders.site_form_full(engine, "203.0.113.7", "1000004", clock(), config.senders)
        assert await senders.site_form_full(engine, "192.0.2.1", "1000001", clock(), config.senders)
        assert not await senders.site_form_full(engine, "192.0.2.1", "1000004", clock(), config.senders)
        clock.advance(hours=1)  # a new hour
        assert (await intake.submit(site(clock, "1000003", "1", "2", "3"))).status is Status.FLAGGED
    finally:
        await intake.stop()


async def test_preview_decides_as_the_intake_would_and_stores_nothing(
    engine: AsyncEngine, intake: Intake, clock: FakeClock
) -> None:
    await _history(intake, clock)
    row = Submission(
        Channel.PAPER,
        clock(),
        "ivanova",
        employee="Иванова А. П.",
        account="1000001",
        positional_values=("1200",),
    )
    preview = await intake.preview(row)
    assert preview.status is Status.REJECTED and preview.receipt is None
    assert (
        preview.reasons[0].message_ru == "1 200 меньше прежних 1 300 от 16.10. Проверьте"
    )  # staff see the history
    fine = await intake.preview(replace(row, positional_values=("1620",)))
    assert fine.status is Status.ACCEPTED and [str(r.value) for r in fine.readings] == ["1620"]
    assert (await intake.preview(replace(row, account="9999999"))).reasons[0].code == "unknown_account"
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(inbound))).scalar_one() == 2
        assert (await conn.execute(select(func.count()).select_from(readings))).scalar_one() == 2
    stored = await intake.submit(replace(row, positional_values=("1620",)))
    assert stored.status is Status.ACCEPTED
    same = await intake.preview(replace(row, positional_values=("1620",)))
    assert same.duplicate  # the check says it is in already
