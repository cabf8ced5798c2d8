"""DLMS/COSEM (СПОДЭС) meters read by the bus worker: over HDLC on a real serial line (a socat pty
pair, the simulated meter on the other end), over HDLC behind a TCP converter and over the DLMS
wrapper; a wrong password, a meter that stops mid-answer, a wrong check sequence, silence, a
missing serial number and a replaced meter end where operators and billing see them."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.meters.config import ModbusConfig
from adapters.meters.poller import load_modbus_profiles
from adapters.meters.protocols import dlms_apdu as apdu
from adapters.meters.protocols import dlms_hdlc as hdlc
from adapters.meters.simulator_dlms import SimulatedDlmsLine, SimulatedDlmsMeter
from gateway.config import ConfigError
from tests.adapters.meters.rig import PROFILES, bus_config, rig, socat_pair
from tests.conftest import FakeClock

SPODES = PROFILES["spodes_single_phase"]
PASSWORD = "12345678"


def spodes(**kw: Any) -> SimulatedDlmsMeter:
    values = {"import_t1": Decimal("3962.41"), "import_t2": Decimal("2567.93"), "serial": "04812345"}
    return SimulatedDlmsMeter(SPODES, physical=17, password=PASSWORD, values=values, scaler=-1, **kw)


def dlms_bus(transport: str, password: str = PASSWORD, **kw: Any) -> Any:
    meter = {"unit": 17, "serial": "DL-1", "profile": "spodes_single_phase", "password": password}
    return bus_config("dlms1", transport, [meter], latency_ms=30, **kw)


async def test_hdlc_on_a_serial_line(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    sim = spodes()
    with socat_pair(tmp_path) as (a, b, _):
        line = SimulatedDlmsLine([sim])
        await line.start_serial(b, 9600)
        try:
            async with rig(db_url, tmp_path, clock, dlms_bus("rtu", device=a, baudrate=9600)) as r:
                verdict = await r.poll(17)
                assert verdict is not None and verdict.status.value == "accepted", r.meter(17).health()
                assert await r.stored("DL-1") == [
                    ("T1", "3962.410", "accepted"),
                    ("T2", "2567.930", "accepted"),
                ]
                health = r.meter(17).health()
                assert health["identification"] == "read" and health["serial"] == "DL-1"
                assert r.meter(17).identity == "04812345" and sim.associations == 1
                # scaler_unit (attribute 3) is read once per meter; the next poll reads the values only
                assert (await r.poll(17)).status.value == "accepted"
                assert sim.gets.count(("1.0.1.8.1.255", 3)) == 1 and sim.gets.count(("1.0.1.8.1.255", 2)) == 2
        finally:
            await line.stop()


async def test_wrong_password_is_counted_and_a_right_one_reads(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    sim = spodes()
    sim.password = "87654321"  # the meter's password is not the configured one
    line = SimulatedDlmsLine([sim], framing="wrapper")
    port = await line.start_tcp()
    try:
        async with rig(db_url, tmp_path, clock, dlms_bus("tcp", host="127.0.0.1", port=port)) as r:
            assert await r.poll(17) is None
            health = r.meter(17).health()
            assert health["status"] == "failing" and health["errors"] == {"auth": 1}, health
            assert "authentication failure" in health["last_error"]
            assert r.poller.metrics.errors.labels("dlms1", f"127.0.0.1:{port}/17", "auth")._value.get() == 1
            assert sim.refused == 1 and sim.gets == [] and await r.stored("DL-1") == []
            sim.password = PASSWORD
            verdict = await r.poll(17)
            assert verdict is not None and verdict.status.value == "accepted", r.meter(17).health()
            assert await r.stored("DL-1") == [("T1", "3962.410", "accepted"), ("T2", "2567.930", "accepted")]
    finally:
        await line.stop()


@pytest.mark.parametrize(
    ("framing", "fault", "kind"),
    [
        ("hdlc", "stop", "timeout"),
        ("hdlc", "bad_fcs", "crc"),
        ("hdlc", "silent", "timeout"),
        ("wrapper", "stop", "timeout"),
    ],
)
async def test_faults_are_counted_per_meter_and_the_meter_recovers(
    db_url: str, tmp_path: Path, clock: FakeClock, framing: str, fault: str, kind: str
) -> None:
    sim = spodes()
    line = SimulatedDlmsLine([sim], framing=framing)
    port = await line.start_tcp()  # hdlc: a transparent converter in front of the line
    try:
        bus = dlms_bus("tcp", host="127.0.0.1", port=port, dlms_transport=framing)
        async with rig(db_url, tmp_path, clock, bus) as r:
            sim.fault = fault
            assert await r.poll(17) is None
            health = r.meter(17).health()
            assert health["status"] == "failing" and health["errors"] == {kind: 1}, health
            if fault == "stop":
                assert "stopped after" in health["last_error"]
            assert await r.stored("DL-1") == []
            sim.fault = None
            verdict = await r.poll(17)
            assert verdict is not None and verdict.status.value == "accepted", r.meter(17).health()
    finally:
        await line.stop()


async def test_replaced_meter_is_an_event_and_its_registers_are_scaled_anew(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    sim = spodes()
    line = SimulatedDlmsLine([sim], framing="wrapper")
    port = await line.start_tcp()
    try:
        async with rig(db_url, tmp_path, clock, dlms_bus("tcp", host="127.0.0.1", port=port)) as r:
            assert (await r.poll(17)).status.value == "accepted"
            # the new meter counts in whole Wh (scaler 0): its scaler_unit is read again
            sim.set(serial="04812399", import_t1=Decimal("1.5"), import_t2=Decimal("0.5"))
            sim.scaler = 0
            verdict = await r.poll(17)
            assert verdict.status.value == "accepted", verdict
            assert verdict.meter_serial == "04812399"
            assert await r.stored("04812399") == [("T1", "1.500", "accepted"), ("T2", "0.500", "accepted")]
            events = [e for e in await r.events() if e["kind"] == "meter_replaced"]
            assert [(e["old_serial"], e["new_serial"]) for e in events] == [("DL-1", "04812399")]
            assert sim.gets.count(("1.0.1.8.1.255", 3)) == 2
    finally:
        await line.stop()


async def test_a_meter_without_its_serial_object_is_read_under_the_configured_serial(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    sim = spodes(fault="no_serial")
    line = SimulatedDlmsLine([sim], framing="wrapper")
    port = await line.start_tcp()
    try:
        async with rig(db_url, tmp_path, clock, dlms_bus("tcp", host="127.0.0.1", port=port)) as r:
            verdict = await r.poll(17)
            assert verdict is not None and verdict.status.value == "accepted", r.meter(17).health()
            assert r.meter(17).health()["identification"] == "unavailable"
            assert await r.stored("DL-1") == [("T1", "3962.410", "accepted"), ("T2", "2567.930", "accepted")]
    finally:
        await line.stop()


def test_frames_and_apdus_follow_the_standards() -> None:
    assert hdlc.crc16(b"123456789") == 0x906E  # CRC-16/X.25 check value
    server, client = hdlc.ServerAddress(1, 17), hdlc.client_address(32)
    # SNRM and the AARQ of the reading client with password 12345678, as an independent DLMS
    # implementation (gurux) encodes them for server 1/17, client 32 (it proposes a larger PDU)
    assert hdlc.Frame(server.encode(), client, hdlc.SNRM).encode().hex() == "7ea00802234193e8017e"
    aarq = hdlc.Frame(
        server.encode(), client, hdlc.i_control(0, 0), hdlc.LLC_REQUEST + apdu.aarq(b"12345678")
    )
    assert (
        aarq.encode()
        .hex()
        .startswith(
            "7ea045022341102d0ae6e6006036a1090607608574050801018a0207808b0760857405080201ac0a8008"
            "3132333435363738be10040e01000000065f1f04000000100400"
        )
    )
    assert hdlc.decode(aarq.encode()) == aarq
    # four-byte server addresses above 127
    assert hdlc.ServerAddress(1, 0x1234).encode() == bytes([0x00, 0x02, 0x48, 0x69])
    assert hdlc.decode_server_address(bytes([0x00, 0x02, 0x48, 0x69])) == hdlc.ServerAddress(1, 0x1234)
    broken = bytearray(aarq.encode())
    broken[20] ^= 1
    with pytest.raises(hdlc.FrameError) as err:
        hdlc.decode(bytes(broken))
    assert err.value.kind == "crc"
    refused = apdu.parse_aare(apdu.aare(1, apdu.AUTHENTICATION_FAILURE, lls=True))
    assert not refused.accepted and refused.reason() == "association rejected: authentication failure"
    accepted = apdu.parse_aare(apdu.aare(0, 0, lls=True, conformance=apdu.CONFORMANCE_GET, max_pdu=0x200))
    assert accepted.accepted and (accepted.conformance, accepted.max_pdu) == (0x10, 0x200)
    get = apdu.get_request(1, 3, apdu.obis("1.0.1.8.0.255"), 2)
    assert get.hex() == "c001c100030100010800ff0200"
    assert apdu.parse_get_response(bytes.fromhex("c401c1000600000539"), 1) == 1337
    with pytest.raises(apdu.ApduError) as get_err:
        apdu.parse_get_response(bytes.fromhex("c401c10104"), 1)
    assert get_err.value.kind == "exception" and "object-undefined" in str(get_err.value)
    wrapped = apdu.wrap(32, 1, apdu.RLRQ)
    assert wrapped.hex() == "0001002000010005" + apdu.RLRQ.hex()
    assert apdu.wrapped_complete(wrapped[:-1]) is None and apdu.wrapped_complete(wrapped) == len(wrapped)
    assert apdu.unwrap(apdu.wrap(32, 1, apdu.RLRQ)) == (32, 1, apdu.RLRQ)


def test_hdlc_meters_need_a_physical_address_from_16() -> None:
    config = ModbusConfig.model_validate(
        {
            "buses": [
                {
                    "name": "spodes",
                    "transport": "rtu",
                    "device": "/dev/ttyUSB0",
                    "meters": [{"unit": 5, "profile": "spodes_single_phase"}],
                }
            ]
        }
    )
    with pytest.raises(ConfigError, match=r"modbus\.buses\[0\]\.meters\[0\]: an HDLC physical address is 16"):
        load_modbus_profiles(config)
    fixed = config.model_copy(deep=True)
    fixed.buses[0].meters[0].dlms_physical = 0x1234
    assert "spodes_single_phase" in load_modbus_profiles(fixed)


async def test_demo_dlms_meter_is_polled_and_booked(db_url: str, tmp_path: Path) -> None:
    from adapters.meters.simulator_dlms import demo_dlms_bus, demo_dlms_meter
    from tests.adapters.meters.rig import demo_meter_polled

    line = SimulatedDlmsLine([demo_dlms_meter()], framing="wrapper")
    async with demo_meter_polled(db_url, tmp_path, line, demo_dlms_bus) as (_, sim5):
        assert sim5.serial == "SIM-0005" and sim5.identity == "011223344550005"
