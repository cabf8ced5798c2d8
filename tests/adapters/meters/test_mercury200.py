"""Mercury 200/201 meters read by the bus worker with the single-phase family's protocol: over a
serial line (a socat pty pair, the simulated meter on the other end) and behind a TCP converter;
a wrong CRC, an answer that stops half-way and a replaced meter end where operators and billing
see them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.meters.config import ModbusConfig
from adapters.meters.poller import load_modbus_profiles
from adapters.meters.protocols import mercury200 as m
from adapters.meters.simulator_mercury200 import SimulatedMercury200Line, SimulatedMercury200Meter
from gateway.config import ConfigError
from tests.adapters.meters.rig import bus_config, rig, socat_pair
from tests.conftest import FakeClock


def mercury200(address: int = 20000001, serial: int = 20000001) -> SimulatedMercury200Meter:
    meter = SimulatedMercury200Meter(address, serial=serial)
    meter.set_kwh(1, "3962.41")
    meter.set_kwh(2, "2567.93")
    return meter


def m200_bus(transport: str, **kw: Any) -> Any:
    meter = {"unit": 7, "serial": "M2-1", "profile": "mercury_200", "network_address": 20000001}
    return bus_config("m2", transport, [{**meter, **kw.pop("meter", {})}], latency_ms=30, **kw)


async def test_serial_line_reads_the_tariffs_and_the_serial(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    sim = mercury200()
    with socat_pair(tmp_path) as (a, b, _):
        line = SimulatedMercury200Line([sim, mercury200(address=20000002, serial=20000002)])
        await line.start_serial(b, baudrate=9600)
        try:
            async with rig(db_url, tmp_path, clock, m200_bus("rtu", device=a, baudrate=9600)) as r:
                verdict = await r.poll(7)
                assert verdict is not None and verdict.status.value == "accepted", r.meter(7).health()
                assert await r.stored("M2-1") == [
                    ("T1", "3962.41", "accepted"),
                    ("T2", "2567.93", "accepted"),
                ]
                # no channel to open: the serial number, then the four tariffs in one request
                assert sim.requests == [m.SERIAL, m.ENERGY]
                assert r.meter(7).identity == "20000001"
                assert r.meter(7).health()["identification"] == "read"
        finally:
            await line.stop()


@pytest.mark.parametrize(
    ("fault", "kind", "detail"),
    [("bad_crc", "crc", "CRC is wrong"), ("stop", "timeout", "stopped after 11 bytes")],
)
async def test_a_converter_line_faults_per_meter_and_recovers(
    db_url: str, tmp_path: Path, clock: FakeClock, fault: str, kind: str, detail: str
) -> None:
    # a one-tariff Mercury 201 addressed by its serial number (the factory's address); billed as
    # T, the sum of the tariffs the gateway adds
    sim = SimulatedMercury200Meter(20000018, serial=20000018)
    sim.set_kwh(1, "100.5")
    line = SimulatedMercury200Line([sim])
    port = await line.start_tcp()
    try:
        meter = {"serial": "20000018", "profile": "mercury_201", "network_address": None}
        async with rig(
            db_url, tmp_path, clock, m200_bus("tcp", host="127.0.0.1", port=port, meter=meter)
        ) as r:
            assert (await r.poll(7)).status.value == "accepted"
            assert await r.stored("20000018") == [("T", "100.50", "accepted")]
            sim.fault = fault
            assert await r.poll(7) is None
            health = r.meter(7).health()
            assert health["status"] == "failing" and health["errors"] == {kind: 1}, health
            assert detail in health["last_error"]
            sim.fault = None
            sim.set_kwh(2, "0.25")
            assert (await r.poll(7)).status.value == "accepted", r.meter(7).health()
            assert [v for _, v, _ in await r.stored("20000018")] == ["100.50", "100.75"]
    finally:
        await line.stop()


async def test_a_replaced_meter_is_an_event_and_goes_on_under_its_number(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    sim = mercury200()
    line = SimulatedMercury200Line([sim])
    port = await line.start_tcp()
    try:
        async with rig(db_url, tmp_path, clock, m200_bus("tcp", host="127.0.0.1", port=port)) as r:
            assert (await r.poll(7)).status.value == "accepted"
            sim.serial = 20000099  # another meter, given the old one's network address
            sim.set_kwh(1, "1.5")
            sim.set_kwh(2, "0.5")
            verdict = await r.poll(7)
            assert verdict.status.value == "accepted", verdict
            assert verdict.meter_serial == "20000099"
            assert await r.stored("20000099") == [("T1", "1.50", "accepted"), ("T2", "0.50", "accepted")]
            events = [e for e in await r.events() if e["kind"] == "meter_replaced"]
            assert [(e["old_serial"], e["new_serial"]) for e in events] == [("M2-1", "20000099")]
    finally:
        await line.stop()


def test_frames_follow_the_description() -> None:
    from pymodbus.framer.rtu import FramerRTU

    request = m.request(20000001, m.ENERGY)  # 20000001 = 0x01312D01
    assert request[:5] == bytes.fromhex("01 31 2d 01 27") and len(request) == 7
    assert request[5:] == FramerRTU.compute_CRC(request[:5]).to_bytes(2, "big")  # Modbus' CRC
    assert m.parse_request(request) == m.Request(20000001, m.ENERGY)
    sim = mercury200()
    answer = sim.answer(m.parse_request(request))
    assert answer is not None and len(answer) == m.ENERGY_FRAME
    assert answer[5:9] == bytes.fromhex("00 39 62 41")  # 3962.41 kWh as eight BCD digits
    assert m.energy_values(m.check_answer(20000001, m.ENERGY, answer)) == {1: 396241, 2: 256793, 3: 0, 4: 0}
    with pytest.raises(m.FrameError) as err:
        m.check_answer(20000002, m.ENERGY, answer)  # another meter's answer
    assert err.value.kind == "garbage"
    with pytest.raises(m.FrameError) as err:
        m.bcd(bytes.fromhex("00 3a 62 41"))
    assert err.value.kind == "garbage"
    complete: Any = m.answer_complete(m.ENERGY_FRAME)
    assert complete(answer[:10]) == -(m.ENERGY_FRAME - 10) and complete(answer) == m.ENERGY_FRAME
    with pytest.raises(m.FrameError):
        complete(answer[:-1] + bytes([answer[-1] ^ 1]))
    serial = sim.answer(m.parse_request(m.request(20000001, m.SERIAL)))
    assert serial is not None and m.serial_text(m.check_answer(20000001, m.SERIAL, serial)) == "20000001"


def test_configuration_needs_a_network_address() -> None:
    def config(**meter: Any) -> ModbusConfig:
        return ModbusConfig.model_validate(
            {
                "buses": [
                    {
                        "name": "m2",
                        "transport": "tcp",
                        "host": "127.0.0.1",
                        "meters": [{"unit": 7, "profile": "mercury_200", **meter}],
                    }
                ]
            }
        )

    with pytest.raises(ConfigError, match=r"meters\[0\]\.network_address: a Mercury 200 meter needs"):
        load_modbus_profiles(config(serial="M2-1"))
    assert "mercury_200" in load_modbus_profiles(config(serial="20000001"))
    assert "mercury_200" in load_modbus_profiles(config(serial="M2-1", network_address=1))
