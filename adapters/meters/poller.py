"""Modbus polling: the gateway reads smart meters itself, over RTU serial lines and Modbus TCP.

Configured by `[[modbus.buses]]` (README, "Smart meters"). Each bus is its own worker task, so a
dead meter or a dead port never delays another bus:

- an RTU bus has one master: its requests are strictly sequential, separated by the silent
  interval, with timeouts computed from the baud rate and the profile's `response_time_ms`;
- a TCP bus reads many meters at once, at most `max_concurrency` at a time; meters behind one
  TCP endpoint (a Modbus gateway) share its connection and are read one after the other.

Poll starts are staggered over the interval. Adjacent registers are read in one request
(`profiles.plan_reads`), words decoded by `profiles.split_block` (byte orders, "no value"
sentinels). A meter that fails backs off step by step (`backoff_initial_seconds`, doubling up
to `backoff_max_seconds`) without delaying its neighbours; a port or connection is reopened
only when every meter on it fails, and a serial port that disappeared (USB adapter unplugged)
is reopened when it is back.

Each poll becomes one `Submission` (channel modbus) with the meter's zones, decided by the same
intake and device rules as every other channel: a momentary zero or a counter reset is refused
as lower than the previous reading, a rollover is recognised. A changed serial-number register
at the same unit id is recorded as a meter replacement (table `modbus_events`) and the readings
go on under the new meter's serial, so the new meter's small counter is never judged against
the old one's.

Several gateway processes on one database share the buses: a bus is polled only by the process
holding its lease (`modbus_leases`), renewed every `lease_seconds / 3`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections import Counter as Tally
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

from adapters.meters import intervals, store
from adapters.meters.billing_selection import BillingSelection
from adapters.meters.config import ModbusBusConfig, ModbusConfig, ModbusMeterConfig
from adapters.meters.drivers import Driver, Readout, driver_for
from adapters.meters.drivers.modbus import read_plan
from adapters.meters.modbus_link import LineTiming, Link, ReadError, serial_link, tcp_link
from adapters.meters.profiles import (
    DEFAULT_DIR,
    Profile,
    ProfileError,
    load_profiles,
    split_block,
)
from adapters.meters.stream_link import StreamLink, serial_stream_link, tcp_stream_link
from gateway import ratios
from gateway.config import ConfigError
from gateway.model import Channel, Status, Submission, Verdict

if TYPE_CHECKING:
    from gateway.host import Host

log = logging.getLogger(__name__)

DEFAULT_PROFILES_DIR = DEFAULT_DIR
KWH_STEP = Decimal("0.001")  # the intake takes at most 3 decimals: never book energy not yet counted
REGISTRY_REFRESH_SECONDS = 60.0
TCP_CONNECT_TIMEOUT = 3.0
PURGE_EVERY_SECONDS = 86400.0  # polled interval data past its keeping time is deleted once a day
IDENTIFY_AGAIN_SECONDS = 86400.0  # a meter that refused its identification is asked again a day later
HAND_OVER_BACKLOG = 32  # readings of one bus waiting for the intake before the bus waits too
HAND_OVER_DRAIN_SECONDS = 10.0  # a stopping bus stores the readings it has taken for at most this long


class ModbusMetrics:
    """Counters in the gateway's Prometheus registry."""

    def __init__(self, registry: Any) -> None:
        self.requests = Counter(
            "gateway_modbus_requests_total", "Modbus read requests sent, by bus", ["bus"], registry=registry
        )
        self.errors = Counter(
            "gateway_modbus_errors_total",
            "Failed Modbus requests by bus, meter (unit address) and kind: timeout, crc, garbage, "
            "exception, disconnected, auth (a meter refused the password), closed (a Mercury channel "
            "not open right after opening it)",
            ["bus", "meter", "kind"],
            registry=registry,
        )
        self.polls = Counter(
            "gateway_modbus_polls_total",
            "Meter polls by bus and result: ok, failed, no_value, unidentified, interval (kept as "
            "interval data, not sent to billing)",
            ["bus", "result"],
            registry=registry,
        )
        self.reopens = Counter(
            "gateway_modbus_port_reopens_total",
            "Ports or connections closed and reopened because every meter on them failed",
            ["bus"],
            registry=registry,
        )
        self.replacements = Counter(
            "gateway_modbus_meter_replacements_total",
            "Meters found replaced by another serial at the same unit id",
            ["bus"],
            registry=registry,
        )
        self.poll_seconds = Histogram(
            "gateway_modbus_poll_seconds",
            "Time to read one meter (every request of its read plan)",
            ["bus"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.polled = Gauge(
            "gateway_modbus_bus_polled",
            "1 while this process holds the bus's lease and polls it",
            ["bus"],
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class Taken:
    """What a meter answered, on its way to the intake."""

    profile: Profile
    readout: Readout
    reply_at: datetime


@dataclass(eq=False)
class MeterState:
    """One configured meter as the worker sees it; also what /healthz shows."""

    bus: str
    unit: int
    address: str  # "7" on a serial line, "host:port/7" on TCP
    link: Link | StreamLink
    configured_serial: str | None
    configured_profile: str | None
    device_address: str = ""  # IEC 62056-21 sign-on address
    config: ModbusMeterConfig | None = None  # the meter's configuration (each driver reads its own keys)
    serial: str | None = None
    identity: str | None = None
    profile: Profile | None = None
    status: str = "starting"  # ok | failing | no_value | unidentified | ambiguous | store_error
    failures: int = 0  # consecutive
    failed_since_reopen: bool = False
    next_due: float = 0.0  # monotonic
    last_ok_at: datetime | None = None
    last_error: str | None = None
    last_verdict: str | None = None
    last_reasons: list[str] = field(default_factory=list)
    errors: Tally[str] = field(default_factory=Tally)
    polls: int = 0
    # "read", "unavailable" (the meter refused it; read under the configured serial) or "absent"
    identification: str = ""
    identify_after: float = 0.0  # monotonic: identification is not asked for before this
    zones: tuple[str, ...] | None = None  # the registry's zones of `serial`, as last looked up

    @property
    def identify(self) -> bool:
        return time.monotonic() >= self.identify_after

    def health(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "profile": self.profile.id if self.profile else self.configured_profile,
            "status": self.status,
            "consecutive_failures": self.failures,
            "last_ok_at": self.last_ok_at.isoformat() if self.last_ok_at else None,
            "last_error": self.last_error,
            "last_verdict": self.last_verdict,
            "last_reasons": self.last_reasons,
            "errors": dict(self.errors),
            "polls": self.polls,
            "identification": self.identification or None,
        }


def zone_values(
    profile: Profile, values: Mapping[str, Decimal | None], wanted: tuple[str, ...] | None
) -> dict[str, Decimal | None]:
    """The meter's reading per zone: the registry's zones when it knows the meter, else all the profile has.

    The counter read for a zone and its unit are the profile's (`billed_quantities`, the
    register's `unit`), in kWh. A zone the profile does not map is left out (the core then
    refuses the reading with a reason naming the missing zone); a register that said "no value"
    gives None.
    """
    by_zone: dict[str, Decimal | None] = {}
    for zone, reg in profile.billed_registers().items():
        value = values.get(reg.name)
        by_zone[zone] = None if value is None else reg.kwh(value)
    if wanted:
        return {z: by_zone[z] for z in wanted if z in by_zone}
    return by_zone


def kwh_text(value: Decimal) -> str:
    """A counter as the intake takes it: plain digits, at most 3 decimals (truncated, never rounded up)."""
    if value.as_tuple().exponent < -3:  # type: ignore[operator]
        value = value.quantize(KWH_STEP, rounding=ROUND_FLOOR)
    return format(value, "f")


class BusWorker:
    """Polls one bus for as long as this process holds its lease."""

    def __init__(self, poller: ModbusPoller, bus: ModbusBusConfig) -> None:
        self.poller = poller
        self.bus = bus
        self.name = bus.name
        self.links: dict[str, Link | StreamLink] = {}
        self.meters: list[MeterState] = []
        self._zones: dict[str, store.RegistryMeter] = {}  # serial -> its registry row (zones, ratio, branch)
        self._zones_at = -1e9
        # which polls go to billing, which are kept as interval data (the bus's `billing`)
        self.selection = BillingSelection(
            bus.billing, bus.billing_time, bus.intervals_minutes, getattr(poller.host, "branches", None)
        )
        self._semaphore = asyncio.Semaphore(bus.max_concurrency)
        self._handing: set[asyncio.Task[Verdict | None]] = set()  # readings on their way to the intake
        self._handing_of: dict[str, asyncio.Task[Verdict | None]] = {}  # meter address -> its latest
        self._room = asyncio.Semaphore(max(HAND_OVER_BACKLOG, bus.max_concurrency))
        timing = (
            LineTiming(bus.baudrate, bus.bytesize, bus.parity, bus.stopbits)
            if bus.transport == "rtu"
            else None
        )
        self.timing = timing
        self.protocol = bus_protocol(bus, poller.profiles)
        self.driver: Driver = driver_for(
            self.protocol,
            on_request=poller.metrics.requests.labels(bus.name).inc,
            max_baudrate=bus.baudrate,
            bus=bus,
        )
        for m in bus.meters:
            link = self._link_for(m)
            address = str(m.unit) if bus.transport == "rtu" else f"{link.name}/{m.unit}"
            profile = poller.profiles[m.profile] if m.profile else None
            self.meters.append(
                MeterState(
                    bus=bus.name,
                    unit=m.unit,
                    address=address,
                    link=link,
                    configured_serial=m.serial,
                    configured_profile=m.profile,
                    serial=m.serial,
                    profile=profile,
                    device_address=m.device_address,
                    config=m,
                )
            )

    def _link_for(self, m: ModbusMeterConfig) -> Link | StreamLink:
        if self.protocol != "modbus":
            return self._stream_link_for(m)
        bus = self.bus
        if bus.transport == "rtu":
            assert bus.device is not None
            key = bus.device
            if key not in self.links:
                assert self.timing is not None
                self.links[key] = serial_link(
                    bus.device,
                    self.timing,
                    latency_ms=bus.latency_ms,
                    backoff_initial=min(bus.backoff_initial_seconds, 5.0),
                    backoff_max=min(bus.backoff_max_seconds, 60.0),
                )
            return self.links[key]
        host = m.host or bus.host
        port = m.port or bus.port
        assert host is not None
        key = f"{host}:{port}"
        if key not in self.links:
            self.links[key] = tcp_link(
                host,
                port,
                latency_ms=bus.latency_ms,
                connect_timeout=TCP_CONNECT_TIMEOUT,
                backoff_initial=min(bus.backoff_initial_seconds, 5.0),
                backoff_max=min(bus.backoff_max_seconds, 60.0),
            )
        return self.links[key]

    def _stream_link_for(self, m: ModbusMeterConfig) -> StreamLink:
        """A serial port or a TCP converter for a protocol that is not Modbus (IEC 62056-21)."""
        bus = self.bus
        latency, first, most = (
            bus.latency_ms,
            min(bus.backoff_initial_seconds, 5.0),
            min(bus.backoff_max_seconds, 60.0),
        )
        # IEC 62056-21 signs on at 300 baud 7E1 (the driver changes the speed as the meter offers);
        # a bus that sets its character frame keeps it (an adapter that needs another)
        framing = {"bytesize", "parity", "stopbits"} & bus.model_fields_set
        sign_on = (
            LineTiming(bus.baudrate, bus.bytesize, bus.parity, bus.stopbits)  # DLMS, Mercury: as configured
            if self.protocol in ("dlms", "mercury", "mercury200")
            else LineTiming(300, bus.bytesize, bus.parity, bus.stopbits)
            if framing
            else LineTiming(300, 7, "E", 1)
        )
        soft_parity = None
        if bus.software_parity:  # the 7-bit frame goes over 8N1; its parity bit is the link's to add
            soft_parity = sign_on.parity
            sign_on = dataclasses.replace(sign_on, bytesize=8, parity="N")
        if bus.transport == "rtu":
            assert bus.device is not None
            key = bus.device
            if key not in self.links:
                self.links[key] = serial_stream_link(
                    bus.device,
                    sign_on,
                    latency_ms=latency,
                    backoff_initial=first,
                    backoff_max=most,
                    soft_parity=soft_parity,
                )
        else:
            host, port = m.host or bus.host, m.port or bus.port
            assert host is not None
            key = f"{host}:{port}"
            if key not in self.links:
                self.links[key] = tcp_stream_link(
                    host,
                    port,
                    sign_on,
                    latency_ms=latency,
                    connect_timeout=TCP_CONNECT_TIMEOUT,
                    backoff_initial=first,
                    backoff_max=most,
                    soft_parity=soft_parity,
                )
        link = self.links[key]
        assert isinstance(link, StreamLink)
        return link

    # -- life cycle -----------------------------------------------------------------------

    async def restore(self) -> None:
        """Take what earlier runs learned (serial seen, identity, detected profile) from the store."""
        known = await store.load_known(self.poller.engine, self.name)
        for m in self.meters:
            row = known.get(m.address)
            if row is None or row.configured_serial != m.configured_serial:
                continue  # never seen, or the operator changed the configuration since
            m.serial = row.serial or m.serial
            m.identity = row.identity
            if m.profile is None and row.profile in self.poller.profiles:
                m.profile = self.poller.profiles[row.profile]
        await self.selection.restore(self.poller.engine, sorted({m.serial for m in self.meters if m.serial}))

    def stagger(self) -> None:
        """Spread the first polls over one interval so the meters are not all read at once."""
        now = time.monotonic()
        n = len(self.meters)
        for i, m in enumerate(self.meters):
            m.next_due = now + self.bus.interval_seconds * i / n

    async def run(self) -> None:
        await self.restore()
        self.stagger()
        try:
            if self.bus.transport == "rtu":
                await self._run_serial()
            else:
                await asyncio.gather(*(self._run_meter(m) for m in self.meters))
        finally:
            # Readings already taken from the meters are stored before the bus stops; a store
            # that takes longer than that is not waited for (the meters are read again later).
            if self._handing:
                _, late = await asyncio.wait(self._handing, timeout=HAND_OVER_DRAIN_SECONDS)
                for task in late:
                    task.cancel()
            for link in self.links.values():
                link.close()

    async def _run_serial(self) -> None:
        """One master on the line: the meter due first is read next, one request at a time."""
        while True:
            m = min(self.meters, key=lambda x: x.next_due)
            wait = m.next_due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._previous_handed_over(m)
            reading = await self.read_meter(m)
            _stop_if_cancelled()
            if reading is not None:
                await self._hand_over_later(m, reading)

    async def _run_meter(self, m: MeterState) -> None:
        while True:
            wait = m.next_due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._previous_handed_over(m)
            async with self._semaphore:
                reading = await self.read_meter(m)
            _stop_if_cancelled()
            if reading is not None:
                await self._hand_over_later(m, reading)

    # The line (or the meters' concurrency) is what a bus is short of, so it does not wait for
    # the intake: a reading is handed over in a task of its own while the next meter is read, at
    # most `_room` at once (then the bus waits for the store: back-pressure). A meter is not read
    # again before its last reading has its verdict, so its readings reach the intake in the order
    # they were taken; and a bus that stops stores what it has read (`run`'s drain).

    async def _previous_handed_over(self, m: MeterState) -> None:
        previous = self._handing_of.get(m.address)
        if previous is not None and not previous.done():
            await asyncio.wait([previous])

    async def _hand_over_later(self, m: MeterState, reading: Taken) -> None:
        await self._room.acquire()
        task = asyncio.create_task(self.hand_over(m, reading))
        self._handing.add(task)
        self._handing_of[m.address] = task
        task.add_done_callback(self._handed)

    def _handed(self, task: asyncio.Task[Verdict | None]) -> None:
        self._handing.discard(task)
        self._room.release()

    # -- one poll -------------------------------------------------------------------------

    async def poll_meter(self, m: MeterState) -> Verdict | None:
        """Read one meter, hand its reading to the intake and wait for the verdict; schedule its
        next poll. Never raises."""
        reading = await self.read_meter(m)
        return None if reading is None else await self.hand_over(m, reading)

    async def read_meter(self, m: MeterState) -> Taken | None:
        """Read one meter and schedule its next poll: what it answered, or None (a failure,
        counted). Never raises."""
        started = time.monotonic()
        m.polls += 1
        try:
            reading = await self._poll(m)
        except ReadError as exc:
            self._failed(m, exc)
            return None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store (the registry's zones)
            log.exception("modbus %s/%s: poll failed", self.name, m.address)
            m.status, m.last_error = "store_error", f"{type(exc).__name__}: {exc}"
            m.next_due = started + self.bus.interval_seconds
            return None
        m.next_due = started + self.bus.interval_seconds
        return reading

    async def hand_over(self, m: MeterState, taken: Taken) -> Verdict | None:
        """What a meter answered, checked and handed to the intake: the verdict, or None when it
        went no further. Never raises."""
        metrics = self.poller.metrics
        try:
            settled = await self._settle(m, taken)
            if settled is None:
                return None
            sub, by_zone, registered = settled
            verdict = await self.poller.intake_submit(sub)
            if self.selection.keeps_intervals:
                await self._keep(m, by_zone, registered, taken.reply_at, intervals.BILLED)
                self.selection.billed(sub.meter_serial or "", taken.reply_at)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store or the intake
            log.exception("modbus %s/%s: reading not stored", self.name, m.address)
            m.status, m.last_error = "store_error", f"{type(exc).__name__}: {exc}"
            return None
        metrics.polls.labels(self.name, "ok").inc()
        m.status = "ok"
        m.last_error = None
        m.last_verdict = verdict.status.value
        m.last_reasons = [r.code for r in verdict.reasons]
        if verdict.status is Status.REJECTED:
            log.info(
                "modbus %s/%s: reading of %s rejected: %s",
                self.name,
                m.address,
                sub.meter_serial,
                ", ".join(m.last_reasons),
            )
        return verdict

    async def _poll(self, m: MeterState) -> Taken | None:
        metrics = self.poller.metrics
        if m.profile is None:
            await self._detect(m)
            if m.profile is None:
                m.next_due = time.monotonic() + self._backoff(m)
                metrics.polls.labels(self.name, "unidentified").inc()
                return None
        profile = m.profile
        if m.serial is not None:
            known = await self._registry_meter(m.serial)
            m.zones = known.zones if known else None
        started = time.monotonic()
        readout = await self.driver.read(
            m, profile, identify=m.identify, serial_known=m.configured_serial is not None
        )
        reply_at = self.poller.clock()
        metrics.poll_seconds.labels(self.name).observe(time.monotonic() - started)
        self._succeeded(m)
        return Taken(profile, readout, reply_at)

    async def _settle(
        self, m: MeterState, taken: Taken
    ) -> tuple[Submission, dict[str, Decimal | None], store.RegistryMeter | None] | None:
        """What the meter answered, checked (identity, zones, billing selection) and made a
        submission; None when it goes no further (counted and shown in the meter's status)."""
        metrics = self.poller.metrics
        profile, readout, reply_at = taken.profile, taken.readout, taken.reply_at
        self._note_identification(m, readout.identification)
        await self._check_identity(m, readout.identity, reply_at)
        if m.serial is None:
            m.status, m.last_error = "unidentified", "no serial configured and none readable from the meter"
            metrics.polls.labels(self.name, "unidentified").inc()
            return None
        values = readout.values
        registered = await self._registry_meter(m.serial)
        by_zone = zone_values(profile, values, registered.zones if registered else None)
        missing = [z for z, v in by_zone.items() if v is None]
        if missing or not by_zone:
            m.status = "no_value"
            m.last_error = f"the meter reports no value for {', '.join(missing) or 'any zone'}"
            metrics.polls.labels(self.name, "no_value").inc()
            return None
        branch = registered.branch if registered else None
        if not self.selection.to_billing(m.serial, reply_at, branch):
            # Billing takes one reading a day or a period from this bus: this poll is interval data.
            if self.selection.keep_interval(m.serial, reply_at):
                await self._keep(m, by_zone, registered, reply_at, None)
                self.selection.kept(m.serial, reply_at)
            metrics.polls.labels(self.name, "interval").inc()
            m.status, m.last_error = "ok", None
            return None
        raw = {
            "bus": self.name,
            "unit": m.unit,
            "profile": profile.id,
            "identity": m.identity,
            **readout.raw,
        }
        sub = Submission(
            channel=Channel.MODBUS,
            received_at=reply_at,
            sender=f"{self.name}:{m.unit}",
            meter_serial=m.serial,
            values={z: kwh_text(v) for z, v in by_zone.items() if v is not None},
            taken_at=reply_at,
            channel_message_id=f"{m.serial}:{reply_at.isoformat()}",
            raw=orjson.dumps(raw).decode(),
        )
        return sub, by_zone, registered

    async def _read(
        self, m: MeterState, function: int, address: int, count: int, response_ms: int
    ) -> list[int]:
        self.poller.metrics.requests.labels(self.name).inc()
        assert isinstance(m.link, Link)
        return await m.link.read(m.unit, function, address, count, response_ms)

    def _note_identification(self, m: MeterState, identification: str) -> None:
        """A meter that refuses its identification is read on under its configured serial, and asked
        for it again a day later (README: "A meter without an identification register")."""
        if identification == "unavailable":
            m.identify_after = time.monotonic() + IDENTIFY_AGAIN_SECONDS
            if m.identification != "unavailable":
                log.warning(
                    "meters %s/%s: the meter refuses its identification; read as %s",
                    self.name,
                    m.address,
                    m.serial,
                )
            m.identification = identification
        elif identification == "read" or not m.identification:
            m.identification = identification

    def _backoff(self, m: MeterState) -> float:
        step = self.bus.backoff_initial_seconds * (2 ** max(0, m.failures - 1))
        return min(step, self.bus.backoff_max_seconds)

    def _failed(self, m: MeterState, exc: ReadError) -> None:
        m.failures += 1
        m.failed_since_reopen = True
        m.errors[exc.kind] += 1
        m.status = "failing"
        m.last_error = str(exc)
        self.poller.metrics.errors.labels(self.name, m.address, exc.kind).inc()
        self.poller.metrics.polls.labels(self.name, "failed").inc()
        # Retried after a pause that doubles with each failure in a row (up to the maximum); the
        # other meters keep their own schedule meanwhile.
        m.next_due = time.monotonic() + self._backoff(m)
        if m.failures == 1 or m.failures % 10 == 0:
            log.warning("modbus %s/%s: %s (failure %d)", self.name, m.address, exc, m.failures)
        link_meters = [x for x in self.meters if x.link is m.link]
        if m.link.is_open and all(x.failed_since_reopen for x in link_meters):
            log.warning("modbus %s: every meter on %s fails; reopening it", self.name, m.link.name)
            self.poller.metrics.reopens.labels(self.name).inc()
            m.link.reopen_later()
            for x in link_meters:
                x.failed_since_reopen = False

    def _succeeded(self, m: MeterState) -> None:
        m.failures = 0
        m.failed_since_reopen = False
        m.last_ok_at = self.poller.clock()

    # -- identity: profile detection and meter replacement ----------------------------------

    async def _detect(self, m: MeterState) -> None:
        """Find the profile whose identification registers and read plan the meter answers (Modbus)."""
        answered: list[Profile] = []
        alive = False  # the meter answered something, if only an exception
        last_error: ReadError | None = None
        for profile in sorted(self.poller.profiles.values(), key=lambda p: p.id):
            if not profile.identification or profile.protocol != "modbus":
                continue
            try:
                for block in read_plan(profile):
                    words = await self._read(
                        m, block.function, block.address, block.count, profile.response_time_ms
                    )
                    alive = True
                    decoded = split_block(block, words)
                    if any(decoded.get(name) is None for name in profile.identification if name in decoded):
                        raise ReadError("exception", "identification register has no value")
            except ReadError as exc:
                if exc.kind == "disconnected":
                    raise
                alive = alive or exc.kind == "exception"
                last_error = exc
                continue
            answered.append(profile)
        now = self.poller.clock()
        if len(answered) == 1:
            m.profile = answered[0]
            m.status = "starting"
            await self._remember(m, now)
            await store.record_event(
                self.poller.engine,
                at=now,
                bus=self.name,
                address=m.address,
                kind="profile_detected",
                old_serial=m.serial,
                new_serial=m.serial,
                detail=f"profile {m.profile.id} detected by its identification registers",
            )
            log.info("modbus %s/%s: profile %s detected", self.name, m.address, m.profile.id)
            return
        if answered:
            m.status = "ambiguous"
            m.failures += 1
            m.last_error = (
                "several profiles fit this meter: "
                + ", ".join(p.id for p in answered)
                + "; set profile in the configuration"
            )
            return
        if not alive and last_error is not None:
            raise last_error  # a silent meter: counted like any failed poll
        m.status = "unidentified"
        m.failures += 1
        m.last_error = "no firmware profile matches this meter; set profile in the configuration"

    async def _check_identity(self, m: MeterState, identity: str | None, now: datetime) -> None:
        """The serial number the meter reports: adopt it once, record a replacement when it changes."""
        if identity is None:
            return
        if m.identity == identity:
            return
        previous_serial = m.serial
        replaced = False
        if m.identity is not None:
            replaced = True  # another meter answers at this unit id
        elif m.configured_serial is not None and m.configured_serial.isdigit():
            replaced = m.configured_serial.lstrip("0") != identity.lstrip("0")
        m.identity = identity
        if replaced or m.serial is None:
            m.serial = identity
        await self._remember(m, now)
        if replaced:
            self._zones_at = -1e9  # the new serial's zones are looked up at once
            self.poller.metrics.replacements.labels(self.name).inc()
            await store.record_event(
                self.poller.engine,
                at=now,
                bus=self.name,
                address=m.address,
                kind="meter_replaced",
                old_serial=previous_serial,
                new_serial=m.serial,
                detail=f"unit {m.unit} now reports serial number {identity}; readings go on under {m.serial}",
            )
            log.warning(
                "modbus %s/%s: meter %s replaced by %s", self.name, m.address, previous_serial, m.serial
            )

    async def _remember(self, m: MeterState, now: datetime) -> None:
        await store.save_known(
            self.poller.engine,
            self.name,
            m.address,
            store.KnownMeter(m.configured_serial, m.serial, m.identity, m.profile.id if m.profile else None),
            now,
        )

    async def _registry_meter(self, serial: str) -> store.RegistryMeter | None:
        now = time.monotonic()
        if now - self._zones_at > REGISTRY_REFRESH_SECONDS or (
            serial not in self._zones and now - self._zones_at > 1.0
        ):
            serials = sorted({m.serial for m in self.meters if m.serial})
            self._zones = await store.registry_meters(self.poller.engine, serials)
            self._zones_at = now
        return self._zones.get(serial)

    async def _keep(
        self,
        m: MeterState,
        by_zone: Mapping[str, Decimal | None],
        registered: store.RegistryMeter | None,
        at: datetime,
        status: str | None,
    ) -> None:
        """A poll as interval data: each zone's register in kWh times the registry's ratio (the
        core's rule, gateway/ratios.py), the register beside it when a ratio applies."""
        ratio = registered.ratio if registered else None
        rows = []
        for zone, value in by_zone.items():
            if value is None:
                continue
            register = Decimal(kwh_text(value))
            rows.append(
                intervals.IntervalRow(
                    meter_serial=m.serial or "",
                    zone=zone,
                    kind="register",
                    at=at,
                    value=ratios.billed(register, ratio),
                    raw_value=register if ratio is not None else None,
                    status=status,
                    source=f"modbus:{self.name}:{m.unit}",
                )
            )
        async with self.poller.engine.begin() as conn:
            await intervals.store_intervals(conn, rows, at)

    # -- health ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        ok = sum(1 for m in self.meters if m.status == "ok")
        return {
            "polled_here": True,
            "transport": self.bus.transport,
            "links": {
                name: {
                    "open": link.is_open,
                    "requests": link.stats.requests,
                    "reopened": link.stats.reopened,
                    "open_failures": link.stats.open_failures,
                    "last_open_error": link.stats.last_open_error,
                }
                for name, link in self.links.items()
            },
            "meters_ok": ok,
            "meters_failing": len(self.meters) - ok,
            "meters": {m.address: m.health() for m in self.meters},
        }


def _stop_if_cancelled() -> None:
    """Honour a cancellation that arrived while pymodbus was reading.

    pymodbus' request code can swallow the CancelledError of a cancel that lands mid-request; the
    task then stays "cancelling" but would poll on forever, and a gateway stopping would wait for
    it forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class ModbusPoller:
    """Holds the bus leases of this process and runs a worker per held bus."""

    def __init__(self, host: Host, config: ModbusConfig, profiles: dict[str, Profile]) -> None:
        self.host = host
        self.config = config
        self.engine = host.engine
        self.clock = host.clock
        self.profiles = profiles
        self.metrics = ModbusMetrics(host.metrics.registry)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.workers: dict[str, BusWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._held_until: dict[str, datetime] = {}

    async def intake_submit(self, sub: Submission) -> Verdict:
        return await self.host.intake.submit(sub)

    async def run(self, host: Host) -> None:
        """The lease keeper: claim or renew each bus's lease, start or stop its worker."""
        renew_every = self.config.lease_seconds / 3
        purged_at = -1e9
        try:
            while True:
                await self.renew_once()
                if time.monotonic() - purged_at > PURGE_EVERY_SECONDS and self.workers:
                    purged_at = time.monotonic()
                    await self.purge_intervals()
                await asyncio.sleep(renew_every)
        finally:
            await self.stop_all()

    async def purge_intervals(self) -> None:
        """Polled interval data older than `intervals_keep_days` goes (a head-end file's stays)."""
        if not any(b.billing != "every_poll" for b in self.config.buses):
            return
        before = self.clock() - timedelta(days=self.config.intervals_keep_days)
        try:
            gone = await intervals.purge_before(self.engine, before, kind="register")
        except Exception as exc:  # the database is away: next time
            log.warning("modbus: interval data not purged: %s", exc)
            return
        if gone:
            log.info("modbus: %d interval points older than %s deleted", gone, before.date())

    async def renew_once(self) -> None:
        for bus in self.config.buses:
            now = self.clock()
            try:
                held = await store.claim_lease(
                    self.engine, bus.name, self.holder, now, self.config.lease_seconds
                )
            except Exception as exc:  # the database is away: keep polling while the lease lasts
                log.warning("modbus: cannot renew the lease of bus %s: %s", bus.name, exc)
                until = self._held_until.get(bus.name)
                held = until is not None and now < until
            else:
                if held:
                    self._held_until[bus.name] = now + _seconds(self.config.lease_seconds)
            running = bus.name in self._tasks and not self._tasks[bus.name].done()
            if held and not running:
                self._start(bus)
            elif not held and running:
                log.info("modbus: bus %s is polled by another gateway process now", bus.name)
                await self._stop(bus.name)

    def _start(self, bus: ModbusBusConfig) -> None:
        worker = BusWorker(self, bus)
        self.workers[bus.name] = worker
        self._tasks[bus.name] = asyncio.create_task(self._supervise(worker), name=f"modbus-{bus.name}")
        self.metrics.polled.labels(bus.name).set(1)
        log.info("modbus: polling bus %s (%d meters)", bus.name, len(bus.meters))

    async def _supervise(self, worker: BusWorker) -> None:
        """One bus's worker; restarted after an unexpected error, never taking other buses down."""
        while True:
            try:
                await worker.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("modbus: worker of bus %s failed; restarting in 5 s", worker.name)
                await asyncio.sleep(5)
                worker = BusWorker(self, worker.bus)
                self.workers[worker.name] = worker

    async def _stop(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        self.workers.pop(name, None)
        self._held_until.pop(name, None)
        self.metrics.polled.labels(name).set(0)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop_all(self) -> None:
        names = list(self._tasks)
        for name in names:
            await self._stop(name)
        try:
            await asyncio.shield(store.release_leases(self.engine, names, self.holder, self.clock()))
        except Exception as exc:  # shutting down anyway; the leases expire by themselves
            log.info("modbus: leases not released (%s); they expire by themselves", exc)

    def health(self) -> dict[str, Any]:
        buses: dict[str, Any] = {}
        degraded = False
        for bus in self.config.buses:
            worker = self.workers.get(bus.name)
            if worker is None:
                buses[bus.name] = {
                    "polled_here": False,
                    "transport": bus.transport,
                    "meters": len(bus.meters),
                }
                continue
            buses[bus.name] = info = worker.health()
            degraded = degraded or info["meters_failing"] > 0
        return {"status": "degraded" if degraded else "ok", "holder": self.holder, "buses": buses}


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def load_modbus_profiles(config: ModbusConfig) -> dict[str, Profile]:
    """The firmware profiles, checked against the configured meters; ConfigError names the key."""
    directory = Path(config.profiles_dir) if config.profiles_dir else DEFAULT_PROFILES_DIR
    try:
        profiles = load_profiles(directory)
    except ProfileError as exc:
        raise ConfigError(f"modbus.profiles_dir: {exc}") from None
    for b, bus in enumerate(config.buses):
        for i, meter in enumerate(bus.meters):
            if meter.profile is not None and meter.profile not in profiles:
                raise ConfigError(
                    f"modbus.buses[{b}].meters[{i}].profile: unknown profile {meter.profile!r} "
                    f"(in {directory}: {', '.join(sorted(profiles))})"
                )
        try:
            protocol = bus_protocol(bus, profiles)
        except ValueError as exc:
            raise ConfigError(f"modbus.buses[{b}].meters: {exc}") from None
        if bus.software_parity:
            framed = {"bytesize", "parity"} & bus.model_fields_set
            if protocol == "modbus":
                raise ConfigError(
                    f"modbus.buses[{b}].software_parity: for the byte protocols (IEC 62056-21, Mercury, "
                    "DLMS); a Modbus line's parity is the port's"
                )
            if (framed or protocol != "iec62056-21") and (bus.bytesize != 7 or bus.parity == "N"):
                raise ConfigError(
                    f"modbus.buses[{b}].software_parity: needs 7 data bits with parity E or O "
                    f"(this bus: {bus.bytesize}{bus.parity})"
                )
        if protocol == "dlms":
            from adapters.meters.drivers.dlms import bus_problems

            for problem in bus_problems(bus):
                raise ConfigError(f"modbus.buses[{b}].{problem}")
        if protocol == "mercury":
            from adapters.meters.drivers.mercury import bus_problems as mercury_problems

            for problem in mercury_problems(bus):
                raise ConfigError(f"modbus.buses[{b}].{problem}")
        if protocol == "mercury200":
            from adapters.meters.drivers.mercury200 import bus_problems as mercury200_problems

            for problem in mercury200_problems(bus):
                raise ConfigError(f"modbus.buses[{b}].{problem}")
    return profiles


def bus_protocol(bus: ModbusBusConfig, profiles: Mapping[str, Profile]) -> str:
    """The one protocol a bus speaks, from its meters' profiles (a meter without one: Modbus, detected).

    One line carries one protocol: the port is opened for it (Modbus RTU framing, or 300 baud 7E1
    for IEC 62056-21)."""
    found = {profiles[m.profile].protocol if m.profile else "modbus" for m in bus.meters}
    if len(found) > 1:
        raise ValueError(
            f"bus {bus.name!r} mixes protocols ({', '.join(sorted(found))}; a meter without a profile "
            "is a Modbus meter, detected); one line carries one protocol: put the meters on buses of their own"
        )
    return found.pop()


def install(host: Host, app: web.Application) -> None:
    """Poll the configured buses; nothing at all when `[[modbus.buses]]` lists none."""
    config = host.config.section("modbus", ModbusConfig)
    if not config.buses:
        return
    # pymodbus logs every timeout as an error with a frame dump; the poller reports failures itself
    # (per meter, in /healthz and /metrics), so once this gateway polls meters only pymodbus'
    # critical messages are kept (not on import: a test or tool importing the link keeps them).
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    poller = ModbusPoller(host, config, load_modbus_profiles(config))
    host.background.append(poller.run)
    host.health_probes["modbus"] = poller.health
    app[MODBUS_POLLER] = poller


MODBUS_POLLER = web.AppKey("modbus_poller", ModbusPoller)
