"""Modbus TCP polling against pymodbus servers holding each profile's register map.

What is checked is what operators and billing see: the stored readings and their verdicts,
the meter events, the health probe and the error counters.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.meters.modbus_link import LineTiming, rtu_reply_bytes
from adapters.meters.poller import kwh_text, read_plan, zone_values
from adapters.meters.profiles import load_profiles
from adapters.meters.simulator import SimulatedMeter
from gateway.config import ConfigError, load_config
from tests.adapters.meters.rig import PROFILES, bus_config, meter, rig, tcp_meters
from tests.conftest import FakeClock

# profile -> (registry serial, register values, what billing must receive per zone)
CASES: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
    "eastron_sdm120": ("MB-1", {"import_total": 12345.6, "serial": 11111111}, {"T": "12345.6"}),
    "eastron_sdm630": ("MB-6", {"import_total": 2048.25, "serial": 11111116}, {"T": "2048.25"}),
    "carlo_gavazzi_em340": ("MB-4", {"import_total": Decimal("98765.4")}, {"T": "98765.4"}),
    "wirenboard_wb_map3e": ("MB-5", {"import_total": Decimal("1234.56789")}, {"T": "1234.567"}),
    "schneider_iem3255": (
        "MB-2",
        {"import_t1": Decimal("4321.123"), "import_t2": Decimal("1234.5"), "import_total": 5555.623},
        {"T1": "4321.123", "T2": "1234.500"},
    ),
    "abb_b23": (
        "MB-3",
        {"import_t1": Decimal("100.01"), "import_t2": Decimal("200.02"), "import_t3": Decimal("300.03")},
        {"T1": "100.01", "T2": "200.02", "T3": "300.03"},
    ),
}


@pytest.mark.parametrize("profile_id", sorted(CASES))
async def test_each_profile_is_read_over_tcp_and_booked(
    db_url: str, tmp_path: Path, clock: FakeClock, profile_id: str
) -> None:
    serial, values, expected = CASES[profile_id]
    sim_meter = meter(profile_id, 7, **values)
    async with tcp_meters(sim_meter) as sim:
        bus = bus_config(
            "b1",
            "tcp",
            [{"unit": 7, "serial": serial, "profile": profile_id}],
            host="127.0.0.1",
            port=sim.port,
        )
        async with rig(db_url, tmp_path, clock, bus) as r:
            verdict = await r.poll(7)
            assert verdict is not None and verdict.status.value == "accepted", verdict
            stored = await r.stored(serial)
            assert {z: v for z, v, _ in stored} == {z: str(Decimal(v)) for z, v in expected.items()}
            assert {v for _, _, v in stored} == {"accepted"}
            # adjacent registers were read together: one request per block of the plan
            assert sim_meter.reads == len(read_plan(PROFILES[profile_id]))
            assert r.meter(7).health()["status"] == "ok"


def test_read_plan_merges_adjacent_registers() -> None:
    abb = PROFILES["abb_b23"]
    plan = read_plan(abb)
    registers = len(abb.energy_registers()) + len(abb.identification)
    assert registers == 7 and len(plan) == 3  # totals, tariffs T1-T4, serial number


async def test_zero_and_counter_reset_are_never_booked_as_consumption(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    m = meter("eastron_sdm120", 1, import_total=5000.5, serial=11111111)
    async with tcp_meters(m) as sim:
        bus = bus_config(
            "b1",
            "tcp",
            [{"unit": 1, "serial": "MB-1", "profile": "eastron_sdm120"}],
            host="127.0.0.1",
            port=sim.port,
        )
        async with rig(db_url, tmp_path, clock, bus) as r:
            assert (await r.poll(1)).status.value == "accepted"
            m.set(import_total=0)  # a momentary zero
            zero = await r.poll(1)
            assert zero.status.value == "rejected"
            assert [x.code for x in zero.reasons] == ["lower_than_previous"]
            m.set(import_total=3)  # the counter was reset
            reset = await r.poll(1)
            assert [x.code for x in reset.reasons] == ["lower_than_previous"]
            m.set(import_total=5001.5)
            later = await r.poll(1)
            assert later.status.value == "accepted"
            assert await r.stored("MB-1") == [
                ("T", "5000.5", "accepted"),
                ("T", "0", "rejected"),
                ("T", "3", "rejected"),
                ("T", "5001.5", "accepted"),
            ]


async def test_counter_rollover_is_recognised(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    m = meter("eastron_sdm120", 1, import_total=999995, serial=11111111)
    async with tcp_meters(m) as sim:
        bus = bus_config(
            "b1",
            "tcp",
            [{"unit": 1, "serial": "MB-1", "profile": "eastron_sdm120"}],
            host="127.0.0.1",
            port=sim.port,
        )
        async with rig(db_url, tmp_path, clock, bus) as r:
            assert (await r.poll(1)).status.value == "accepted"
            m.set(import_total=3)  # 6 digits: passed 999999 -> 000003, 8 kWh in an hour at 10 kW
            verdict = await r.poll(1)
            assert verdict.status.value == "accepted"
            assert [x.code for x in verdict.reasons] == ["rollover"]


async def test_replaced_meter_is_an_event_not_a_drop(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    m = meter("eastron_sdm120", 1, import_total=5000, serial=11111111)
    async with tcp_meters(m) as sim:
        bus = bus_config(
            "b1",
            "tcp",
            [{"unit": 1, "serial": "MB-1", "profile": "eastron_sdm120"}],
            host="127.0.0.1",
            port=sim.port,
        )
        async with rig(db_url, tmp_path, clock, bus) as r:
            assert (await r.poll(1)).status.value == "accepted"
            m.set(import_total=12.5, serial=22222222)  # a new meter at the same unit id
            verdict = await r.poll(1)
            assert verdict.status.value == "accepted", verdict
            assert verdict.meter_serial == "22222222"
            assert await r.stored("MB-1") == [("T", "5000", "accepted")]  # never judged as a drop
            assert await r.stored("22222222") == [("T", "12.5", "accepted")]
            events = [e for e in await r.events() if e["kind"] == "meter_replaced"]
            assert len(events) == 1
            assert (events[0]["old_serial"], events[0]["new_serial"]) == ("MB-1", "22222222")
            assert r.poller.metrics.replacements.labels("b1")._value.get() == 1
            m.set(import_total=13)
            assert (await r.poll(1)).meter_serial == "22222222"  # and it stays so, one event
            assert len([e for e in await r.events() if e["kind"] == "meter_replaced"]) == 1

        # A restarted gateway remembers which meter is there now.
        async with rig(db_url, tmp_path / "again", FakeClock(clock.now), bus) as r2:
            r2.clock.advance(hours=1)
            assert r2.meter(1).serial == "22222222"
            m.set(import_total=14)
            assert (await r2.poll(1)).status.value == "accepted"
            assert len([e for e in await r2.events() if e["kind"] == "meter_replaced"]) == 1


async def test_profile_and_serial_detected_from_identification_registers(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    m = meter(
        "abb_b23",
        4,
        serial=40000001,
        import_t1=Decimal("11.11"),
        import_t2=Decimal("22.22"),
        import_t3=Decimal("33.33"),
    )
    async with tcp_meters(m) as sim:
        bus = bus_config("b1", "tcp", [{"unit": 4}], host="127.0.0.1", port=sim.port)
        async with rig(db_url, tmp_path, clock, bus) as r:
            verdict = await r.poll(4)
            assert verdict is not None and verdict.status.value == "accepted"
            detected = r.meter(4).profile
            assert detected is not None and detected.id == "abb_b23"
            assert await r.stored("40000001") == [
                ("T1", "11.11", "accepted"),
                ("T2", "22.22", "accepted"),
                ("T3", "33.33", "accepted"),
            ]
            assert [e["kind"] for e in await r.events()] == ["profile_detected"]


async def test_ambiguous_profile_is_reported_not_guessed(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    # SDM120 and SDM630 answer the same energy and serial registers: the operator must choose.
    m = meter("eastron_sdm120", 4, serial=11111111, import_total=10)
    async with tcp_meters(m) as sim:
        bus = bus_config("b1", "tcp", [{"unit": 4}], host="127.0.0.1", port=sim.port)
        async with rig(db_url, tmp_path, clock, bus) as r:
            assert await r.poll(4) is None
            health = r.meter(4).health()
            assert health["status"] == "ambiguous"
            assert "eastron_sdm120" in health["last_error"] and "eastron_sdm630" in health["last_error"]


async def test_no_value_sentinel_is_missing_not_zero(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    m = meter("abb_b23", 3, import_t1=Decimal("1.5"), import_t2=None, import_t3=Decimal("3.5"))
    async with tcp_meters(m) as sim:
        bus = bus_config(
            "b1",
            "tcp",
            [{"unit": 3, "serial": "MB-3", "profile": "abb_b23"}],
            host="127.0.0.1",
            port=sim.port,
        )
        async with rig(db_url, tmp_path, clock, bus) as r:
            assert await r.poll(3) is None
            assert await r.stored("MB-3") == []
            health = r.meter(3).health()
            assert health["status"] == "no_value" and "T2" in health["last_error"]


@pytest.mark.parametrize("order", ["ABCD", "CDAB", "BADC", "DCBA"])
async def test_all_four_byte_orders_over_the_wire(
    db_url: str, tmp_path: Path, clock: FakeClock, order: str
) -> None:
    profiles_dir = tmp_path / "profiles"
    profiles_dir.mkdir()
    (profiles_dir / "test_order.toml").write_text(
        f"""
manufacturer = "Test"
model = "order {order}"
source = "test"
byte_order = "{order}"
max_registers_per_request = 20
response_time_ms = 50
[identification]
serial = {{ function = 3, address = 0x0100, type = "uint32" }}
[[registers]]
name = "t1"
quantity = "energy_import"
zone = "T1"
function = 3
address = 0x0010
type = "uint64"
scale = 0.01
[[registers]]
name = "t2"
quantity = "energy_import"
zone = "T2"
function = 3
address = 0x0014
type = "float32"
[[registers]]
name = "t3"
quantity = "energy_import"
zone = "T3"
function = 3
address = 0x0016
type = "int32"
scale = 0.1
[[test_vectors]]
register = "t3"
words = [0, 0]
value = 0
[[test_vectors]]
register = "t2"
words = [0x7FC0, 0]
value = "missing"
""",
        encoding="utf-8",
    )
    profile = load_profiles(profiles_dir)["test_order"]
    m = SimulatedMeter(
        profile,
        9,
        {"t1": Decimal("123456.78"), "t2": 2345.5, "t3": Decimal("34567.8"), "serial": 40000001},
    )
    async with tcp_meters(m) as sim:
        bus = bus_config(
            "b1",
            "tcp",
            [{"unit": 9, "serial": "MB-3", "profile": "test_order"}],
            host="127.0.0.1",
            port=sim.port,
        )
        async with rig(db_url, tmp_path, clock, bus, profiles_dir=str(profiles_dir)) as r:
            verdict = await r.poll(9)
            assert verdict.status.value == "accepted", verdict
            assert await r.stored("MB-3") == [
                ("T1", "123456.78", "accepted"),
                ("T2", "2345.5", "accepted"),
                ("T3", "34567.8", "accepted"),
            ]


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("silent", "timeout"), ("garbage", "garbage"), ("exception", "exception"), ("drop", "disconnected")],
)
async def test_tcp_faults_end_in_the_right_health_state(
    db_url: str, tmp_path: Path, clock: FakeClock, fault: str, kind: str
) -> None:
    bad = meter("eastron_sdm120", 1, import_total=100, serial=11111111)
    good = meter("eastron_sdm630", 2, import_total=200, serial=11111116)
    async with tcp_meters(bad, good) as sim:
        bus = bus_config(
            "b1",
            "tcp",
            [
                {"unit": 1, "serial": "MB-1", "profile": "eastron_sdm120"},
                {"unit": 2, "serial": "MB-6", "profile": "eastron_sdm630"},
            ],
            host="127.0.0.1",
            port=sim.port,
            latency_ms=100,
        )
        async with rig(db_url, tmp_path, clock, bus) as r:
            bad.fault = fault
            assert await r.poll(1) is None
            health = r.meter(1).health()
            assert health["status"] == "failing"
            assert health["errors"] == {kind: 1}
            assert r.poller.metrics.errors.labels("b1", r.meter(1).address, kind)._value.get() == 1
            # the neighbour is read as usual (over a new connection after a drop)
            assert (await r.poll(2, advance_hours=0)).status.value == "accepted"
            # the meter comes back: its next poll is booked and its state is ok again
            bad.fault = None
            assert (await r.poll(1)).status.value == "accepted"
            assert r.meter(1).health()["status"] == "ok"
            assert await r.stored("MB-1") == [("T", "100", "accepted")]


async def test_silent_meter_backs_off_without_stalling_its_neighbours(
    db_url: str, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = meter("eastron_sdm120", 1, import_total=100, serial=11111111)
    ok = meter("eastron_sdm630", 2, import_total=200, serial=11111116)
    silent.fault = "silent"
    async with tcp_meters(silent, ok) as sim:
        bus = bus_config(
            "b1",
            "tcp",
            [
                {"unit": 1, "serial": "MB-1", "profile": "eastron_sdm120"},
                {"unit": 2, "serial": "MB-6", "profile": "eastron_sdm630"},
            ],
            host="127.0.0.1",
            port=sim.port,
            interval_seconds=0.1,
            backoff_initial_seconds=0.2,
            backoff_max_seconds=0.8,
            latency_ms=10,
            max_concurrency=2,
        )
        async with rig(db_url, tmp_path, clock, bus) as r:
            r.worker.stagger()
            started = time.monotonic()
            waits: list[float] = []
            original = r.worker._failed

            four_failures = asyncio.Event()

            def failed(m: Any, exc: Any) -> None:
                original(m, exc)
                waits.append(round(m.next_due - time.monotonic(), 1))
                if len(waits) >= 4:
                    four_failures.set()

            monkeypatch.setattr(r.worker, "_failed", failed)
            task = asyncio.create_task(r.worker.run())
            # Four failures take about 2.5 s (timeouts plus back-off); a loaded machine may
            # need longer, so wait for them rather than for a fixed time.
            await asyncio.wait_for(four_failures.wait(), 15)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            elapsed = time.monotonic() - started
            # back-off doubles up to the maximum: 0.2, 0.4, 0.8, 0.8...
            assert waits[:4] == [0.2, 0.4, 0.8, 0.8]
            # the neighbour kept its 0.1 s interval (about 20 polls in 2 s, minus start-up)
            assert ok.reads >= 0.5 * elapsed / 0.1 * len(read_plan(PROFILES["eastron_sdm630"]))
            assert r.meter(2).health()["status"] == "ok"
            # one meter failing is not a reason to reopen the connection the other one uses
            assert r.worker.links[f"127.0.0.1:{sim.port}"].stats.reopened == 0


async def test_connection_reopened_only_when_every_meter_on_it_fails(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    a = meter("eastron_sdm120", 1, import_total=100, serial=11111111)
    b = meter("eastron_sdm630", 2, import_total=200, serial=11111116)
    async with tcp_meters(a, b) as sim:
        bus = bus_config(
            "b1",
            "tcp",
            [
                {"unit": 1, "serial": "MB-1", "profile": "eastron_sdm120"},
                {"unit": 2, "serial": "MB-6", "profile": "eastron_sdm630"},
            ],
            host="127.0.0.1",
            port=sim.port,
            latency_ms=50,
        )
        async with rig(db_url, tmp_path, clock, bus) as r:
            link = r.meter(1).link
            a.fault = "silent"
            await r.poll(1)
            assert link.stats.reopened == 0 and link.is_open
            b.fault = "silent"
            await r.poll(2)
            assert link.stats.reopened == 1
            assert r.poller.metrics.reopens.labels("b1")._value.get() == 1
            a.fault = b.fault = None
            assert (await r.poll(1)).status.value == "accepted"
            assert link.is_open and link.stats.opened == 2


async def test_dead_tcp_endpoint_backs_off(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    bus = bus_config(
        "b1", "tcp", [{"unit": 1, "serial": "MB-1", "profile": "eastron_sdm120"}], host="127.0.0.1", port=1
    )
    async with rig(db_url, tmp_path, clock, bus) as r:
        assert await r.poll(1) is None
        health = r.worker.health()
        assert health["meters"][r.meter(1).address]["errors"] == {"disconnected": 1}
        assert health["links"]["127.0.0.1:1"]["open"] is False
        assert health["links"]["127.0.0.1:1"]["last_open_error"]


def test_zone_values_follow_the_registry_and_prefer_import() -> None:
    iem = PROFILES["schneider_iem3255"]
    values = {r.name: Decimal(i + 1) for i, r in enumerate(iem.energy_registers())}
    assert zone_values(iem, values, ("T1", "T2")) == {"T1": Decimal(3), "T2": Decimal(4)}
    assert zone_values(iem, values, ("T",)) == {"T": Decimal(1)}  # import, not export
    assert set(zone_values(iem, values, None)) == {"T", "T1", "T2", "T3", "T4"}
    assert kwh_text(Decimal("1234.56789")) == "1234.567"
    assert kwh_text(Decimal("1.23457E+7")) == "12345700"


def test_serial_line_timing_comes_from_the_baud_rate() -> None:
    t9600 = LineTiming(9600, 8, "E", 1)  # 11 bits a character
    assert t9600.char_seconds == pytest.approx(11 / 9600)
    assert t9600.silent_interval == pytest.approx(3.5 * 11 / 9600)
    assert LineTiming(115200).silent_interval == pytest.approx(0.00175)  # fixed above 19200
    sdm = PROFILES["eastron_sdm120"]
    timeout = t9600.read_timeout(4, sdm.response_time_ms, 50)
    expected = (8 + rtu_reply_bytes(4)) * 11 / 9600 + 0.2 + 3.5 * 11 / 9600 + 0.05
    assert timeout == pytest.approx(expected)
    # the wire limit of 2-register reads at 9600 8N1: 8 + 9 bytes + 2 x t3.5 = 24 characters
    assert LineTiming(9600).wire_requests_per_second(2) == pytest.approx(9600 / (10 * 24))


def test_bus_configuration_errors_name_the_key(tmp_path: Path) -> None:
    def load(toml: str) -> str:
        path = tmp_path / "gateway.toml"
        path.write_text(toml, encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            load_config(path, {})
        return str(err.value)

    assert "modbus.buses[0]" in load(
        '[[modbus.buses]]\nname = "a"\ntransport = "rtu"\nmeters = [{unit = 1}]\n'
    )
    assert "needs device" in load('[[modbus.buses]]\nname = "a"\ntransport = "rtu"\nmeters = [{unit = 1}]\n')
    assert "modbus.buses[0].transport" in load(
        '[[modbus.buses]]\nname = "a"\ntransport = "udp"\nhost = "x"\nmeters = [{unit = 1}]\n'
    )
    assert "modbus.buses[0].meters[0].unti: unknown key" in load(
        '[[modbus.buses]]\nname = "a"\ntransport = "tcp"\nhost = "x"\nmeters = [{unti = 1}]\n'
    )
    assert "unit 1 is listed twice" in load(
        '[[modbus.buses]]\nname = "a"\ntransport = "tcp"\nhost = "x"\nmeters = [{unit = 1}, {unit = 1}]\n'
    )
    assert "modbus.buses[0].interval_seconds" in load(
        '[[modbus.buses]]\nname = "a"\ntransport = "tcp"\nhost = "x"\ninterval_seconds = 0\nmeters = [{unit = 1}]\n'
    )
    ok = tmp_path / "ok.toml"
    ok.write_text(
        '[[modbus.buses]]\nname = "a"\ntransport = "tcp"\nhost = "x"\nmeters = [{unit = 1, profile = "nope"}]\n',
        encoding="utf-8",
    )
    from adapters.meters.poller import load_modbus_profiles

    with pytest.raises(
        ConfigError, match=r"modbus\.buses\[0\]\.meters\[0\]\.profile: unknown profile 'nope'"
    ):
        load_modbus_profiles(load_config(ok, {}).modbus)
