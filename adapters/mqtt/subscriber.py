"""Field devices that publish their readings to an MQTT broker (README, "MQTT").

With `[mqtt] enabled`, a background task connects to the broker (aiomqtt over paho-mqtt) with a
fixed client id and a persistent session (`clean_session=False`), subscribes to `topics` with
QoS 1 and decides every message through the intake exactly like `POST /api/v1/readings`
(adapters/device_items/items.py), channel `mqtt`:

- a payload is one item `{"id", "meter", "taken_at", "values"|"value", "account"?}`, a list of
  items or `{"readings": [...]}`; an item without `meter` takes it from the topic level that
  the subscription's last `+` matched (`meters/<serial>/readings`);
- the PUBACK is sent only after the intake has committed the message's verdicts (aiomqtt 2.x has
  no manual acknowledgement of its own, so paho's `manual_ack` is switched on underneath). A
  gateway that dies before the commit leaves the message unacknowledged, and the broker delivers
  it again when the gateway's session reconnects; one that dies between commit and PUBACK gets
  it again too, and the repeat is recognised by its channel message id and answered from the
  store;
- the channel message id is `mqtt:<meter>:<id>` for an item with an `id` (ids are the devices'
  own, so they are kept apart per meter), else a digest of topic, item and, for items without
  `taken_at`, the day of receipt, so a redelivered message is recognised either way;
- with `reply_topic_prefix`, each item's verdict (the JSON of the HTTP answer's `results`) is
  published to `<prefix>/<meter>` before the message is acknowledged;
- a malformed payload is logged (phones masked), counted, answered on the reply topic when a
  meter can be named, acknowledged and dropped: it never stops the subscriber;
- a broker that goes away is reconnected with growing pauses (`reconnect_initial_seconds`,
  doubling up to `reconnect_max_seconds`); a store that fails drops the connection too, so the
  unacknowledged messages come again once it is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiomqtt
import orjson
from aiohttp import web
from prometheus_client import Counter, Gauge

from adapters.device_items.config import DevicesConfig
from adapters.device_items.items import ItemError, result_of, submission_from_item
from adapters.mqtt.config import MqttConfig
from gateway.model import Channel, Submission
from gateway.privacy import mask_phones_in

if TYPE_CHECKING:
    from gateway.host import Host

log = logging.getLogger(__name__)

MAX_MESSAGE_ID = 128  # inbound.channel_message_id
_INVALID_IN_TOPIC = ("+", "#", "\x00")


class BadMessage(Exception):
    """A payload that is not a set of readings: `code` as in the HTTP API (bad_body, bad_item)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class MqttMetrics:
    """Counters in the gateway's Prometheus registry."""

    def __init__(self, registry: Any) -> None:
        self.messages = Counter(
            "gateway_mqtt_messages_total",
            "MQTT messages by result: decided (verdicts stored), malformed (dropped), failed "
            "(store error: left unacknowledged for redelivery)",
            ["result"],
            registry=registry,
        )
        self.items = Counter(
            "gateway_mqtt_items_total", "Readings decided from MQTT messages", registry=registry
        )
        self.replies = Counter(
            "gateway_mqtt_replies_total",
            "Verdicts and errors published to the reply topic",
            registry=registry,
        )
        self.connects = Counter(
            "gateway_mqtt_connects_total",
            "Connection attempts to the broker by result: ok, failed",
            ["result"],
            registry=registry,
        )
        self.connected = Gauge(
            "gateway_mqtt_connected", "1 while the gateway is connected to the broker", registry=registry
        )


@dataclass(slots=True)
class _Session:
    """What one connection achieved: decides whether the next reconnect waits long."""

    acked: int = 0
    store_failed: bool = False
    connected_at: float | None = None


def topic_meter(topic: str, filters: Sequence[str]) -> str | None:
    """The meter serial a topic names: the level matched by the last `+` of a matching filter."""
    levels = topic.split("/")
    for raw in filters:
        wanted = raw.split("/")
        if wanted[0] == "$share":
            wanted = wanted[2:]
        if "+" not in wanted or not _matches(levels, wanted):
            continue
        position = len(wanted) - 1 - wanted[::-1].index("+")
        if levels[position]:
            return levels[position]
    return None


def _matches(levels: list[str], wanted: list[str]) -> bool:
    for i, w in enumerate(wanted):
        if w == "#":
            return True
        if i >= len(levels) or (w != "+" and w != levels[i]):
            return False
    return len(levels) == len(wanted)


def item_message_id(meter: str, item_id: str) -> str:
    """`mqtt:<meter>:<id>`, or a digest of both when that would not fit the column."""
    plain = f"mqtt:{meter}:{item_id}"
    if len(plain) <= MAX_MESSAGE_ID:
        return plain
    return "mqtt:#" + hashlib.sha256(f"{meter}\x00{item_id}".encode()).hexdigest()[:48]


def derived_message_id(topic: str, item: dict[str, Any], received: datetime) -> str:
    """For an item without `id`: the same message delivered again gets the same id.

    An item without `taken_at` cannot tell a redelivery from a new reading with equal values,
    so the day of receipt is part of its digest: a repeat on another day is a new reading.
    """
    parts = [topic, orjson.dumps(item, option=orjson.OPT_SORT_KEYS).decode()]
    if "taken_at" not in item:
        parts.append(received.date().isoformat())
    return "mqtt:~" + hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:48]


def parse_payload(
    topic: str, payload: bytes, filters: Sequence[str], now: datetime, max_items: int
) -> tuple[list[dict[str, Any]], list[Submission]]:
    """The items of one message and their Submissions; `BadMessage` if it is not readings."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise BadMessage("bad_body", "the payload is not JSON (UTF-8)") from None
    if isinstance(body, dict) and "readings" in body:
        items = body["readings"]
    elif isinstance(body, list):
        items = body
    elif isinstance(body, dict):
        items = [body]
    else:
        raise BadMessage(
            "bad_body", 'the payload must be a reading, a list of readings or {"readings": [...]}'
        )
    if not isinstance(items, list) or not items:
        raise BadMessage("bad_body", 'the payload must be {"readings": [...]} with at least one item')
    if len(items) > max_items:
        raise BadMessage("too_many_items", f"at most {max_items} readings per message")
    meter = topic_meter(topic, filters)
    subs = []
    for index, item in enumerate(items):
        try:
            sub = submission_from_item(
                item,
                index,
                channel=Channel.MQTT,
                sender=topic[:120],
                now=now,
                message_id=item_message_id,
                default_meter=meter,
            )
        except ItemError as exc:
            raise BadMessage("bad_item", exc.message) from None
        if sub.channel_message_id is None:
            sub = replace(sub, channel_message_id=derived_message_id(topic, item, now))
        subs.append(sub)
    return items, subs


def _usable_topic_level(meter: str) -> bool:
    return bool(meter) and not any(c in meter for c in _INVALID_IN_TOPIC)


class MqttSubscriber:
    """The background task and its health probe."""

    def __init__(self, host: Host, settings: MqttConfig) -> None:
        self.host = host
        self.settings = settings
        self.client_id = settings.client_id or f"meter-gateway-{socket.gethostname()}"[:128]
        self.metrics = MqttMetrics(host.metrics.registry)
        self.connected = False
        self.last_message_at: datetime | None = None
        self.last_connected_at: datetime | None = None
        self.last_error: str | None = None
        self.counts = {"messages": 0, "items": 0, "malformed": 0, "failed": 0, "replies": 0, "reconnects": 0}

    # -- probe ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.connected else "degraded",
            "connected": self.connected,
            "broker": f"{self.settings.host}:{self.settings.port}",
            "client_id": self.client_id,
            "topics": list(self.settings.topics),
            "last_message_at": self.last_message_at.isoformat() if self.last_message_at else None,
            "last_connected_at": self.last_connected_at.isoformat() if self.last_connected_at else None,
            "last_error": self.last_error,
            **self.counts,
        }

    # -- connection -------------------------------------------------------------------------

    async def run(self, host: Host) -> None:
        """Stay subscribed until cancelled, reconnecting with growing pauses."""
        s = self.settings
        delay = s.reconnect_initial_seconds
        while True:
            session = _Session()
            try:
                await self._session(session)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away, or the store failed
                self.last_error = _describe(exc)
                log.warning("mqtt %s:%s: %s; reconnecting in %.0f s", s.host, s.port, self.last_error, delay)
            finally:
                self.connected = False
                self.metrics.connected.set(0)
            lasted = time.monotonic() - session.connected_at if session.connected_at else 0.0
            if not session.store_failed and (session.acked or lasted >= s.reconnect_max_seconds):
                delay = s.reconnect_initial_seconds  # it worked for a while: come back quickly
            await asyncio.sleep(delay)
            delay = min(delay * 2, s.reconnect_max_seconds)
            self.counts["reconnects"] += 1

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        client = aiomqtt.Client(
            s.host,
            s.port,
            username=s.username or None,
            password=s.password or None,
            identifier=self.client_id,
            clean_session=False,  # the broker keeps our subscriptions and queues for us
            keepalive=s.keepalive_seconds,
            timeout=10,
        )
        # aiomqtt 2.x acknowledges a QoS 1 message as soon as it is queued for us; we acknowledge
        # ourselves, after the commit (aiomqtt issue #345: paho's manual_ack underneath).
        client._client.manual_ack_set(True)
        return client

    async def _session(self, session: _Session) -> None:
        s = self.settings
        client = self._client()
        try:
            await client.__aenter__()
        except Exception:
            self.metrics.connects.labels("failed").inc()
            raise
        try:
            self.metrics.connects.labels("ok").inc()
            for topic in s.topics:
                await client.subscribe(topic, qos=s.qos)
            self.connected = True
            self.metrics.connected.set(1)
            self.last_connected_at = self.host.clock()
            session.connected_at = time.monotonic()
            log.info("mqtt: connected to %s:%s as %s, topics %s", s.host, s.port, self.client_id, s.topics)
            slots = asyncio.Semaphore(s.max_in_flight)
            async with asyncio.TaskGroup() as group:
                async for message in client.messages:
                    await slots.acquire()
                    group.create_task(self._handle(client, message, session, slots))
        finally:
            await client.__aexit__(None, None, None)

    # -- one message ------------------------------------------------------------------------

    async def _handle(
        self, client: aiomqtt.Client, message: aiomqtt.Message, session: _Session, slots: asyncio.Semaphore
    ) -> None:
        try:
            await self._decide(client, message, session)
        finally:
            slots.release()

    async def _decide(self, client: aiomqtt.Client, message: aiomqtt.Message, session: _Session) -> None:
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        now = self.host.clock()
        self.last_message_at = now
        self.counts["messages"] += 1
        try:
            items, subs = parse_payload(
                topic,
                payload,
                self.settings.topics,
                now,
                self.host.config.section("devices", DevicesConfig).max_items,
            )
        except BadMessage as exc:
            self.counts["malformed"] += 1
            self.metrics.messages.labels("malformed").inc()
            log.warning(
                "mqtt: malformed message on %s (%s): %s; payload %s",
                mask_phones_in(topic),
                exc.code,
                mask_phones_in(exc.message),
                mask_phones_in(payload[:300].decode("utf-8", "replace")),
            )
            await self._reply_error(client, topic, payload, exc)
            self._ack(client, message, session)
            return
        try:
            verdicts = await self.host.intake.submit_many(subs)
        except Exception:
            session.store_failed = True
            self.counts["failed"] += 1
            self.metrics.messages.labels("failed").inc()
            raise  # not acknowledged: the broker delivers it again after we reconnect
        self.counts["items"] += len(subs)
        self.metrics.items.inc(len(subs))
        self.metrics.messages.labels("decided").inc()
        if self.settings.reply_topic_prefix:
            await asyncio.gather(
                *(
                    self._publish(client, sub.meter_serial or "", result_of(item, verdict))
                    for item, sub, verdict in zip(items, subs, verdicts, strict=True)
                )
            )
        self._ack(client, message, session)

    def _ack(self, client: aiomqtt.Client, message: aiomqtt.Message, session: _Session) -> None:
        client._client.ack(message.mid, message.qos)  # QoS 0: nothing to acknowledge
        session.acked += 1

    async def _reply_error(self, client: aiomqtt.Client, topic: str, payload: bytes, exc: BadMessage) -> None:
        if not self.settings.reply_topic_prefix:
            return
        meter = topic_meter(topic, self.settings.topics)
        if meter is None:  # one item naming its meter
            try:
                body = orjson.loads(payload)
            except orjson.JSONDecodeError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("meter"), str):
                meter = body["meter"][:64]
        if meter:
            error = {"error": {"code": exc.code, "message": exc.message}, "topic": topic}
            await self._publish(client, meter, error)

    async def _publish(self, client: aiomqtt.Client, meter: str, body: dict[str, Any]) -> None:
        if not _usable_topic_level(meter):
            log.info("mqtt: no reply for meter %r: not usable in a topic", meter[:64])
            return
        await client.publish(
            f"{self.settings.reply_topic_prefix}/{meter}", orjson.dumps(body), qos=self.settings.qos
        )
        self.counts["replies"] += 1
        self.metrics.replies.inc()


def _describe(exc: BaseException) -> str:
    """One line for the probe and the log, also for a TaskGroup's exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]


def install(host: Host, app: web.Application) -> None:
    """With `[mqtt] enabled`: subscribe to the broker in the background and report in /healthz."""
    settings = host.config.section("mqtt", MqttConfig)
    if not settings.enabled:
        return
    subscriber = MqttSubscriber(host, settings)
    host.background.append(subscriber.run)
    host.health_probes["mqtt"] = subscriber.health
