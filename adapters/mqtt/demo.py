"""What `meter-gateway demo` adds for MQTT: when a broker (Mosquitto) answers on the configured
address, the subscription to `meters/+/readings` and verdicts on `demo/verdicts/<meter>`."""

from __future__ import annotations

import socket
from typing import Any

from adapters.mqtt.config import MqttConfig
from gateway.plugins import DemoPart

DEMO_MQTT_REPLIES = "demo/verdicts"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def demo_config(config: Any) -> DemoPart:
    mqtt = config.section("mqtt", MqttConfig)
    if not mqtt.enabled and _answers(mqtt.host, mqtt.port):
        mqtt = mqtt.model_copy(
            update={"enabled": True, "reply_topic_prefix": mqtt.reply_topic_prefix or DEMO_MQTT_REPLIES}
        )
    if not mqtt.enabled:
        return DemoPart(
            hints=[
                f"MQTT: no broker answers on {mqtt.host}:{mqtt.port}; start Mosquitto and the demo again to publish readings"
            ]
        )
    return DemoPart(
        overrides={"mqtt": mqtt},
        hints=[
            f"MQTT on {mqtt.host}:{mqtt.port}, topics {', '.join(mqtt.topics)}; verdicts on {mqtt.reply_topic_prefix}/<meter>:",
            # A meter of its own (two-rate), not the one the device push and SMS examples use:
            # the broker keeps a message published while the demo is down and delivers it at the
            # next start, and readings of one meter must not go down.
            f"  mosquitto_pub -h {mqtt.host} -p {mqtt.port} -q 1 -t meters/E-45871235/readings"
            """ -m '{"id":"try-mqtt-1","values":{"T1":"5120","T2":"2310"}}'""",
            f"  mosquitto_sub -h {mqtt.host} -p {mqtt.port} -t '{mqtt.reply_topic_prefix}/#'",
        ],
    )
