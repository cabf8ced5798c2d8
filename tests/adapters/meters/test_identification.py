"""A Modbus meter that answers "illegal data address" to its serial-number register (issue 14,
item 9): read under the serial the configuration gives, identification shown as unavailable;
without a configured serial it cannot be booked and says so."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from adapters.meters.drivers.modbus import read_plan
from adapters.meters.simulator import SimulatedMeter
from tests.adapters.meters.rig import PROFILES, bus_config, rig, tcp_meters
from tests.conftest import FakeClock

SDM120 = PROFILES["eastron_sdm120"]


def meter_without_serial_register() -> SimulatedMeter:
    # the same register map without the serial number: the server answers "illegal data address"
    bare = dataclasses.replace(SDM120, identification={})
    return SimulatedMeter(bare, 1, {"import_total": 4321.5})


async def test_meter_without_identification_is_read_under_its_configured_serial(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    sim_meter = meter_without_serial_register()
    async with tcp_meters(sim_meter) as sim:
        bus = bus_config(
            "b1",
            "tcp",
            [{"unit": 1, "serial": "MB-1", "profile": "eastron_sdm120"}],
            host="127.0.0.1",
            port=sim.port,
        )
        async with rig(db_url, tmp_path, clock, bus) as r:
            verdict = await r.poll(1)
            assert verdict is not None and verdict.status.value == "accepted", r.meter(1).health()
            assert await r.stored("MB-1") == [("T", "4321.5", "accepted")]
            health = r.meter(1).health()
            assert (health["status"], health["identification"], health["errors"]) == ("ok", "unavailable", {})
            # later polls do not ask for the refused register again: only the energy requests
            before = sim_meter.reads
            sim_meter.set(import_total=4322)
            assert (await r.poll(1)).status.value == "accepted"
            assert sim_meter.reads - before == len(read_plan(SDM120, identify=False))


async def test_meter_without_identification_or_configured_serial_is_not_booked(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with tcp_meters(meter_without_serial_register()) as sim:
        bus = bus_config(
            "b1", "tcp", [{"unit": 1, "profile": "eastron_sdm120"}], host="127.0.0.1", port=sim.port
        )
        async with rig(db_url, tmp_path, clock, bus) as r:
            assert await r.poll(1) is None
            health = r.meter(1).health()
            assert health["status"] == "failing" and health["errors"] == {"exception": 1}
