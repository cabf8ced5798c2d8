"""One bad item harms no one else: a poison item amid concurrent device pushes and SMS, and a
group whose commit fails for one submission, on SQLite (writer process) and PostgreSQL.

Before: a device reading dated 9999-12-31T23:59:59Z failed its whole commit group (every
concurrent device push answered 500); on PostgreSQL so did a NUL in an account or zone, a Kannel
`from` over 128 characters and a NUL in a Kannel `id`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.group_split import Partial, decide_apart
from gateway.intake import Intake
from gateway.model import Channel, Status, Submission, Verdict
from gateway.service import Gateway
from gateway.store.schema import inbound, readings
from tests.conftest import DEVICE_TOKEN, FakeClock, Running, make_config

KEY = "poison-kannel-key"
N_DEVICES, N_SMS = 300, 120


def _registry(path: Path) -> str:
    rows = ["account,meter_serial,meter_model,zones,digits,phones,max_power_kw,address"]
    rows += [f"{2000000 + i},D-{i},m,T,6,,10,a" for i in range(N_DEVICES)]
    rows += [f"{3000000 + j},S-{j},m,T,6,+7901{j:07d},10,a" for j in range(N_SMS)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
async def crowd(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Running]:
    """A real gateway with a meter per device push and a registered phone per SMS."""
    config = make_config(db_url, tmp_path, sms={"kannel_key": KEY, "replies_per_hour": 1000})
    csv = _registry(tmp_path / "crowd.csv")
    config = config.model_copy(update={"registry": config.registry.model_copy(update={"csv": csv})})
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        yield Running(gateway, f"http://127.0.0.1:{gateway.port}", http, clock)
    await gateway.stop()


POISONS: dict[str, tuple[str, dict[str, Any], str]] = {
    # name: (route, what is sent, the field its refusal names)
    "dated 9999": (
        "device",
        {"id": "poison", "meter": "D-0", "taken_at": "9999-12-31T23:59:59Z", "value": "5"},
        "taken_at",
    ),
    "dated 0001+14": (
        "device",
        {"id": "poison", "meter": "D-0", "taken_at": "0001-01-01T00:00:00+14:00", "value": "5"},
        "taken_at",
    ),
    "NUL in account": (
        "device",
        {"id": "poison", "meter": "D-0", "account": "20\x000000", "value": "5"},
        "account",
    ),
    "NUL in zone": ("device", {"id": "poison", "meter": "D-0", "values": {"T\x00": "5"}}, "values"),
    "NUL in id": ("device", {"id": "poi\x00son", "meter": "D-0", "value": "5"}, "id"),
    "long from": ("sms", {"from": "+7" + "9" * 140, "text": "12345", "id": "poison"}, "from"),
    "NUL in id (Kannel)": ("sms", {"from": "+79010000000", "text": "12345", "id": "poi\x00son"}, "id"),
}


async def _device(r: Running, item: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {DEVICE_TOKEN}"}
    async with r.http.post(r.base + "/api/v1/readings", json={"readings": [item]}, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def _sms(r: Running, params: dict[str, str]) -> tuple[int, str]:
    async with r.http.get(r.base + "/channels/sms/kannel", params=dict(params, to="7377", key=KEY)) as resp:
        return resp.status, await resp.text()


@pytest.mark.parametrize("poison", list(POISONS))
async def test_a_poison_item_amid_concurrent_pushes_and_sms_harms_no_one(crowd: Running, poison: str) -> None:
    route, bad, field = POISONS[poison]
    devices = [
        _device(
            crowd,
            {"id": f"d{i}", "meter": f"D-{i}", "taken_at": "2026-11-17T08:00:00Z", "value": str(100 + i)},
        )
        for i in range(N_DEVICES)
    ]
    texts = [
        _sms(crowd, {"from": f"+7901{j:07d}", "text": str(100 + j), "id": f"s{j}"}) for j in range(N_SMS)
    ]
    poisoned = _device(crowd, bad) if route == "device" else _sms(crowd, bad)
    results = await asyncio.gather(*devices[:150], poisoned, *devices[150:], *texts)
    status, body = results.pop(150)
    others = [s for s, _ in results]
    assert [s for s in others if s != 200] == []  # no 5xx, nor anything else, for the others
    assert all(b["results"][0]["status"] == "accepted" for _, b in results[:N_DEVICES])
    assert all(b.startswith("Принято") for _, b in results[N_DEVICES:])
    # The poison: its own 4xx naming the field, or a rejection naming it.
    if status == 200:
        reasons = body["results"][0]["reasons"] if route == "device" else None
        assert reasons and reasons[0]["code"] == "unprocessable" and field in reasons[0]["message_en"]
    else:
        assert 400 <= status < 500, body
        message = body["error"]["message"] if isinstance(body, dict) else body
        assert field in message
    async with crowd.gateway.engine.connect() as conn:
        ids = (
            await conn.execute(
                select(inbound.c.channel_message_id, func.count())
                .where(inbound.c.channel_message_id.not_like("%poi%"))
                .group_by(inbound.c.channel_message_id)
            )
        ).all()
        stored = await conn.scalar(select(func.count()).select_from(readings))
    assert len(ids) == N_DEVICES + N_SMS and {n for _, n in ids} == {1}  # each stored exactly once
    assert stored == N_DEVICES + N_SMS


# -- a commit that fails for one submission ----------------------------------------------------

POISON_VALUE = "666666"


async def _poison_trigger(engine: AsyncEngine) -> None:
    """The database itself refuses one reading (as it would a value it cannot store)."""
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            await conn.execute(
                text(
                    f"CREATE TRIGGER poison BEFORE INSERT ON readings WHEN NEW.value = '{POISON_VALUE}' "
                    "BEGIN SELECT RAISE(ABORT, 'poisoned reading'); END"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE OR REPLACE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.value = '{POISON_VALUE}' THEN RAISE EXCEPTION 'poisoned reading'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            await conn.execute(
                text("CREATE TRIGGER poison BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION poison()")
            )


async def _drop_poison_trigger(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("DROP TRIGGER poison" + (" ON readings" if engine.dialect.name != "sqlite" else ""))
        )


def _device_sub(clock: FakeClock, meter: str, value: str, mid: str) -> Submission:
    return Submission(
        channel=Channel.DEVICE,
        received_at=clock(),
        sender="rig",
        meter_serial=meter,
        values={"T": value},
        taken_at=clock(),
        channel_message_id=mid,
    )


async def test_a_commit_failing_for_one_submission_commits_every_other(
    intake: Intake, engine: AsyncEngine, clock: FakeClock
) -> None:
    await _poison_trigger(engine)
    try:
        meters = ["M-1", "M-4A", "M-4B", "M-5", "M-6"]
        batch = [_device_sub(clock, m, str(100 + i), f"b-{m}") for i, m in enumerate(meters)]
        batch.insert(2, _device_sub(clock, "M-5", POISON_VALUE, "b-poison"))
        singles = [
            Submission(
                Channel.SMS, clock(), "+79161234568", text="1000002 200 100", channel_message_id="s-1"
            ),
            Submission(Channel.SMS, clock(), "+79161234569", text="Т1 1 Т2 2 Т3 3", channel_message_id="s-2"),
        ]
        # One batch is one group; the two SMS arrive meanwhile and share it or the next one.
        async with asyncio.TaskGroup() as tasks:
            group = tasks.create_task(intake.submit_many(batch))
            alone = [tasks.create_task(intake.submit(s)) for s in singles]
        verdicts, answers = group.result(), [t.result() for t in alone]
        poison = verdicts.pop(2)
        assert poison.status is Status.REJECTED and [r.code for r in poison.reasons] == ["unprocessable"]
        assert poison.receipt is not None  # stored, so a retry is answered from the store
        assert [v.status for v in verdicts] == [Status.ACCEPTED] * 5
        assert [v.status for v in answers] == [Status.ACCEPTED] * 2
        again = await intake.submit(_device_sub(clock, "M-5", POISON_VALUE, "b-poison"))
        assert again.duplicate and again.receipt == poison.receipt
        # The M-5 reading after the poison was judged against the history as committed.
        clock.advance(hours=1)
        later = await intake.submit(_device_sub(clock, "M-5", "50", "b-later"))
        assert [r.code for r in later.reasons] == ["lower_than_previous"]
    finally:
        await _drop_poison_trigger(engine)
    async with engine.connect() as conn:
        stored = (await conn.execute(select(readings.c.meter_id, readings.c.value))).all()
        messages = await conn.scalar(select(func.count()).select_from(inbound))
    assert len(stored) == 5 + 2 + 3 + 1 and POISON_VALUE not in {v for _, v in stored}  # M-2 2 zones, M-3 3
    assert messages == 6 + 2 + 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"account": "10\x0000001"}, "account"),
        ({"values": {"T\x00": "5"}}, "values"),
        ({"channel_message_id": "x\x00y"}, "id"),
        ({"taken_at": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)}, "taken_at"),
        ({"sender": "+7" + "9" * 140}, "sender"),
        ({"raw": "nul\x00here"}, "raw"),
    ],
)
async def test_a_submission_no_store_can_keep_is_refused_in_the_core(
    intake: Intake, engine: AsyncEngine, clock: FakeClock, change: dict[str, Any], field: str
) -> None:
    """Whatever a channel lets through, the core refuses it alone, with a stored rejection."""
    bad = replace(_device_sub(clock, "M-5", "10", "bad"), **change)
    good = [_device_sub(clock, m, "10", f"g-{m}") for m in ("M-1", "M-6")]
    verdicts = await intake.submit_many([good[0], bad, good[1]])
    assert [v.status for v in verdicts] == [Status.ACCEPTED, Status.REJECTED, Status.ACCEPTED]
    (why,) = verdicts[1].reasons
    assert why.code == "unprocessable" and field in why.message_en and verdicts[1].receipt is not None
    again = await intake.submit(bad)
    assert again.receipt == verdicts[1].receipt and again.status is Status.REJECTED  # stored once
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(inbound)) == 3


# -- the split itself --------------------------------------------------------------------------


def _verdict(n: int) -> Verdict:
    return Verdict(Status.ACCEPTED, (), n)


async def test_the_split_tries_halves_and_stops_at_a_failure_of_the_database() -> None:
    subs = [Submission(Channel.DEVICE, datetime(2026, 11, 17, tzinfo=UTC), f"dev{i}") for i in range(8)]
    tried: list[list[str]] = []

    async def attempt(part: list[Submission]) -> list[Verdict]:
        tried.append([s.sender for s in part])
        if any(s.sender == "dev5" for s in part):
            raise IntegrityError("insert", {}, Exception("poisoned"))
        return [_verdict(int(s.sender[3:])) for s in part]

    async def refuse(sub: Submission) -> Verdict:
        return Verdict(Status.REJECTED, (), -1)

    out = await decide_apart(subs, attempt, refuse)
    assert [v.receipt for v in out if isinstance(v, Verdict)] == [0, 1, 2, 3, 4, -1, 6, 7]
    assert len(tried) == 1 + 2 + 2 + 2  # whole, halves, quarters, the poison's pair

    async def refuse_fails(sub: Submission) -> Verdict:  # even a bare refusal cannot be stored
        raise IntegrityError("insert", {}, Exception("disk"))

    out = await decide_apart(subs, attempt, refuse_fails)
    assert isinstance(out, Partial)
    assert [type(v).__name__ for v in out] == ["Verdict"] * 5 + ["IntegrityError"] * 3
