"""Readings by telephone, the call dialogue: a fake Asterisk (tests/adapters/ivr/fake_pbx.py) calls
the real gateway and presses keys; the tests check what the caller hears, the variables the call
leaves for the dialplan, and what is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from adapters.ivr.agi import IvrServer
from gateway.model import Channel, Submission
from gateway.service import Gateway
from gateway.store.schema import inbound, readings
from tests.adapters.ivr.fake_pbx import HANG, PHONE_1, PHONE_2, PHONE_TWO_ACCOUNTS, STRANGER, Pbx, keys
from tests.conftest import FakeClock, make_config


@dataclass
class Ivr:
    gateway: Gateway
    server: IvrServer
    clock: FakeClock

    async def call(self, caller: list[str | None], **kw: Any) -> Pbx:
        pbx = Pbx(self.server.port or 0, list(caller), **kw)
        return await asyncio.wait_for(pbx.call(), 20)

    async def readings(self) -> list[dict[str, Any]]:
        async with self.gateway.engine.connect() as conn:
            rows = await conn.execute(select(readings).order_by(readings.c.id))
            return [dict(r) for r in rows.mappings()]

    async def inbound_count(self) -> int:
        async with self.gateway.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(inbound))).scalar_one())


EXTRA_ACCOUNTS = 60  # single-meter accounts 2000001.. with phones +7900100XXXX, for concurrent calls


async def _start(db_url: str, tmp_path: Path, clock: FakeClock, unverified: str = "accept") -> Gateway:
    # The call flows here include callers whose id is not registered for the account they type:
    # they run under `accept`; the default `refuse` is the `ivr_refusing` fixture (and, for every
    # channel, tests/adapters/sms/test_sender_policy.py).
    config = make_config(
        db_url,
        tmp_path,
        ivr={"enabled": True, "port": 0, "timeout_seconds": 1},
        senders={"unverified": unverified},
    )
    registry = tmp_path / "registry.csv"
    extra = "".join(
        f"{2000000 + i},S-{i},Меркурий 201,T,6,+7900100{i:04d},10,ул. Мира {i}\n"
        for i in range(1, EXTRA_ACCOUNTS + 1)
    )
    registry.write_text(registry.read_text(encoding="utf-8") + extra, encoding="utf-8")
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    return gateway


async def _ready(gateway: Gateway, clock: FakeClock) -> Ivr:
    server = gateway.health_probes["ivr"]
    assert isinstance(server, IvrServer)
    await asyncio.wait_for(server.ready.wait(), 5)
    return Ivr(gateway, server, clock)


@pytest.fixture
async def ivr(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Ivr]:
    """A real gateway with the FastAGI server on a free loopback port."""
    gateway = await _start(db_url, tmp_path, clock)
    yield await _ready(gateway, clock)
    await gateway.stop()


@pytest.fixture
async def ivr_refusing(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Ivr]:
    """The same under the default `[senders] unverified = "refuse"`."""
    gateway = await _start(db_url, tmp_path, clock, unverified="refuse")
    yield await _ready(gateway, clock)
    await gateway.stop()


GREETING = ["welcome", "recorded", "keys_hint", "main_menu"]


async def test_happy_path_caller_known_by_phone(ivr: Ivr) -> None:
    pbx = await ivr.call(["1", *keys("12345*6#"), "1", None])
    assert pbx.heard == [
        *GREETING,
        "account_is",
        "digits:1000001",
        "zone_T",
        "reading_keys",
        "you_entered",
        "number:12345",
        "comma",
        "digits:6",
        "confirm_keys",
        "accepted",
        "receipt",
        pbx.heard[pbx.heard.index("receipt") + 1],
        "after_accepted",
        "goodbye",
    ]
    assert pbx.commands[0] == "ANSWER"
    assert pbx.variables == {"IVR_RESULT": "done"}
    rows = await ivr.readings()
    assert [(r["zone"], r["value"], r["channel"], r["verdict"], r["source"]) for r in rows] == [
        ("T", "12345.6", "ivr", "accepted", "+7 9** ***-**-**")
    ]
    assert pbx.heard[pbx.heard.index("receipt") + 1] == f"number:{rows[0]['inbound_id']}"
    async with ivr.gateway.engine.connect() as conn:
        row = (await conn.execute(select(inbound))).mappings().one()
    assert row["channel_message_id"] == "1763370000.1:1"
    assert "12345*6#" in row["payload"] and "79161234567" not in row["payload"]


async def test_unknown_caller_types_account_and_chooses_meter(ivr: Ivr) -> None:
    pbx = await ivr.call(["1", *keys("1000004#"), "2", *keys("777#"), "1", None], callerid=STRANGER)
    assert pbx.heard[: len(GREETING) + 1] == [*GREETING, "enter_account"]
    menu = pbx.heard[pbx.heard.index("choose_meter") :][:9]
    assert menu == [
        "choose_meter",
        "meter_if",
        "alpha:M4A",
        "press",
        "digits:1",
        "meter_if",
        "alpha:M4B",
        "press",
        "digits:2",
    ]
    rows = await ivr.readings()
    assert len(rows) == 1 and rows[0]["value"] == "777" and rows[0]["verdict"] == "accepted"
    async with ivr.gateway.engine.connect() as conn:
        payload = (await conn.execute(select(inbound.c.payload))).scalar_one()
    assert "M-4B" in payload and "(keypad)" in payload


async def test_phone_of_two_accounts_is_asked_for_the_account(ivr: Ivr) -> None:
    pbx = await ivr.call(["1", *keys("1000005#"), *keys("100#"), "1", None], callerid=PHONE_TWO_ACCOUNTS)
    assert "account_is" not in pbx.heard and "enter_account" in pbx.heard
    rows = await ivr.readings()
    assert len(rows) == 1 and rows[0]["value"] == "100"


async def test_wrong_account_then_right_one(ivr: Ivr) -> None:
    pbx = await ivr.call(
        ["1", *keys("9999999#"), *keys("1000006#"), *keys("55#"), "1", None], callerid=STRANGER
    )
    assert pbx.heard.count("enter_account") == 2
    assert pbx.heard[pbx.heard.index("enter_account") + 1] == "account_not_found"
    assert pbx.variables["IVR_RESULT"] == "done"
    assert [r["value"] for r in await ivr.readings()] == ["55"]


async def test_three_wrong_accounts_go_to_the_operator(ivr: Ivr) -> None:
    pbx = await ivr.call(["1", *keys("1#"), *keys("2#"), *keys("3#")], callerid=STRANGER)
    assert pbx.heard.count("account_not_found") == 3
    assert pbx.heard[-1] == "operator"
    assert pbx.variables == {"IVR_RESULT": "operator", "IVR_REASON": "exhausted"}
    assert await ivr.inbound_count() == 0


async def test_rejected_value_says_why_and_reentry_is_accepted(ivr: Ivr) -> None:
    await ivr.call(["1", *keys("12345#"), "1", None])
    ivr.clock.advance(days=1)
    pbx = await ivr.call(
        ["1", *keys("12000#"), "1", "2", *keys("12350#"), "1", None], uniqueid="1763370099.7"
    )
    start = pbx.heard.index("rejected")
    assert pbx.heard[start : start + 3] == ["rejected", "reason_lower", "after_rejected"]
    assert "number:12345" not in pbx.heard  # an earlier reading is never said to the caller
    assert pbx.heard.count("accepted") == 1 and pbx.variables["IVR_RESULT"] == "done"
    rows = await ivr.readings()
    assert [(r["value"], r["verdict"]) for r in rows] == [
        ("12345", "accepted"),
        ("12000", "rejected"),
        ("12350", "accepted"),
    ]
    async with ivr.gateway.engine.connect() as conn:
        ids = (
            (await conn.execute(select(inbound.c.channel_message_id).order_by(inbound.c.id))).scalars().all()
        )
    assert ids == ["1763370000.1:1", "1763370099.7:1", "1763370099.7:2"]


async def test_too_many_digits_says_the_meters_digit_count(ivr: Ivr) -> None:
    pbx = await ivr.call(["1", *keys("1234567#"), "1", "0"])
    start = pbx.heard.index("rejected")
    assert pbx.heard[start : start + 3] == ["rejected", "reason_digits", "number:6"]
    assert pbx.variables == {"IVR_RESULT": "operator", "IVR_REASON": "key", "IVR_ACCOUNT": "1000001"}


async def test_reentry_at_read_back(ivr: Ivr) -> None:
    pbx = await ivr.call(["1", *keys("12354#"), "2", *keys("12345#"), "1", None])
    assert pbx.heard.count("you_entered") == 2
    assert "number:12354" in pbx.heard and "number:12345" in pbx.heard
    assert [r["value"] for r in await ivr.readings()] == ["12345"]
    assert await ivr.inbound_count() == 1


async def test_two_rate_meter_asks_day_and_night(ivr: Ivr) -> None:
    pbx = await ivr.call(["1", *keys("5000#"), "1", *keys("2000*25#"), "1", None], callerid=PHONE_2)
    assert "zone_T1_day" in pbx.heard and "zone_T2_night" in pbx.heard
    assert pbx.heard.count("reading_keys") == 1
    rows = await ivr.readings()
    assert {(r["zone"], r["value"]) for r in rows} == {("T1", "5000"), ("T2", "2000.25")}
    assert len({r["inbound_id"] for r in rows}) == 1  # one submission for both zones


async def test_silence_on_the_main_menu_reaches_the_operator(ivr: Ivr) -> None:
    pbx = await ivr.call([None, None, None])
    assert pbx.heard.count("no_input") == 3
    assert pbx.heard[-1] == "operator"
    assert pbx.variables["IVR_RESULT"] == "operator" and pbx.variables["IVR_REASON"] == "exhausted"


async def test_a_pause_ends_the_number_and_a_wrong_key_is_said(ivr: Ivr) -> None:
    pbx = await ivr.call(["7", "1", *keys("4321"), None, "1", None])
    assert pbx.heard[len(GREETING)] == "wrong_key"
    assert [r["value"] for r in await ivr.readings()] == ["4321"]


async def test_silence_after_the_verdict_says_goodbye(ivr: Ivr) -> None:
    pbx = await ivr.call(["1", *keys("100#"), "1", None])
    assert pbx.heard[-2:] == ["after_accepted", "goodbye"]
    assert "no_input" not in pbx.heard


# where the caller presses 0: keys, caller id, readings stored
OPERATOR_FROM: dict[str, tuple[list[str | None], str, int]] = {
    "main": (["0"], PHONE_1, 0),
    "account": (["1", *keys("0#")], STRANGER, 0),
    "meter": (["1", *keys("1000004#"), "0"], STRANGER, 0),
    "reading": (["1", *keys("0#")], PHONE_1, 0),
    "readback": (["1", *keys("100#"), "0"], PHONE_1, 0),
    "verdict": (["1", *keys("100#"), "1", "0"], PHONE_1, 1),
}


async def test_zero_reaches_the_operator_from_every_level(ivr: Ivr) -> None:
    for n, (step, (caller, callerid, stored)) in enumerate(OPERATOR_FROM.items()):
        before = await ivr.inbound_count()
        pbx = await ivr.call(caller, callerid=callerid, uniqueid=f"1763372000.{n}")
        assert pbx.heard[-1] == "operator", step
        assert pbx.variables["IVR_RESULT"] == "operator" and pbx.variables["IVR_REASON"] == "key", step
        assert await ivr.inbound_count() - before == stored, step


async def test_star_goes_back_a_level(ivr: Ivr) -> None:
    # reading entry -> back to the account; account entry -> back to the main menu
    pbx = await ivr.call(["1", *keys("*#"), *keys("*#"), "1", *keys("1000006#"), *keys("9#"), "1", None])
    assert pbx.heard.count("main_menu") == 2
    assert pbx.heard.count("enter_account") == 2
    rows = await ivr.readings()
    assert len(rows) == 1 and rows[0]["value"] == "9"


# A hang-up at each step: nothing half-stored before the caller confirms, nothing lost after.
# step: keys pressed, the prompt being played when the caller hangs up, stored
HANG_UP_AT: dict[str, tuple[list[str | None], str | None, int]] = {
    "greeting": (["1"], "welcome", 0),
    "menu": ([HANG], None, 0),
    "reading": (["1", HANG], None, 0),
    "half-number": (["1", *keys("123"), HANG], None, 0),
    "readback": (["1", *keys("124#")], "you_entered", 0),
    "confirm": (["1", *keys("125#"), HANG], None, 0),
    "confirm-then-hang-up": (["1", *keys("126#"), "1!"], None, 1),  # presses 1 and hangs up at once
    "verdict": (["1", *keys("127#"), "1"], "accepted", 1),
}


async def test_hang_up_at_each_step(ivr: Ivr) -> None:
    for n, (step, (caller, hangup_on, stored)) in enumerate(HANG_UP_AT.items()):
        ivr.clock.advance(hours=1)
        before = await ivr.inbound_count(), len(await ivr.readings())
        pbx = await ivr.call(caller, hangup_on=hangup_on, uniqueid=f"1763373000.{n}")
        assert pbx.dead, step
        assert await ivr.inbound_count() - before[0] == stored, step
        assert len(await ivr.readings()) - before[1] == stored, step
        assert "IVR_RESULT" not in pbx.variables, step
        # After the hang-up the gateway sends at most one more command (answered 511), then leaves.
        assert pbx.dead_at is not None and len(pbx.commands) - pbx.dead_at <= 1, step
    assert [(r["value"], r["verdict"]) for r in await ivr.readings()] == [
        ("126", "accepted"),
        ("127", "accepted"),
    ]


async def test_hang_up_during_a_two_zone_entry_stores_nothing(ivr: Ivr) -> None:
    pbx = await ivr.call(["1", *keys("5000#"), "1", *keys("20"), HANG], callerid=PHONE_2)
    assert pbx.dead and "zone_T2_night" in pbx.heard
    assert await ivr.inbound_count() == 0


async def test_an_unregistered_caller_is_handed_to_an_operator_before_hearing_anything(
    ivr_refusing: Ivr,
) -> None:
    ivr = ivr_refusing
    pbx = await ivr.call(["1", *keys("1000004#"), "1", *keys("777#"), "1"], callerid=STRANGER)
    assert pbx.variables == {"IVR_RESULT": "operator", "IVR_REASON": "unverified_sender"}
    assert "choose_meter" not in pbx.heard and not any(
        h.startswith(("number:", "digits:")) for h in pbx.heard
    )
    unknown = await ivr.call(["1", *keys("9999999#")], callerid=STRANGER)
    assert unknown.heard == pbx.heard and unknown.variables == pbx.variables  # existence is not told
    # The holder's caller id still goes straight to the reading.
    pbx = await ivr.call(["1", *keys("12345#"), "1", None], callerid=PHONE_1)
    assert pbx.variables == {"IVR_RESULT": "done"}


async def test_under_accept_a_stranger_is_not_told_the_meters_digits(ivr: Ivr) -> None:
    pbx = await ivr.call(["1", *keys("1000001#"), *keys("1234567#"), "1", "0"], callerid=STRANGER)
    start = pbx.heard.index("rejected")
    assert pbx.heard[start : start + 3] == ["rejected", "reason_digits", "after_rejected"]


async def test_unusual_consumption_is_confirmed_by_the_caller(ivr: Ivr) -> None:
    intake, clock = ivr.gateway.intake, ivr.clock
    now = clock.now
    for days_ago, value in ((60, "1000"), (30, "1300")):
        clock.now = now - timedelta(days=days_ago)
        v = await intake.submit(
            Submission(Channel.IVR, clock.now, "+79161234567", {"T": value}, account="1000001")
        )
        assert v.accepted, v
    clock.now = now
    pbx = await ivr.call(["1", *keys("3000#"), "1", "1", None])
    start = pbx.heard.index("unusual")
    assert pbx.heard[start : start + 3] == ["unusual", "confirm_unusual", "accepted"]
    rows = await ivr.readings()
    assert (rows[-1]["value"], rows[-1]["verdict"]) == ("3000", "accepted")


async def test_held_for_review_and_next_period_are_said(ivr: Ivr) -> None:
    clock = ivr.clock
    now = clock.now
    clock.now = now - timedelta(days=1)
    device = Submission(Channel.DEVICE, clock.now, "dev-1", {"T": "100"}, meter_serial="M-6")
    assert (await ivr.gateway.intake.submit(device)).accepted
    clock.now = now
    # 50 kWh more than the meter's own device reported a day ago: stored, held for the back office
    pbx = await ivr.call(["1", *keys("1000006#"), *keys("150#"), "1", None], callerid=STRANGER)
    assert "flagged" in pbx.heard and "accepted" not in pbx.heard
    clock.now = now.replace(day=27)  # past the cut-off day: counted for December
    pbx = await ivr.call(["1", *keys("200#"), "1", None], uniqueid="1763379999.1")
    start = pbx.heard.index("accepted")
    assert pbx.heard[start : start + 3] == ["accepted", "reason_next_period", "receipt"]
    verdicts = [(r["value"], r["verdict"], r["period"]) for r in await ivr.readings()]
    assert verdicts == [
        ("100", "accepted", "2026-11"),
        ("150", "flagged", "2026-11"),
        ("200", "accepted", "2026-12"),
    ]


async def test_a_repeated_agi_session_does_not_submit_twice(ivr: Ivr) -> None:
    first = await ivr.call(["1", *keys("500#"), "1", None], uniqueid="1763370123.5")
    again = await ivr.call(["1", *keys("500#"), "1", None], uniqueid="1763370123.5")
    assert first.heard == again.heard  # the same receipt is said again
    assert await ivr.inbound_count() == 1 and len(await ivr.readings()) == 1


async def test_pbx_errors_send_the_caller_to_an_operator(ivr: Ivr) -> None:
    usage = [
        "520-Invalid command syntax.  Proper usage follows:\n",
        " Usage: SAY NUMBER <number> <escape digits> [gender]\n",
        "520 End of proper usage.\n",
    ]
    pbx = await ivr.call(["1", *keys("100#")], refuse={"SAY NUMBER": usage})
    assert pbx.heard[-1] == "technical"
    assert pbx.variables == {"IVR_RESULT": "operator", "IVR_REASON": "technical"}
    assert await ivr.inbound_count() == 0
    pbx = await ivr.call(["1"], refuse={"SAY DIGITS": ["510 Invalid or unknown command\n"]})
    assert pbx.variables["IVR_REASON"] == "technical"
    assert ivr.server()["outcomes"]["error"] == 2


async def test_unknown_script_and_garbage(ivr: Ivr) -> None:
    # Another script: the caller hears nothing and goes back to the dialplan's operator queue.
    pbx = await ivr.call(["1"], script="balance")
    assert pbx.heard == [] and pbx.variables == {"IVR_RESULT": "operator"}
    assert pbx.commands == ['SET VARIABLE IVR_RESULT "operator"']
    # Not AGI at all: the connection is closed without a word, and no call is counted.
    reader, writer = await asyncio.open_connection("127.0.0.1", ivr.server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    probe = ivr.server()
    assert probe["outcomes"] == {"error": 2} and probe["calls"] == 1


async def test_many_calls_at_once(ivr: Ivr) -> None:
    calls = [
        ivr.call(
            ["1", *keys(f"{1000 + i}#"), "1", None], callerid=f"+7900100{i:04d}", uniqueid=f"1763371000.{i}"
        )
        for i in range(1, EXTRA_ACCOUNTS + 1)
    ]
    started = time.perf_counter()
    done = await asyncio.gather(*calls)
    elapsed = time.perf_counter() - started
    assert all(p.variables == {"IVR_RESULT": "done"} for p in done)
    rows = await ivr.readings()
    assert len(rows) == EXTRA_ACCOUNTS and {r["verdict"] for r in rows} == {"accepted"}
    receipts = {p.heard[p.heard.index("receipt") + 1] for p in done}
    assert len(receipts) == EXTRA_ACCOUNTS
    print(f"{EXTRA_ACCOUNTS} concurrent calls in {elapsed:.2f} s")
    assert ivr.server()["calls"] == EXTRA_ACCOUNTS and ivr.server()["active_calls"] == 0


async def test_health_probe_and_window_dates(ivr: Ivr) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{ivr.gateway.port}/healthz") as resp:
            body = await resp.json()
    assert resp.status == 200
    assert body["checks"]["ivr"]["status"] == "ok" and body["checks"]["ivr"]["port"] == ivr.server.port
    pbx = await ivr.call(["2", None, None, None])
    start = pbx.heard.index("window_first")
    assert pbx.heard[start : start + 5] == [
        "window_first",
        "number:15",
        "window_last",
        "number:25",
        "window_late",
    ]


async def test_window_dates_are_the_callers_branch(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    """A caller whose phone is registered in a branch with its own window hears that branch's
    dates; a caller the registry does not know hears the default branch's ([calendar])."""
    config = make_config(db_url, tmp_path, ivr={"enabled": True, "port": 0, "timeout_seconds": 1})
    header, *rows = (tmp_path / "registry.csv").read_text(encoding="utf-8").splitlines()
    (tmp_path / "registry.csv").write_text(
        "\n".join([header + ",active,timezone,branch", *(r + ",,," for r in rows)])
        + "\n3000001,K-1,Меркурий 201,T,6,+79120000001,10,Екатеринбург,,,ekb\n",
        encoding="utf-8",
    )
    ekb = {"name": "Свердловский филиал", "window_start_day": 10, "cutoff_day": 20}
    config = config.model_copy(update={"branches": type(config.branches).model_validate({"ekb": ekb})})
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    try:
        ivr = await _ready(gateway, clock)
        heard = {}
        for who in ("+79120000001", "+79995550000"):
            pbx = await ivr.call(["2", None, None, None], callerid=who)
            start = pbx.heard.index("window_first")
            heard[who] = pbx.heard[start + 1], pbx.heard[start + 3]
        assert heard == {
            "+79120000001": ("number:10", "number:19"),
            "+79995550000": ("number:15", "number:25"),
        }
    finally:
        await gateway.stop()


async def test_disabled_ivr_serves_nothing(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(db_url, tmp_path)
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    try:
        assert "ivr" not in gateway.health_probes
        assert not any(getattr(t, "__name__", "") == "serve" for t in gateway.background)
    finally:
        await gateway.stop()
