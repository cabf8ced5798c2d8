"""Personal data at rest (152-FZ): keyed hashes of phones, the purge of raw messages after the
retention, `meter-gateway privacy report`, and `/metrics` behind a token. A real gateway on
each database; the purge on the controlled clock."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import String, Text, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.sms.tables import sms_messages, sms_optouts
from adapters.telegram.tables import telegram_updates
from gateway import privacy
from gateway.config import PrivacyConfig
from gateway.model import Channel, Status, Submission
from gateway.retention import hash_old_telegram_sources, purge_once
from gateway.service import Gateway
from gateway.store.schema import inbound, metadata, readings
from tests.conftest import DEVICE_TOKEN, FakeClock, Running, make_config
from tests.test_cli import run

KEY = "privacy-kannel-key"
OPS_TOKEN = "ops-token-0123456789"
REGISTERED = "+79161234567"  # account 1000001, meter M-1
STRANGER = "+79990001122"  # registered nowhere


@pytest.fixture
async def gw(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Running]:
    config = make_config(
        db_url,
        tmp_path,
        sms={"kannel_key": KEY},
        ops={"token": OPS_TOKEN},
        privacy={"purge_interval_seconds": 3600.0},
    )
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    async with aiohttp.ClientSession() as http:
        yield Running(gateway, f"http://127.0.0.1:{gateway.port}", http, clock)
    await gateway.stop()


async def sms(r: Running, text: str, phone: str, mid: str) -> str:
    params = {"from": phone, "to": "7377", "text": text, "id": mid, "key": KEY}
    async with r.http.get(r.base + "/channels/sms/kannel", params=params) as resp:
        assert resp.status == 200
        return await resp.text()


async def texts_holding(engine: AsyncEngine, digits: str, skip: set[str]) -> list[str]:
    """Every `table.column` of a text type whose value contains these digits (separators ignored)."""
    found: list[str] = []
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name in skip:
                continue
            columns = [c for c in table.columns if isinstance(c.type, String | Text)]
            if not columns:
                continue
            for row in (await conn.execute(select(*columns))).all():
                for column, value in zip(columns, row, strict=True):
                    if value is not None and digits in re.sub(r"\D", "", str(value)):
                        found.append(f"{table.name}.{column.name}")
    return sorted(set(found))


async def test_no_full_phone_at_rest_after_an_sms_exchange(gw: Running) -> None:
    engine = gw.gateway.engine
    assert (await sms(gw, "1000001 12345", REGISTERED, "x-1")).startswith("Принято")
    await sms(gw, "1000001 12346", STRANGER, "x-2")
    await sms(gw, "помощь", STRANGER, "x-3")
    await sms(gw, "стоп", REGISTERED, "x-4")
    await sms(gw, "да", REGISTERED, "x-5")
    # The scan itself can fail: the registry's phones are found where they belong.
    assert await texts_holding(engine, "9161234567", skip=set()) == ["phones.phone"]
    assert await texts_holding(engine, "9161234567", skip={"phones"}) == []
    assert await texts_holding(engine, "9990001122", skip=set()) == []
    async with engine.connect() as conn:
        keys = set((await conn.execute(select(sms_messages.c.sender_key))).scalars())
        optouts = list((await conn.execute(select(sms_optouts.c.phone))).scalars())
        payloads = list((await conn.execute(select(inbound.c.payload))).scalars())
    unsalted = {hashlib.sha256(p.encode()).hexdigest() for p in (REGISTERED, STRANGER)}
    assert keys == {privacy.phone_hash(REGISTERED), privacy.phone_hash(STRANGER)}
    assert not keys & unsalted
    assert optouts == [privacy.phone_hash(REGISTERED)]
    masked = privacy.mask_phone(REGISTERED)
    assert any("1000001 12345" in p and masked in p for p in payloads), payloads  # masked, text kept


async def test_keyed_hash_depends_on_the_secret(engine: AsyncEngine, clock: FakeClock) -> None:
    saved = privacy._key
    try:
        privacy.use_secret("a" * 32)
        first = privacy.phone_hash("8 (916) 123-45-67")
        assert first == privacy.phone_hash(REGISTERED)  # normalised before hashing
        privacy.use_secret("b" * 32)
        assert privacy.phone_hash(REGISTERED) != first
        assert first != hashlib.sha256(REGISTERED.encode()).hexdigest()
        # Not configured: generated once, kept in the database, the same for every process.
        generated = await privacy.load_secret(engine, PrivacyConfig(), clock())
        assert len(generated) >= 32
        assert await privacy.load_secret(engine, PrivacyConfig(), clock()) == generated
        assert await privacy.load_secret(engine, PrivacyConfig(secret="c" * 32), clock()) == "c" * 32
    finally:
        privacy._key = saved


async def _payloads(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(inbound.c.channel_message_id, inbound.c.payload))).all()
    return {str(mid): payload for mid, payload in rows}


async def test_purge_after_retention_keeps_readings_and_redelivery(gw: Running, clock: FakeClock) -> None:
    engine = gw.gateway.engine
    first = await sms(gw, "1000001 12345", REGISTERED, "k-1")
    assert first.startswith("Принято")
    await gw.push({"meter": "M-2", "values": {"T1": "100", "T2": "50"}, "item_id": "dev-1"})
    async with engine.begin() as conn:
        await conn.execute(
            insert(telegram_updates).values(
                bot_id=1,
                update_id=77,
                chat_id=555001,
                received_at=clock(),
                payload='{"update_id": 77, "message": {"chat": {"id": 555001}, "text": "1000001 12345"}}',
                status="done",
                attempts=1,
                replies='[{"chat_id": 555001}]',
            )
        )
    clock.advance(days=89)
    await sms(gw, "1000001 12350", REGISTERED, "k-2")  # within the retention when purging
    clock.advance(days=2)
    purged = await purge_once(engine, clock(), 90, batch=1)  # one row per transaction
    assert (purged.inbound, purged.doors["telegram"]) == (1, 1)
    payloads = await _payloads(engine)
    assert payloads["kannel:k-1"] == ""
    assert "1000001 12350" in payloads["kannel:k-2"]
    assert all(p != "" for k, p in payloads.items() if not k.startswith("kannel:")), payloads
    async with engine.connect() as conn:
        kept = (
            await conn.execute(
                select(readings.c.value, readings.c.source, inbound.c.response)
                .join(inbound, inbound.c.id == readings.c.inbound_id)
                .where(inbound.c.channel_message_id == "kannel:k-1")
            )
        ).one()
        update = (
            await conn.execute(select(telegram_updates).where(telegram_updates.c.update_id == 77))
        ).one()
    assert (
        kept.value == "12345"
        and kept.source == privacy.mask_phone(REGISTERED)
        and '"accepted"' in kept.response
    )
    assert (update.payload, update.chat_id, update.replies, update.status) == ("", None, None, "done")
    # Kannel redelivers the purged message: recognised, the first answer, no second reading.
    assert await sms(gw, "1000001 12345", REGISTERED, "k-1") == first
    async with engine.connect() as conn:
        assert (
            await conn.execute(select(func.count()).select_from(readings))
        ).scalar_one() == 4  # 1 + 2 zones + 1
    again = await purge_once(engine, clock(), 90, batch=1)
    assert again.inbound == 0 and not any(again.doors.values())


async def test_purge_job_runs_inside_the_gateway(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(db_url, tmp_path, sms={"kannel_key": KEY}, privacy={"purge_interval_seconds": 0.05})
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    try:
        async with aiohttp.ClientSession() as http:
            r = Running(gateway, f"http://127.0.0.1:{gateway.port}", http, clock)
            await sms(r, "1000001 12345", REGISTERED, "j-1")
            await asyncio.sleep(0.2)  # the job has run meanwhile: nothing is old enough yet
            assert "12345" in (await _payloads(gateway.engine))["kannel:j-1"]
            clock.advance(days=91)
            for _ in range(400):  # until the job's next round (a deadline, not a timed assertion)
                if (await _payloads(gateway.engine))["kannel:j-1"] == "":
                    break
                await asyncio.sleep(0.05)
            assert (await _payloads(gateway.engine))["kannel:j-1"] == ""
    finally:
        await gateway.stop()


async def test_privacy_report_prints_what_is_kept(gw: Running, tmp_path: Path) -> None:
    await sms(gw, "1000001 12345", REGISTERED, "r-1")
    url = gw.gateway.config.database.url
    done = await asyncio.to_thread(run, tmp_path, "privacy", "report", "1000001", db_url=url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Personal data held about account 1000001. Printed in full")
    assert "  address:   ул. Ленина 1-1" in lines
    assert "  meter:     M-1 (Меркурий 201, zones T, active)" in lines
    assert any(
        line.startswith(
            "  +79161234567: reminders on; SMS reply log: 1 messages (sender kept as a keyed hash)"
        )
        for line in lines
    ), lines
    assert "Readings: 1, received 2026-11-17 09:00 UTC to 2026-11-17 09:00 UTC" in lines
    assert "  sms, accepted: 1" in lines
    assert "Raw messages still held (text, sender): 1" in lines
    assert (
        "  the oldest received 2026-11-17 09:00 UTC, purged after 90 days: by 2027-02-15 09:00 UTC" in lines
    )
    assert "Linked Telegram chats (chat id kept in full: the bot writes to it): 0" in lines
    unknown = await asyncio.to_thread(run, tmp_path, "privacy", "report", "9999999", db_url=url)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: account 9999999 is not in the registry"


async def test_metrics_and_health_details_need_the_token(gw: Running) -> None:
    async with gw.http.get(gw.base + "/metrics") as resp:
        assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    async with gw.http.get(gw.base + "/metrics", headers={"Authorization": "Bearer wrong"}) as resp:
        assert resp.status == 401
    status, body = await gw.get("/metrics", token=OPS_TOKEN)
    assert status == 200 and "gateway_submissions_total" in str(body)
    status, body = await gw.get("/healthz")  # liveness for load balancers: open, status only
    assert (status, body) == (200, {"status": "ok"})
    status, body = await gw.get("/healthz", token=OPS_TOKEN)
    assert status == 200 and isinstance(body, dict) and body["checks"]["database"]["status"] == "ok"
    assert DEVICE_TOKEN  # a device's token opens nothing here
    status, _ = await gw.get("/metrics", token=DEVICE_TOKEN)
    assert status == 401


async def test_old_telegram_sources_get_the_chats_keyed_reference(gw: Running) -> None:
    # As stored before migration 0012: the chat id itself as the sender.
    verdict = await gw.gateway.intake.submit(
        Submission(
            Channel.TELEGRAM,
            gw.clock(),
            "555001",
            account="1000001",
            values={"T": "12345"},
            channel_message_id="901",
        )
    )
    assert verdict.status is Status.ACCEPTED
    engine = gw.gateway.engine
    assert await hash_old_telegram_sources(engine) == 1
    assert await hash_old_telegram_sources(engine) == 0  # nothing left the next time
    async with engine.connect() as conn:
        sources = set((await conn.execute(select(readings.c.source))).scalars())
        sources |= set((await conn.execute(select(inbound.c.source))).scalars())
    assert sources == {f"telegram:{privacy.chat_ref(555001)}"}
    assert privacy.chat_ref(555001) != privacy.chat_ref(555002)
