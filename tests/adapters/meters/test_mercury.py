"""Mercury 230/234 meters read by the bus worker with Incotex's protocol: over a serial line (a socat
pty pair, the simulated meter on the other end) and behind a TCP converter; the channel opened once
and again when the meter has closed it, a wrong password, a channel that will not open, a wrong
CRC, an answer that stops half-way, silence, and a replaced meter end where operators and billing
see them. The meters of these tests sit behind 100/5 A current transformers (registry ct_ratio)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from adapters.meters.config import ModbusConfig
from adapters.meters.poller import load_modbus_profiles
from adapters.meters.protocols import mercury as m
from adapters.meters.simulator_mercury import SimulatedMercuryLine, SimulatedMercuryMeter
from gateway.config import ConfigError
from gateway.store.schema import meters, readings
from tests.adapters.meters.rig import Rig, bus_config, rig, socat_pair, until
from tests.conftest import FakeClock

OPEN, SERIAL, ENERGY = m.OPEN, m.READ_PARAMETER, m.READ_ARRAY


def mercury(**kw: Any) -> SimulatedMercuryMeter:
    meter = SimulatedMercuryMeter(7, serial="23400001", **kw)
    meter.set_kwh(0, "6530.34")
    meter.set_kwh(1, "3962.41")
    meter.set_kwh(2, "2567.93")
    meter.set_kwh(3, 0)
    meter.energy[4] = (None, None)  # a tariff the meter does not count
    return meter


def mercury_bus(transport: str, **kw: Any) -> Any:
    meter = {"unit": 7, "serial": "HG-1", "profile": "mercury_234", **kw.pop("meter", {})}
    return bus_config("hg1", transport, [meter], latency_ms=30, **kw)


async def booked(r: Rig, serial: str) -> list[tuple[str, str, str | None, str | None, str]]:
    """(zone, value, raw_value, ratio, verdict) of the meter's stored readings, oldest first."""
    async with r.gateway.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    readings.c.zone,
                    readings.c.value,
                    readings.c.raw_value,
                    readings.c.ratio,
                    readings.c.verdict,
                )
                .join(meters, meters.c.id == readings.c.meter_id)
                .where(meters.c.serial == serial)
                .order_by(readings.c.id)
            )
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_serial_line_opens_the_channel_once_and_bills_register_times_ratio(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    sim = mercury()
    with socat_pair(tmp_path) as (a, b, _):
        line = SimulatedMercuryLine([sim])
        await line.start_serial(b, baudrate=9600)
        try:
            async with rig(db_url, tmp_path, clock, mercury_bus("rtu", device=a, baudrate=9600)) as r:
                verdict = await r.poll(7)
                assert verdict is not None and verdict.status.value == "accepted", r.meter(7).health()
                # the registry has HG-1 behind 100/5 A transformers: billed = register x 20
                assert await booked(r, "HG-1") == [
                    ("T1", "79248.200", "3962.410", "20", "accepted"),
                    ("T2", "51358.600", "2567.930", "20", "accepted"),
                ]
                # open, serial number, then one energy request per tariff billed: HG-1 is T1;T2
                assert sim.requests == [OPEN, SERIAL, ENERGY, ENERGY]
                health = r.meter(7).health()
                assert health["identification"] == "read" and r.meter(7).identity == "23400001"
                # the channel stays open: the next poll asks at once
                sim.requests.clear()
                sim.set_kwh(1, "3963")
                assert (await r.poll(7)).status.value == "accepted"
                assert sim.requests == [SERIAL, ENERGY, ENERGY]
                # the meter closed its channel (its own time-out): answered 5, opened again, read
                sim.close_channel()
                sim.requests.clear()
                assert (await r.poll(7)).status.value == "accepted"
                assert sim.requests == [SERIAL, OPEN, SERIAL, ENERGY, ENERGY]
                assert r.meter(7).errors == {}
        finally:
            await line.stop()


async def test_a_wrong_password_is_reported_per_meter_and_then_works(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    sim = mercury()
    line = SimulatedMercuryLine([sim])
    port = await line.start_tcp()
    try:
        bus = mercury_bus("tcp", host="127.0.0.1", port=port, meter={"password": "123456"})
        async with rig(db_url, tmp_path, clock, bus) as r:
            assert await r.poll(7) is None
            health = r.meter(7).health()
            assert health["status"] == "failing" and health["errors"] == {"auth": 1}, health
            assert "refuses to open its channel at access level 1" in health["last_error"]
            assert r.poller.metrics.errors.labels("hg1", f"127.0.0.1:{port}/7", "auth")._value.get() == 1
            assert sim.refused_passwords == 1 and sim.requests == [OPEN]
            sim.passwords[1] = "123456"  # the meter's password was changed to the configured one
            assert (await r.poll(7)).status.value == "accepted"
    finally:
        await line.stop()


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("bad_crc", "crc"),
        ("stop", "timeout"),
        ("silent", "timeout"),
        ("garbage", "crc"),
        ("closed", "closed"),
    ],
)
async def test_faults_behind_a_tcp_converter_are_counted_per_meter(
    db_url: str, tmp_path: Path, clock: FakeClock, fault: str, kind: str
) -> None:
    sim = mercury()
    line = SimulatedMercuryLine([sim])
    port = await line.start_tcp()
    try:
        async with rig(db_url, tmp_path, clock, mercury_bus("tcp", host="127.0.0.1", port=port)) as r:
            assert (await r.poll(7)).status.value == "accepted"
            sim.fault = fault
            assert await r.poll(7) is None
            health = r.meter(7).health()
            assert health["status"] == "failing" and health["errors"] == {kind: 1}, health
            if fault == "stop":
                assert "stopped after 9 bytes" in health["last_error"]
            assert len(await booked(r, "HG-1")) == 2
            sim.fault = None
            assert (await r.poll(7)).status.value == "accepted", r.meter(7).health()
            assert len(await booked(r, "HG-1")) == 4
    finally:
        await line.stop()


async def test_a_replaced_meter_is_an_event_and_goes_on_under_its_number(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    sim = mercury()
    line = SimulatedMercuryLine([sim])
    port = await line.start_tcp()
    try:
        async with rig(db_url, tmp_path, clock, mercury_bus("tcp", host="127.0.0.1", port=port)) as r:
            assert (await r.poll(7)).status.value == "accepted"
            sim.serial = "23400099"  # another meter at network address 7, its channel not open yet
            sim.close_channel()
            sim.set_kwh(1, "1.5")
            sim.set_kwh(2, "0.5")
            verdict = await r.poll(7)
            assert verdict.status.value == "accepted", verdict
            assert verdict.meter_serial == "23400099"
            assert await booked(r, "23400099") == [
                ("T1", "30.000", "1.500", "20", "accepted"),
                ("T2", "10.000", "0.500", "20", "accepted"),
            ]
            events = [e for e in await r.events() if e["kind"] == "meter_replaced"]
            assert [(e["old_serial"], e["new_serial"]) for e in events] == [("HG-1", "23400099")]
    finally:
        await line.stop()


@pytest.mark.parametrize("transport", ["rtu", "tcp"])
async def test_a_slow_store_does_not_hold_the_line_and_a_stop_loses_no_reading(
    db_url: str, tmp_path: Path, clock: FakeClock, transport: str
) -> None:
    """The serial line is the scarce thing: while the store is slow to take the first meter's
    reading, the bus goes on to read the next meter; a meter is not read again before its last
    reading has its verdict; and a gateway stopping stores what it has already read."""
    first, second = mercury(), SimulatedMercuryMeter(8, serial="23400099")
    second.set_kwh(0, "10.5")
    second.set_kwh(1, "7")
    second.set_kwh(2, "3.5")
    line = SimulatedMercuryLine([first, second])
    meters_ = [
        {"unit": 7, "serial": "HG-1", "profile": "mercury_234"},
        {"unit": 8, "serial": "23400099", "profile": "mercury_234"},
    ]
    with contextlib.ExitStack() as stack:
        if transport == "tcp":
            where: dict[str, Any] = {"host": "127.0.0.1", "port": await line.start_tcp()}
        else:
            a, b, _ = stack.enter_context(socat_pair(tmp_path))
            await line.start_serial(b, baudrate=9600)
            where = {"device": a, "baudrate": 9600}
        bus = bus_config("hg1", transport, meters_, latency_ms=30, interval_seconds=0.05, **where)
        await _slow_store_run(db_url, tmp_path, clock, bus, line, first, second)


async def _slow_store_run(
    db_url: str, tmp_path: Path, clock: FakeClock, bus: Any, line: Any, first: Any, second: Any
) -> None:
    try:
        async with rig(db_url, tmp_path, clock, bus) as r:
            store_free = asyncio.Event()
            waiting: list[str | None] = []
            submit = r.poller.intake_submit

            async def slow_store(sub: Any) -> Any:
                waiting.append(sub.meter_serial)
                await store_free.wait()
                return await submit(sub)

            r.poller.intake_submit = slow_store  # type: ignore[method-assign]
            task = asyncio.create_task(r.worker.run())
            await until(lambda: ENERGY in first.requests and ENERGY in second.requests)
            await asyncio.sleep(0.3)  # six intervals: neither meter is read again while its reading waits
            assert first.requests == [OPEN, SERIAL, ENERGY, ENERGY]
            assert second.requests == [OPEN, SERIAL, ENERGY, ENERGY]
            assert sorted(waiting, key=str) == ["23400099", "HG-1"]
            assert await booked(r, "HG-1") == []

            # the gateway stops while both readings still wait for the store: they are stored
            asyncio.get_running_loop().call_later(0.2, store_free.set)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert await booked(r, "HG-1") == [
                ("T1", "79248.200", "3962.410", "20", "accepted"),
                ("T2", "51358.600", "2567.930", "20", "accepted"),
            ]
            assert [row[:2] for row in await booked(r, "23400099")] == [("T1", "140.000"), ("T2", "70.000")]
    finally:
        await line.stop()


def test_frames_follow_the_description() -> None:
    from pymodbus.framer.rtu import FramerRTU

    for _ in range(20):  # the CRC is Modbus' (pymodbus sends its two bytes the same way)
        data = os.urandom(1 + os.urandom(1)[0] % 40)
        assert m.crc16(data).to_bytes(2, "little") == FramerRTU.compute_CRC(data).to_bytes(2, "big")
    assert m.test_request(0) == bytes.fromhex("00 00 01 b0")
    assert m.open_request(7, 1, "111111") == m.frame(bytes.fromhex("07 01 01 01 01 01 01 01 01"))
    assert m.energy_request(7, 2)[:4] == bytes.fromhex("07 05 00 02")
    assert m.serial_request(7)[:3] == bytes.fromhex("07 08 00")
    # A+ of 123456 Wh on the wire: byte 2, byte 3, byte 0, byte 1 of 0x0001E240
    assert m.energy_bytes(123456) == bytes.fromhex("01 00 40 e2")
    payload = m.energy_bytes(123456) + m.energy_bytes(None) + m.NO_VALUE + m.energy_bytes(7)
    assert m.energy_values(payload) == {"A+": 123456, "A-": None, "R+": None, "R-": 7}
    assert m.serial_text(bytes.fromhex("0c 22 38 4e 01 02 18")) == "12345678"
    with pytest.raises(m.FrameError):
        m.serial_text(bytes.fromhex("64 00 00 00"))  # 100 is no pair of digits
    # a state frame ends an answer early and is told apart from a CRC error
    complete: Any = m.answer_complete(m.ENERGY_FRAME)
    refused = m.frame(bytes([7, m.NOT_OPEN]))
    assert complete(refused) == 4
    assert complete(refused[:2]) == -2 and complete(m.frame(bytes([7]) + bytes(5))) == -(m.ENERGY_FRAME - 8)
    with pytest.raises(m.FrameError) as err:
        m.check_answer(7, refused, m.ENERGY_FRAME)
    assert (err.value.kind, err.value.state) == ("exception", m.NOT_OPEN)
    with pytest.raises(m.FrameError) as err:
        m.check_answer(8, m.frame(bytes([7]) + bytes(16)), m.ENERGY_FRAME)
    assert err.value.kind == "garbage"
    assert m.password_bytes("111111") == bytes([1] * 6)
    assert m.password_bytes("abc123") == b"abc" + bytes([1, 2, 3])


def test_configuration_refuses_what_a_mercury_meter_cannot_take() -> None:
    def config(**meter: Any) -> ModbusConfig:
        return ModbusConfig.model_validate(
            {
                "buses": [
                    {
                        "name": "hg",
                        "transport": "tcp",
                        "host": "127.0.0.1",
                        "meters": [{"unit": 7, "profile": "mercury_230", **meter}],
                    }
                ]
            }
        )

    with pytest.raises(
        ConfigError, match=r"modbus\.buses\[0\]\.meters\[0\]\.password: a Mercury password is six"
    ):
        load_modbus_profiles(config(password="12345"))
    with pytest.raises(ConfigError, match=r"meters\[0\]\.unit: a Mercury network address is 1\.\.240"):
        load_modbus_profiles(config(unit=241))
    assert "mercury_230" in load_modbus_profiles(config(password="222222", access_level=2))


def test_energy_counted_in_wh_is_billed_in_kwh() -> None:
    from adapters.meters.poller import kwh_text, zone_values
    from adapters.meters.profiles.named import mercury_value
    from tests.adapters.meters.rig import PROFILES

    profile = PROFILES["mercury_230"]
    wire = {"import_total": m.energy_bytes(6530340), "import_t1": m.energy_bytes(1), "import_t2": m.NO_VALUE}
    values = {name: mercury_value(profile.register(name), data) for name, data in wire.items()}
    by_zone = zone_values(profile, values, ("T", "T1", "T2"))
    assert {z: None if v is None else kwh_text(v) for z, v in by_zone.items()} == {
        "T": "6530.340",
        "T1": "0.001",
        "T2": None,
    }


async def test_demo_mercury_meter_is_polled_and_booked_times_its_ratio(db_url: str, tmp_path: Path) -> None:
    from adapters.meters.simulator_mercury import demo_mercury_bus, demo_mercury_meter
    from tests.adapters.meters.rig import demo_meter_polled

    line = SimulatedMercuryLine([demo_mercury_meter()])
    async with demo_meter_polled(db_url, tmp_path, line, demo_mercury_bus) as (gateway, sim6):
        assert sim6.serial == "SIM-0006" and sim6.identity == "23400006"
        async with gateway.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(readings.c.zone, readings.c.value, readings.c.raw_value, readings.c.ratio)
                    .join(meters, meters.c.id == readings.c.meter_id)
                    .where(meters.c.serial == "SIM-0006")
                    .order_by(readings.c.id)
                    .limit(2)
                )
            ).all()
        assert [(r.zone, r.ratio) for r in rows] == [("T1", "20"), ("T2", "20")]
        assert all(Decimal(r.value) == Decimal(r.raw_value) * 20 for r in rows)


def test_a_poll_asks_only_for_the_tariffs_billed() -> None:
    from adapters.meters.drivers.mercury import tariffs_to_read
    from tests.adapters.meters.rig import PROFILES

    profile = PROFILES["mercury_234"]
    assert tariffs_to_read(profile, ("T1", "T2")) == [1, 2]
    assert tariffs_to_read(profile, ("T",)) == [0]
    assert tariffs_to_read(profile, None) == [0, 1, 2, 3, 4]  # a meter the registry does not know
