"""Readings published over MQTT, against the real Mosquitto on 127.0.0.1:1883.

Each test uses its own topic prefix and client id, so tests never see each other's messages,
and removes its persistent session from the broker at the end. The gateway under test is a real
one (both databases); the devices are aiomqtt clients publishing with QoS 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import orjson
import pytest
from sqlalchemy import func, select

from adapters.mqtt.subscriber import derived_message_id, item_message_id, topic_meter
from gateway.config import Config, ConfigError, load_config
from gateway.service import Gateway
from gateway.store.database import create_engine
from gateway.store.schema import inbound, readings
from tests.conftest import FakeClock, make_config

BROKER = ("127.0.0.1", 1883)
MOSQUITTO_CONF = "/etc/mosquitto/mosquitto.conf"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def broker() -> tuple[str, int]:
    """The machine's Mosquitto; started here (as CI's machine may not run services) if it is not up."""
    if _reachable(*BROKER):
        return BROKER
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed (scripts/system-deps.sh installs it)")
    if os.geteuid() == 0:  # the Debian unit makes these; a plain `mosquitto -d` needs them too
        for d in ("/run/mosquitto", "/var/log/mosquitto", "/var/lib/mosquitto"):
            Path(d).mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "mosquitto", "mosquitto")
    done = subprocess.run(
        ["mosquitto", "-d", "-c", MOSQUITTO_CONF], capture_output=True, text=True, timeout=10, check=False
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if _reachable(*BROKER):
            return BROKER
        time.sleep(0.1)
    pytest.fail(f"mosquitto -d -c {MOSQUITTO_CONF} did not start: {done.returncode} {done.stderr[-500:]}")


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 5.0) -> Any:
    """Poll until `check` returns something truthy; fail with its last answer otherwise."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            assert result, f"gave up waiting; last answer {result!r}"
            return result
        await asyncio.sleep(0.05)


@dataclass
class Rig:
    """One test's broker namespace, gateway configuration and reply listener."""

    config: Config
    clock: FakeClock
    prefix: str
    broker: tuple[str, int]
    replies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    gateways: list[Gateway] = field(default_factory=list)

    def topic(self, meter: str) -> str:
        return f"{self.prefix}/meters/{meter}/readings"

    async def start(self, config: Config | None = None) -> Gateway:
        gateway = Gateway(config or self.config, clock=self.clock)
        await gateway.start()
        self.gateways.append(gateway)
        await eventually(async_value(lambda: gateway.health_probes["mqtt"]()["connected"]))
        return gateway

    async def stop(self, gateway: Gateway) -> None:
        self.gateways.remove(gateway)
        await gateway.stop()

    async def publish(self, topic: str, payload: object) -> None:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        async with aiomqtt.Client(*self.broker, identifier=f"dev-{uuid.uuid4().hex[:8]}") as device:
            await device.publish(topic, data, qos=1)

    async def rows(self) -> list[tuple[str, str, str, str, str]]:
        """(meter id's serial is not needed) zone, value, channel, source, verdict of every reading."""
        engine = create_engine(self.config.database.url)
        try:
            async with engine.connect() as conn:
                found = await conn.execute(
                    select(
                        readings.c.zone,
                        readings.c.value,
                        readings.c.channel,
                        readings.c.source,
                        readings.c.verdict,
                    ).order_by(readings.c.id)
                )
                return [tuple(r) for r in found.all()]
        finally:
            await engine.dispose()

    async def inbound_count(self) -> int:
        engine = create_engine(self.config.database.url)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(select(func.count()).select_from(inbound))).scalar_one())
        finally:
            await engine.dispose()

    def replies_for(self, meter: str) -> list[dict[str, Any]]:
        return [body for topic, body in self.replies if topic == f"{self.prefix}/replies/{meter}"]


def async_value(fn: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def check() -> Any:
        return fn()

    return check


async def _listen(rig: Rig, ready: asyncio.Event) -> None:
    async with aiomqtt.Client(*rig.broker, identifier=f"listener-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(f"{rig.prefix}/replies/#", qos=1)
        ready.set()
        async for message in client.messages:
            rig.replies.append((message.topic.value, orjson.loads(message.payload)))


def _mqtt_settings(prefix: str, broker: tuple[str, int], **extra: object) -> dict[str, object]:
    return {
        "enabled": True,
        "host": broker[0],
        "port": broker[1],
        "client_id": f"mg-test-{uuid.uuid4().hex[:12]}",
        "topics": [f"{prefix}/meters/+/readings"],
        "reply_topic_prefix": f"{prefix}/replies",
        "reconnect_initial_seconds": 0.2,
        "reconnect_max_seconds": 1.0,
        **extra,
    }


async def _forget_session(broker: tuple[str, int], client_id: str) -> None:
    """Connect once with a clean session: the broker drops what it kept for `client_id`."""
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client(*broker, identifier=client_id, clean_session=True):
            pass


@pytest.fixture
async def rig(db_url: str, tmp_path: Path, clock: FakeClock, broker: tuple[str, int]) -> AsyncIterator[Rig]:
    prefix = f"mgtest/{uuid.uuid4().hex[:10]}"
    config = make_config(db_url, tmp_path, mqtt=_mqtt_settings(prefix, broker))
    rig = Rig(config, clock, prefix, broker)
    ready = asyncio.Event()
    listener = asyncio.create_task(_listen(rig, ready))
    await asyncio.wait_for(ready.wait(), 5)
    try:
        yield rig
    finally:
        for gateway in list(rig.gateways):
            await gateway.stop()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await listener
        await _forget_session(broker, config.mqtt.client_id)


# -- the tests ------------------------------------------------------------------------------------


async def test_published_readings_are_stored_and_each_item_answered(rig: Rig) -> None:
    gateway = await rig.start()
    # One item naming no meter: the topic names it. A {"readings": [...]} batch, and a bare list.
    await rig.publish(rig.topic("M-1"), {"id": "a-1", "value": "12345.6", "taken_at": "2026-11-17T08:00:00Z"})
    await rig.publish(
        rig.topic("M-2"),
        {"readings": [{"id": "b-1", "meter": "M-2", "values": {"T1": 1000, "T2": 500.5}}]},
    )
    await rig.publish(rig.topic("M-3"), [{"meter": "NOPE", "value": "1"}])

    stored = await eventually(lambda: _rows_when(rig, 3))
    assert stored == [
        ("T", "12345.6", "mqtt", f"mqtt:{rig.topic('M-1')}", "accepted"),
        ("T1", "1000", "mqtt", f"mqtt:{rig.topic('M-2')}", "accepted"),
        ("T2", "500.5", "mqtt", f"mqtt:{rig.topic('M-2')}", "accepted"),
    ]
    await eventually(async_value(lambda: len(rig.replies) == 3))
    (m1,) = rig.replies_for("M-1")
    assert m1["status"] == "accepted" and m1["id"] == "a-1" and m1["duplicate"] is False
    assert m1["meter_serial"] == "M-1" and m1["readings"][0]["value"] == "12345.6"
    (m2,) = rig.replies_for("M-2")
    assert [r["zone"] for r in m2["readings"]] == ["T1", "T2"]
    (nope,) = rig.replies_for("NOPE")  # the item's own meter, not the topic's
    assert nope["status"] == "rejected" and nope["reasons"][0]["code"] == "unknown_meter"
    assert await rig.inbound_count() == 3

    probe = gateway.health_probes["mqtt"]()
    assert probe["status"] == "ok" and probe["messages"] == 3 and probe["items"] == 3
    assert probe["malformed"] == 0 and probe["last_message_at"] == rig.clock.now.isoformat()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{gateway.port}/healthz") as resp:
            health = await resp.json()
        async with http.get(f"http://127.0.0.1:{gateway.port}/metrics") as resp:
            metrics = await resp.text()
    assert health["checks"]["mqtt"]["connected"] is True
    assert 'gateway_mqtt_messages_total{result="decided"} 3.0' in metrics
    assert "gateway_mqtt_items_total 3.0" in metrics
    assert 'gateway_verdicts_total{channel="mqtt",status="accepted"} 2.0' in metrics
    assert "gateway_mqtt_connected 1.0" in metrics


async def _rows_when(rig: Rig, count: int) -> list[tuple[str, str, str, str, str]] | None:
    found = await rig.rows()
    return found if len(found) >= count else None


async def test_a_redelivered_message_is_stored_once(rig: Rig) -> None:
    await rig.start()
    with_id = {"id": "r-1", "value": "500"}
    without_id = {"meter": "M-5", "value": "700", "taken_at": "2026-11-17T07:00:00Z"}
    for _ in range(2):
        await rig.publish(rig.topic("M-1"), with_id)
        await rig.publish(rig.topic("M-5"), without_id)
    await eventually(async_value(lambda: len(rig.replies) == 4))
    assert [r["duplicate"] for r in rig.replies_for("M-1")] == [False, True]
    assert [r["duplicate"] for r in rig.replies_for("M-5")] == [False, True]
    first, again = rig.replies_for("M-1")
    assert again["receipt"] == first["receipt"]
    assert again["readings"][0]["reading_id"] == first["readings"][0]["reading_id"]
    assert [(z, v) for z, v, *_ in await rig.rows()] == [("T", "500"), ("T", "700")]
    assert await rig.inbound_count() == 2


async def test_bad_payloads_are_counted_and_do_not_stop_the_subscriber(rig: Rig) -> None:
    gateway = await rig.start()
    await rig.publish(rig.topic("M-1"), b"\xff not json")
    await rig.publish(rig.topic("M-1"), b"[]")
    await rig.publish(rig.topic("M-1"), {"taken_at": "yesterday", "value": "1"})
    await rig.publish(f"{rig.prefix}/meters//readings", {"value": "1"})  # no meter anywhere
    await rig.publish(rig.topic("M-6"), [{"value": "5"}, {"values": {"T": True}}])  # one bad item
    await rig.publish(rig.topic("M-1"), {"id": "good", "value": "42"})

    await eventually(lambda: _rows_when(rig, 1))
    assert [(z, v) for z, v, *_ in await rig.rows()] == [("T", "42")]
    probe = await eventually(
        async_value(lambda: (p := gateway.health_probes["mqtt"]())["messages"] == 6 and p)
    )
    assert probe["malformed"] == 5 and probe["connected"] is True
    await eventually(async_value(lambda: len(rig.replies_for("M-1")) == 4))
    errors = [r["error"] for r in rig.replies_for("M-1")[:3]]
    assert [e["code"] for e in errors] == ["bad_body", "bad_body", "bad_item"]
    assert "taken_at" in errors[2]["message"]
    assert rig.replies_for("M-1")[3]["status"] == "accepted"
    (m6,) = rig.replies_for("M-6")  # the whole message is refused, as over HTTP
    assert m6["error"]["code"] == "bad_item" and "readings[1]" in m6["error"]["message"]
    assert await rig.inbound_count() == 1


async def test_messages_published_while_the_gateway_is_down_arrive_after_it_starts(rig: Rig) -> None:
    gateway = await rig.start()  # the broker now keeps a session for the gateway's client id
    await rig.stop(gateway)
    for n in range(3):
        await rig.publish(rig.topic("M-1"), {"id": f"off-{n}", "value": str(100 + n)})
    assert await rig.rows() == []

    await rig.start()
    stored = await eventually(lambda: _rows_when(rig, 3))
    assert [v for _, v, *_ in stored] == ["100", "101", "102"]
    await eventually(async_value(lambda: len(rig.replies_for("M-1")) == 3))


async def test_a_message_not_yet_committed_when_the_gateway_dies_comes_again(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = await rig.start()
    arrived = asyncio.Event()

    async def stuck(subs: object) -> object:  # the process dies before the intake commits
        arrived.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(gateway.intake, "submit_many", stuck)
    await rig.publish(rig.topic("M-1"), {"id": "in-flight", "value": "321"})
    await asyncio.wait_for(arrived.wait(), 5)
    await rig.stop(gateway)
    assert await rig.rows() == []

    await rig.start()
    stored = await eventually(lambda: _rows_when(rig, 1))
    assert [v for _, v, *_ in stored] == ["321"]
    (reply,) = await eventually(async_value(lambda: rig.replies_for("M-1")))
    assert reply["id"] == "in-flight" and reply["duplicate"] is False


async def test_a_store_failure_leaves_the_message_to_be_delivered_again(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = await rig.start()
    real = gateway.intake.submit_many
    calls = 0

    async def failing_once(subs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError("database is down")
        return await real(subs)

    monkeypatch.setattr(gateway.intake, "submit_many", failing_once)
    await rig.publish(rig.topic("M-1"), {"id": "retry-me", "value": "55"})
    stored = await eventually(lambda: _rows_when(rig, 1))
    assert [v for _, v, *_ in stored] == ["55"] and calls == 2
    probe = gateway.health_probes["mqtt"]()
    assert probe["failed"] == 1 and probe["reconnects"] >= 1
    assert "database is down" in probe["last_error"]


# -- a broker of our own, to take it away and bring it back -----------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnBroker:
    """A private mosquitto on a free port: calling it starts it (again, after it was killed)."""

    def __init__(self, conf: Path, port: int) -> None:
        self.conf = conf
        self.port = port
        self.started: list[subprocess.Popen[bytes]] = []

    def __call__(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.started.append(proc)
        deadline = time.monotonic() + 5
        while not _reachable("127.0.0.1", self.port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"private mosquitto on port {self.port} did not start")
            time.sleep(0.05)
        return proc


@pytest.fixture
def own_broker(tmp_path: Path, broker: tuple[str, int]) -> Iterator[OwnBroker]:
    """Start a private mosquitto on a free port (callable again after it was killed)."""
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{user}")
    start = OwnBroker(conf, port)
    yield start
    for proc in start.started:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(5)


async def test_the_subscriber_reconnects_when_the_broker_comes_back(
    db_url: str, tmp_path: Path, clock: FakeClock, own_broker: OwnBroker
) -> None:
    proc = own_broker()
    port = own_broker.port
    prefix = f"mgtest/{uuid.uuid4().hex[:10]}"
    config = make_config(db_url, tmp_path, mqtt=_mqtt_settings(prefix, ("127.0.0.1", port)))
    rig = Rig(config, clock, prefix, ("127.0.0.1", port))
    gateway = await rig.start()
    try:
        proc.terminate()
        proc.wait(5)
        probe = gateway.health_probes["mqtt"]
        await eventually(async_value(lambda: not probe()["connected"]))
        assert probe()["status"] == "degraded" and probe()["last_error"]
        await asyncio.sleep(1.5)  # a few failed attempts while it is away

        own_broker()  # back, with no memory of the gateway: it must subscribe again
        await eventually(async_value(lambda: probe()["connected"]), within=5)
        await rig.publish(rig.topic("M-1"), {"id": "after", "value": "77"})
        stored = await eventually(lambda: _rows_when(rig, 1))
        assert [v for _, v, *_ in stored] == ["77"]
        assert probe()["reconnects"] >= 2
    finally:
        await gateway.stop()


async def test_the_demo_takes_readings_over_mqtt_when_a_broker_answers(
    broker: tuple[str, int], tmp_path: Path
) -> None:
    """`make demo` subscribes to a local Mosquitto and answers on the reply topic it prints."""
    from adapters.mqtt.demo import DEMO_MQTT_REPLIES
    from gateway.cli import demo_config

    without, parts = demo_config(load_config(None, {"GATEWAY_MQTT_PORT": str(_free_port())}))
    assert not without.mqtt.enabled  # nobody listens there: the demo leaves MQTT off, and says so
    assert any("no broker answers" in line for part in parts for line in part.hints)
    env = {"GATEWAY_MQTT_HOST": broker[0], "GATEWAY_MQTT_PORT": str(broker[1])}
    demo, parts = demo_config(load_config(None, env))
    assert demo.mqtt.enabled and demo.mqtt.reply_topic_prefix == DEMO_MQTT_REPLIES
    assert any(f"mosquitto_sub -h {broker[0]}" in line for part in parts for line in part.hints)
    client_id = f"mg-test-demo-{uuid.uuid4().hex[:8]}"
    # Only what a test cannot share with a running demo: its database, ports and session name.
    config = demo.model_copy(
        update={
            "database": demo.database.model_copy(
                update={"url": f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"}
            ),
            "http": demo.http.model_copy(update={"port": 0}),
            "ivr": demo.ivr.model_copy(update={"enabled": False}),
            "modbus": load_config(None, {}).modbus,
            "mqtt": demo.mqtt.model_copy(update={"client_id": client_id}),
        }
    )
    gateway = Gateway(config)
    await gateway.start()
    try:
        await eventually(async_value(lambda: gateway.health_probes["mqtt"]()["connected"]))
        async with aiomqtt.Client(*broker, identifier=f"listener-{uuid.uuid4().hex[:8]}") as listener:
            await listener.subscribe(f"{DEMO_MQTT_REPLIES}/#", qos=1)
            # Publish exactly what the demo prints (its mosquitto_pub line), with a fresh id.
            line = next(line for part in parts for line in part.hints if "mosquitto_pub" in line)
            words = shlex.split(line)
            topic, item = words[words.index("-t") + 1], orjson.loads(words[words.index("-m") + 1])
            item["id"] = f"try-mqtt-{uuid.uuid4().hex[:8]}"
            async with aiomqtt.Client(*broker, identifier=f"dev-{uuid.uuid4().hex[:8]}") as device:
                await device.publish(topic, orjson.dumps(item), qos=1)
            async with asyncio.timeout(10):
                message = await anext(aiter(listener.messages))
        meter = topic.split("/")[1]
        assert message.topic.value == f"{DEMO_MQTT_REPLIES}/{meter}"
        answer = orjson.loads(message.payload)
        assert (answer["id"], answer["status"]) == (item["id"], "accepted")
        assert {r["zone"]: r["value"] for r in answer["readings"]} == item["values"]
    finally:
        await gateway.stop()
        await _forget_session(broker, client_id)


def test_config_names_the_key() -> None:
    config = load_config(None, {})
    assert config.mqtt.enabled is False and config.mqtt.topics == ["meters/+/readings"]
    assert config.mqtt.qos == 1 and config.mqtt.port == 1883
    for env, needle in [
        ({"GATEWAY_MQTT_QOS": "0"}, "GATEWAY_MQTT_QOS: mqtt.qos: must be 1"),
        ({"GATEWAY_MQTT_PORT": "70000"}, "GATEWAY_MQTT_PORT: mqtt.port:"),
        ({"GATEWAY_MQTT_TOPICS": '["meters/x+/readings"]'}, "mqtt.topics: 'meters/x+/readings' is not"),
        ({"GATEWAY_MQTT_REPLY_TOPIC_PREFIX": "replies/#"}, "mqtt.reply_topic_prefix: must be a plain"),
        ({"GATEWAY_MQTT_ENABLED": "true", "GATEWAY_MQTT_TOPICS": "[]"}, "mqtt: topics must list"),
        ({"GATEWAY_MQTT_COLOUR": "red"}, "mqtt.colour: unknown key"),
    ]:
        with pytest.raises(ConfigError) as err:
            load_config(None, env)
        assert needle in str(err.value), str(err.value)


def test_the_meter_comes_from_the_last_plus_of_a_matching_filter() -> None:
    filters = ["meters/+/readings", "$share/gw/site/+/meter/+/data", "bulk/#"]
    assert topic_meter("meters/E-45871235/readings", filters) == "E-45871235"
    assert topic_meter("site/7/meter/M-2/data", filters) == "M-2"
    assert topic_meter("bulk/anything/here", filters) is None
    assert topic_meter("meters/M-1/other", filters) is None
    assert topic_meter("meters//readings", filters) is None


def test_message_ids_recognise_a_redelivery_and_fit_the_column() -> None:
    assert item_message_id("M-1", "c7-1") == "mqtt:M-1:c7-1"
    long_id = item_message_id("M" * 64, "x" * 100)
    assert len(long_id) <= 128 and long_id == item_message_id("M" * 64, "x" * 100)
    day = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
    item = {"meter": "M-1", "value": "5", "taken_at": "2026-11-17T08:00:00Z"}
    same = derived_message_id(
        "t/M-1", {"value": "5", "meter": "M-1", "taken_at": "2026-11-17T08:00:00Z"}, day
    )
    assert derived_message_id("t/M-1", item, day + timedelta(days=3)) == same  # key order, day: no matter
    assert derived_message_id("t/M-2", item, day) != same
    untimed = {"meter": "M-1", "value": "5"}  # without taken_at, a repeat on another day is new
    assert derived_message_id("t", untimed, day) == derived_message_id("t", untimed, day + timedelta(hours=1))
    assert derived_message_id("t", untimed, day) != derived_message_id("t", untimed, day + timedelta(days=1))
