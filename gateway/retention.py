"""Purging raw messages of residents after `privacy.payload_retention_days` (152-FZ).

The raw message of a resident's submission (`inbound.payload`: the SMS with its sender, the
Telegram update with the user's name, the call's digits) is needed while the reading may be
questioned; after the retention it is emptied. What stays: the reading, its verdict
(`inbound.response`), its masked source, and the channel's message id, so a redelivery of the
same message is still recognised and answered with its first receipt. A door that keeps raw
messages of its own purges them the same way (`purge` of its `meter_gateway.privacy` module,
gateway/plugins.py): the Telegram door empties finished updates, keeping their update_id.

Meter photos residents sent with their readings (gateway/photos.py) are deleted after the same
retention. Device, Modbus, MQTT and operators' payloads carry no resident's data and are kept.
The job runs inside `meter-gateway run` every `privacy.purge_interval_seconds`, in
transactions of at most `privacy.purge_batch` rows, so it never holds the database for long.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import plugins
from gateway.privacy import chat_ref
from gateway.store.schema import INBOUND_UNPURGED, audit, inbound, readings
from gateway.store.schema_photos import reading_photos

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.host import Host

log = logging.getLogger(__name__)

# The conditions are those of the partial indexes (gateway/store/schema*.py, migration 0012),
# written out the same, so the job reads only what is left to purge, however many purged rows
# pile up behind it (a bound parameter would keep PostgreSQL from using the index).


@dataclass(frozen=True, slots=True)
class Purged:
    inbound: int
    doors: dict[str, int]  # a door's name (its `meter_gateway.privacy` declaration) -> rows purged
    photos: int = 0  # meter photos deleted


async def purge_once(engine: AsyncEngine, now: datetime, retention_days: int, batch: int) -> Purged:
    """Purge everything older than the retention, `batch` rows per transaction."""
    cutoff = now - timedelta(days=retention_days)
    done_inbound = 0
    while True:
        n = await _purge_inbound(engine, cutoff, batch)
        done_inbound += n
        if n < batch:
            break
        await asyncio.sleep(0)  # let requests in between batches
    photos = 0
    while True:
        n = await _purge_photos(engine, cutoff, batch)
        photos += n
        if n < batch:
            break
        await asyncio.sleep(0)
    doors: dict[str, int] = {}
    for entry, module in zip(plugins.declared(plugins.PRIVACY), plugins.privacy_modules(), strict=True):
        purge = getattr(module, "purge", None)
        if purge is None:
            continue
        done = 0
        while True:
            async with engine.begin() as conn:
                n = await purge(conn, cutoff, batch)
            done += n
            if n < batch:
                break
            await asyncio.sleep(0)
        doors[entry.name] = done
    return Purged(done_inbound, doors, photos)


async def _purge_inbound(engine: AsyncEngine, cutoff: datetime, batch: int) -> int:
    async with engine.begin() as conn:
        ids = list(
            (
                await conn.execute(
                    select(inbound.c.id)
                    .where(text(INBOUND_UNPURGED), inbound.c.received_at < cutoff)
                    .order_by(inbound.c.received_at)
                    .limit(batch)
                )
            ).scalars()
        )
        if ids:
            await conn.execute(update(inbound).where(inbound.c.id.in_(ids)).values(payload=""))
    return len(ids)


async def _purge_photos(engine: AsyncEngine, cutoff: datetime, batch: int) -> int:
    async with engine.begin() as conn:
        ids = list(
            (
                await conn.execute(
                    select(reading_photos.c.inbound_id)
                    .where(reading_photos.c.received_at < cutoff)
                    .order_by(reading_photos.c.received_at)
                    .limit(batch)
                )
            ).scalars()
        )
        if ids:
            await conn.execute(delete(reading_photos).where(reading_photos.c.inbound_id.in_(ids)))
    return len(ids)


async def hash_old_telegram_sources(engine: AsyncEngine) -> int:
    """Sources and audit actors written before migration 0012 held the chat id (`telegram:123`):
    give them the chat's keyed reference instead (`telegram:#...`, gateway/privacy.py).

    Once per start, in the background (it reads the Telegram rows of `inbound`); afterwards there
    is nothing left to change. Returns how many chats were rewritten.
    """
    old = and_(inbound.c.channel == "telegram", ~inbound.c.source.like("telegram:#%"))
    async with engine.connect() as conn:
        sources = sorted(set((await conn.execute(select(inbound.c.source).where(old).distinct())).scalars()))
    for source in sources:
        new = "telegram:" + chat_ref(source.removeprefix("telegram:"))
        async with engine.begin() as conn:
            await conn.execute(update(inbound).where(inbound.c.source == source).values(source=new))
            await conn.execute(update(readings).where(readings.c.source == source).values(source=new))
            await conn.execute(update(audit).where(audit.c.actor == source).values(actor=new))
    return len(sources)


async def purge_job(gateway: Host) -> None:
    """The background task of `meter-gateway run`: purge, then wait for the next round."""
    cfg = gateway.config.privacy
    rewritten = await hash_old_telegram_sources(gateway.engine)
    if rewritten:
        log.info("privacy: %d Telegram chats in readings' sources replaced by their keyed hashes", rewritten)
    while True:
        purged = await purge_once(
            gateway.engine, gateway.clock(), cfg.payload_retention_days, cfg.purge_batch
        )
        if purged.inbound or purged.photos or any(purged.doors.values()):
            log.info(
                "privacy: purged the raw messages of %d submissions, %d meter photos and %s older than %d days",
                purged.inbound,
                purged.photos,
                ", ".join(f"{n} of {door}" for door, n in purged.doors.items()) or "nothing of the doors",
                cfg.payload_retention_days,
            )
        await asyncio.sleep(cfg.purge_interval_seconds)


def install(gateway: Host, app: web.Application) -> None:
    """Run the purge job in `meter-gateway run`."""
    gateway.background.append(purge_job)
