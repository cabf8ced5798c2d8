"""What `meter-gateway demo` adds for the meters: three simulated Modbus TCP meters on loopback
and a bus that polls them, unless buses are configured."""

from __future__ import annotations

from typing import Any

from adapters.meters.config import ModbusConfig
from gateway.plugins import DemoPart


def demo_config(config: Any) -> DemoPart:
    from adapters.meters.simulator import DEMO_MODBUS_PORT, demo_modbus_config, serve_simulated_meters

    modbus = config.section("modbus", ModbusConfig)
    return DemoPart(
        overrides={"modbus": demo_modbus_config(modbus)},
        background=[serve_simulated_meters],
        hints=[
            f"Simulated Modbus meters SIM-0001..3 answer on 127.0.0.1:{DEMO_MODBUS_PORT}; the gateway polls them."
        ],
    )
