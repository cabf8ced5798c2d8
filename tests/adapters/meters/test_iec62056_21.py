"""IEC 62056-21 mode C meters (Energomera CE301 profile) read by the bus worker: over a real serial
line (a socat pty pair, the simulated meter on the other end, baud rate change included) and
behind a TCP converter; a wrong BCC, a readout that stops half-way, silence, noise and a replaced
meter end where operators and billing see them."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.meters.config import ModbusConfig
from adapters.meters.drivers.iec62056_21 import IecDriver
from adapters.meters.poller import load_modbus_profiles
from adapters.meters.protocols import iec62056_21 as iec
from adapters.meters.simulator_iec62056 import SimulatedIecLine, SimulatedIecMeter
from adapters.meters.stream_link import StreamLink
from gateway.config import ConfigError
from tests.adapters.meters.rig import PROFILES, bus_config, rig, socat_pair
from tests.conftest import FakeClock

CE301 = PROFILES["energomera_ce301"]
SERIAL = "009217054001234"


def ce301(**values: Any) -> SimulatedIecMeter:
    defaults: dict[str, Any] = {
        "import_total": Decimal("6530.34"),
        "import_t1": Decimal("3962.41"),
        "import_t2": Decimal("2567.93"),
        "import_t3": Decimal("0"),
        "import_t4": Decimal("0"),
        "serial": SERIAL,
    }
    return SimulatedIecMeter(CE301, device_address="301", values={**defaults, **values})


def iec_bus(transport: str, **kw: Any) -> Any:
    meter = {"unit": 1, "serial": "CE-301", "profile": "energomera_ce301", "device_address": "301"}
    return bus_config("iec1", transport, [meter], latency_ms=30, **kw)


async def test_serial_line_signs_on_at_300_and_reads_at_the_offered_speed(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    sim_meter = ce301()
    with socat_pair(tmp_path) as (a, b, _):
        line = SimulatedIecLine([sim_meter])
        # This machine's ptys refuse the standard's 7E1 (tcsetattr: EINVAL); a pty does not frame
        # characters anyway, so the bus sets 8N2 and the driver keeps a bus's own character frame.
        await line.start_serial(b, bytesize=8, parity="N", stopbits=2)
        try:
            bus = iec_bus("rtu", device=a, baudrate=9600, bytesize=8, parity="N", stopbits=2)
            async with rig(db_url, tmp_path, clock, bus) as r:
                verdict = await r.poll(1)
                assert verdict is not None and verdict.status.value == "accepted", r.meter(1).health()
                assert await r.stored("CE-301") == [
                    ("T1", "3962.41", "accepted"),
                    ("T2", "2567.93", "accepted"),
                ]
                # the meter offered 9600 (Z = '5'): the readout came at 9600, and the port is back at 300
                assert sim_meter.baudrates == [9600]
                link = r.meter(1).link
                assert isinstance(link, StreamLink) and link.line_changes[-2:] == [9600, 300]
                health = r.meter(1).health()
                assert health["identification"] == "read" and health["serial"] == "CE-301"
                assert r.meter(1).identity == SERIAL
        finally:
            await line.stop()


async def test_a_7e1_line_over_8n1_ports_with_the_parity_bit_framed_in_software(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    """The standard's 7E1 on a socat pair (whose ptys refuse parity): both ends carry 8N1 and frame
    the parity bit themselves, so the pty carries the very bits of a 7E1 line; the gateway's
    `software_parity` is what makes the meter understand it."""
    sim_meter = ce301()
    with socat_pair(tmp_path) as (a, b, _):
        line = SimulatedIecLine([sim_meter], parity="E")
        await line.start_serial(b, bytesize=8, parity="N", stopbits=1)
        try:
            plain = iec_bus("rtu", device=a, baudrate=9600)  # 7E1 asked of a port that refuses it
            async with rig(db_url, tmp_path, clock, plain) as r:
                assert await r.poll(1) is None
                health = r.meter(1).health()
                assert health["errors"] == {"disconnected": 1}, health
                assert (
                    "refuses 300 baud 7E1" in health["last_error"]
                    and "software_parity" in health["last_error"]
                )
            assert sim_meter.readouts == 0

            bus = iec_bus("rtu", device=a, baudrate=9600, software_parity=True)
            async with rig(db_url, tmp_path, clock, bus) as r:
                verdict = await r.poll(1)
                assert verdict is not None and verdict.status.value == "accepted", r.meter(1).health()
                assert await r.stored("CE-301") == [
                    ("T1", "3962.41", "accepted"),
                    ("T2", "2567.93", "accepted"),
                ]
                assert sim_meter.baudrates == [9600]
                # the request as a 7E1 line carries it: '/', '1' and CR have an odd number of ones
                assert bytes(line.wire).startswith(bytes.fromhex("af3f3330b1218d0a"))

                sim_meter.fault = "bad_parity"
                assert await r.poll(1) is None
                health = r.meter(1).health()
                assert health["errors"] == {"crc": 1} and "parity" in health["last_error"], health
                sim_meter.fault = None
                assert (await r.poll(1)).status.value == "accepted"
        finally:
            await line.stop()


async def test_without_software_parity_a_7e1_meter_does_not_understand(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    """A gateway sending plain 8N1 to a 7E1 meter: the meter drops the characters whose parity is
    wrong and never answers; the operator sees a timeout on that meter."""
    sim_meter = ce301()
    with socat_pair(tmp_path) as (a, b, _):
        line = SimulatedIecLine([sim_meter], parity="E")
        await line.start_serial(b, bytesize=8, parity="N", stopbits=1)
        try:
            bus = iec_bus("rtu", device=a, baudrate=9600, bytesize=8, parity="N", stopbits=1)
            async with rig(db_url, tmp_path, clock, bus) as r:
                assert await r.poll(1) is None
                assert r.meter(1).health()["errors"] == {"timeout": 1}
            assert sim_meter.readouts == 0
        finally:
            await line.stop()


def test_software_parity_is_for_7_bit_byte_protocol_lines(tmp_path: Path) -> None:
    modbus = {"unit": 1, "serial": "M-1", "profile": "eastron_sdm120"}
    with pytest.raises(ConfigError, match=r"buses\[0\].software_parity: for the byte protocols"):
        load_modbus_profiles(
            ModbusConfig(buses=[bus_config("m", "rtu", [modbus], device="/dev/null", software_parity=True)])
        )
    with pytest.raises(
        ConfigError, match=r"software_parity: needs 7 data bits with parity E or O \(this bus: 8N\)"
    ):
        load_modbus_profiles(
            ModbusConfig(
                buses=[iec_bus("rtu", device="/dev/null", bytesize=8, parity="N", software_parity=True)]
            )
        )
    load_modbus_profiles(ModbusConfig(buses=[iec_bus("rtu", device="/dev/null", software_parity=True)]))


def test_the_readout_speed_is_the_slower_of_meter_and_line() -> None:
    driver = IecDriver(lambda: None, max_baudrate=4800)
    assert driver.chosen_baudrate(9600, can_change=True) == 4800
    assert driver.chosen_baudrate(2400, can_change=True) == 2400
    assert driver.chosen_baudrate(9600, can_change=False) == 300  # behind a converter


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("bad_bcc", "crc"), ("stop", "timeout"), ("silent", "timeout"), ("garbage", "garbage")],
)
async def test_faults_behind_a_tcp_converter_are_counted_per_meter(
    db_url: str, tmp_path: Path, clock: FakeClock, fault: str, kind: str
) -> None:
    sim_meter = ce301()
    line = SimulatedIecLine([sim_meter])
    port = await line.start_tcp()
    try:
        async with rig(db_url, tmp_path, clock, iec_bus("tcp", host="127.0.0.1", port=port)) as r:
            sim_meter.fault = fault
            assert await r.poll(1) is None
            health = r.meter(1).health()
            assert health["status"] == "failing" and health["errors"] == {kind: 1}, health
            if fault == "stop":
                assert "stopped after" in health["last_error"]
            assert r.poller.metrics.errors.labels("iec1", f"127.0.0.1:{port}/1", kind)._value.get() == 1
            assert await r.stored("CE-301") == []
            sim_meter.fault = None
            verdict = await r.poll(1)
            assert verdict is not None and verdict.status.value == "accepted", r.meter(1).health()
            assert sim_meter.baudrates[-1] == 300  # a converter's line keeps the sign-on speed
    finally:
        await line.stop()


async def test_replaced_meter_behind_a_converter_is_an_event(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    sim_meter = ce301()
    line = SimulatedIecLine([sim_meter])
    port = await line.start_tcp()
    try:
        async with rig(db_url, tmp_path, clock, iec_bus("tcp", host="127.0.0.1", port=port)) as r:
            assert (await r.poll(1)).status.value == "accepted"
            sim_meter.set(serial="009217054009999", import_t1=Decimal("1.5"), import_t2=Decimal("0.5"))
            verdict = await r.poll(1)
            assert verdict.status.value == "accepted", verdict
            assert verdict.meter_serial == "009217054009999"
            assert await r.stored("009217054009999") == [("T1", "1.5", "accepted"), ("T2", "0.5", "accepted")]
            events = [e for e in await r.events() if e["kind"] == "meter_replaced"]
            assert [(e["old_serial"], e["new_serial"]) for e in events] == [("CE-301", "009217054009999")]
    finally:
        await line.stop()


def test_messages_follow_the_standard() -> None:
    assert iec.request_message("301") == b"/?301!\r\n"
    ident = iec.parse_identification(b"/EKt5CE301v12\r\n")
    assert (ident.manufacturer, ident.max_baudrate, ident.ident, ident.fast_reaction) == (
        "EKt",
        9600,
        "CE301v12",
        True,
    )
    assert iec.ack_message("5") == b"\x06050\r\n"
    frame = iec.data_message(["1.8.1(001234.5*kWh)", "ET0PE(1)(2)", "(3)"])
    assert frame[0] == iec.STX and frame[-2] == iec.ETX
    assert iec.parse_data_message(frame) == {
        "1.8.1": [("001234.5", "kWh")],
        "ET0PE": [("1", ""), ("2", ""), ("3", "")],
    }
    with pytest.raises(iec.FrameError) as err:
        iec.parse_data_message(frame[:-1] + bytes([frame[-1] ^ 1]))
    assert err.value.kind == "crc"
    with pytest.raises(iec.FrameError):
        iec.parse_identification(b"/EKT9CE301\r\n")  # '9' is no mode C baud rate


def test_a_bus_carries_one_protocol(tmp_path: Path) -> None:
    mixed = ModbusConfig.model_validate(
        {
            "buses": [
                {
                    "name": "mixed",
                    "transport": "tcp",
                    "host": "127.0.0.1",
                    "meters": [
                        {"unit": 1, "profile": "energomera_ce301"},
                        {"unit": 2, "profile": "eastron_sdm120"},
                    ],
                }
            ]
        }
    )
    with pytest.raises(ConfigError, match=r"modbus\.buses\[0\]\.meters: bus 'mixed' mixes protocols"):
        load_modbus_profiles(mixed)
    undetected = ModbusConfig.model_validate(
        {
            "buses": [
                {
                    "name": "iec",
                    "transport": "tcp",
                    "host": "127.0.0.1",
                    "meters": [{"unit": 1, "profile": "energomera_ce301"}, {"unit": 2}],
                }
            ]
        }
    )
    with pytest.raises(ConfigError, match="a meter without a profile is a Modbus meter"):
        load_modbus_profiles(undetected)


async def test_demo_iec_meter_is_polled_and_booked(db_url: str, tmp_path: Path) -> None:
    from adapters.meters.simulator_iec62056 import demo_iec_bus, demo_iec_meter
    from tests.adapters.meters.rig import demo_meter_polled

    line = SimulatedIecLine([demo_iec_meter()])
    async with demo_meter_polled(db_url, tmp_path, line, demo_iec_bus) as (_, sim4):
        assert sim4.serial == "SIM-0004" and sim4.identity == "009217054000004"
