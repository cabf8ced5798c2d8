"""What `meter-gateway demo` adds for the meters, unless buses are configured: three simulated Modbus
TCP meters, an IEC 62056-21 meter behind a simulated converter, a DLMS/COSEM (СПОДЭС) meter on
the DLMS wrapper and a Mercury 234 behind current transformers and a simulated converter, on
loopback, and the buses that poll them."""

from __future__ import annotations

from typing import Any

from adapters.meters.config import ModbusConfig
from gateway.plugins import DemoPart


def demo_config(config: Any) -> DemoPart:
    from adapters.meters.simulator import DEMO_MODBUS_PORT, demo_modbus_config, serve_simulated_meters
    from adapters.meters.simulator_dlms import DEMO_DLMS_PORT, demo_dlms_bus, serve_simulated_dlms_meter
    from adapters.meters.simulator_iec62056 import DEMO_IEC_PORT, demo_iec_bus, serve_simulated_iec_meter
    from adapters.meters.simulator_mercury import (
        DEMO_MERCURY_PORT,
        demo_mercury_bus,
        serve_simulated_mercury_meter,
    )

    modbus = config.section("modbus", ModbusConfig)
    demo = demo_modbus_config(modbus)
    if not modbus.buses:  # the operator's own buses replace the simulated ones
        demo = demo.model_copy(
            update={"buses": [*demo.buses, demo_iec_bus(), demo_dlms_bus(), demo_mercury_bus()]}
        )
    return DemoPart(
        overrides={"modbus": demo},
        background=[
            serve_simulated_meters,
            serve_simulated_iec_meter,
            serve_simulated_dlms_meter,
            serve_simulated_mercury_meter,
        ],
        hints=[
            f"Simulated Modbus meters SIM-0001..3 answer on 127.0.0.1:{DEMO_MODBUS_PORT}; the gateway polls them.",
            f"Simulated Energomera CE301 SIM-0004 (IEC 62056-21) answers behind a converter on "
            f"127.0.0.1:{DEMO_IEC_PORT}; the gateway polls it.",
            f"Simulated СПОДЭС meter SIM-0005 (DLMS/COSEM, password 12345678) answers on the DLMS wrapper "
            f"at 127.0.0.1:{DEMO_DLMS_PORT}; the gateway polls it.",
            f"Simulated Mercury 234 SIM-0006 (network address 6, password 111111) answers behind a converter "
            f"on 127.0.0.1:{DEMO_MERCURY_PORT}; it sits behind 100/5 A current transformers (registry ct_ratio): "
            "billing gets its register times 20.",
        ],
    )
