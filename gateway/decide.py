"""Deciding a group of submissions in one transaction: the rules of intake, in one place.

For each submission of a group: a message already stored (same channel and channel message id)
gets its stored answer again; free text goes through the residents' grammar (gateway/text_intake.py
chooses the reading the registry supports); the meter is found
in the registry; every validation rule is applied against the zone's history; then the inbound
message, its readings and verdict and the moved-on history are written, all in the caller's
transaction. `gateway/intake.py` decides where a group runs and commits it before anyone is
answered. The rows are read and written by gateway/store/intake_rows.py; the one decision runs
on an async connection or, in the SQLite writer process, on a synchronous one through
gateway/store/sync_bridge.py; which meter a submission speaks for is gateway/meter_resolution.py,
who sent it gateway/senders.py. What remains here (about 650 lines) is one `Decider` whose steps
share a group's pending outcomes (and its caches between groups), kept together so that the order
of the steps and what each may assume of the ones before it read in one place.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from gateway import ratios
from gateway.bounds import storable, unfit_field, unprocessable
from gateway.branches import Branch, Branches
from gateway.calendar import WorkCalendar
from gateway.config import Config, RuleThresholds
from gateway.group_split import Outcome, decide_apart
from gateway.meter_cache import MeterCache, ZoneStateCache
from gateway.meter_resolution import RegistryLookup, resolve_meter
from gateway.model import (
    CHANNEL_GROUP,
    Channel,
    ReadingOut,
    Reason,
    RuleGroup,
    Severity,
    Status,
    Submission,
    Verdict,
)
from gateway.privacy import (
    normalize_email,
    normalize_phone,
    use_secret,
)
from gateway.senders import (
    ADDRESSED_CHANNELS,
    PHONE_CHANNELS,
    held_for_review,
    hold_site_form,
    rate_limited,
    refusal,
    sender_address,
    sender_key,
    site_keys,
    site_rate_limited,
    source_of,
)
from gateway.store import intake_rows
from gateway.store.schema import inbound, readings
from gateway.store.schema_senders import count_submissions, forget_before, hour_of
from gateway.store.sync_bridge import Conn, SyncConnection, run_to_completion
from gateway.text_intake import TextReading, choose, read_text
from gateway.validation.context import MeterInfo, ZoneState, advance_state
from gateway.validation.evaluate import Evaluation, evaluate
from gateway.validation.explain import generic, period_ru, reason

log = logging.getLogger(__name__)

# How far a status is from plain acceptance (a hold never softens a worse verdict).
_RANK = {Status.ACCEPTED: 0, Status.FLAGGED: 1, Status.NEEDS_CONFIRMATION: 2, Status.REJECTED: 3}


@dataclass(slots=True)
class _Pending:
    """One submission's outcome inside a group, until the group commits."""

    sub: Submission
    verdict: Verdict | None = None  # set for replays
    copy_of: int | None = None  # index of an earlier identical message in the same group
    meter: MeterInfo | None = None
    evaluation: Evaluation | None = None
    period: str | None = None
    inbound_row: dict[str, Any] | None = None
    reading_rows: list[dict[str, Any]] = field(default_factory=list)
    # A phone (address) not registered for the account it speaks for (SMS, IVR, mail): told nothing of it.
    unverified: bool = False
    text: TextReading | None = None  # free text read by the grammar (gateway/text_intake.py)


class LockTurn:
    """The order in which groups decided at the same time lock their meters' rows.

    PostgreSQL groups of one gateway are decided two at a time. A group locks the state rows of
    its meters (FOR UPDATE) only after the group formed before it has locked its own, so a
    group that shares a meter with the previous one waits for its commit: readings of one meter
    are decided in the order they arrived, as when groups ran one at a time.
    """

    def __init__(self, previous: LockTurn | None) -> None:
        self._previous = previous
        self._taken = asyncio.Event()

    async def wait(self) -> None:
        if self._previous is not None:
            await self._previous._taken.wait()

    def taken(self) -> None:
        """This group holds its locks (or has failed): the next one may take its own."""
        self._taken.set()
        self._previous = None  # no chain of finished groups kept alive


class Decider:
    """The intake rules applied to a group of submissions inside one transaction.

    It holds no connection: `Intake` runs it on the event loop (PostgreSQL, in-memory SQLite)
    and the SQLite writer process (gateway/writer_process.py) runs it with `decide_sync`. It
    keeps the registry rows it has read, and in the writer process the zone states too
    (gateway/meter_cache.py), so one Decider serves one writer.
    """

    def __init__(
        self, config: Config, calendar: WorkCalendar, postgres: bool, sole_writer: bool = False
    ) -> None:
        self.config = config
        self.calendar = calendar
        self.branches = Branches(config, calendar)  # each account's window, calendar and zone
        if config.privacy.secret:  # in the writer process: the key comes with the configuration
            use_secret(config.privacy.secret)
        self._postgres = postgres
        self._meters = MeterCache()  # registry rows read so far
        # The SQLite writer process keeps the zone states it has read and written (see
        # _load_states); a decider that shares its connection with other code cannot.
        self._states: ZoneStateCache | None = ZoneStateCache() if sole_writer else None
        self._senders = config.senders
        self.formats = config.text_formats.formats()  # how residents' texts are read
        self._counted_hour: datetime | None = None  # the hour whose older sender counts were dropped
        self._limits: dict[RuleGroup, RuleThresholds] = {
            RuleGroup.RESIDENTS: config.validation.residents,
            RuleGroup.OPERATORS: config.validation.operators,
            RuleGroup.DEVICES: config.validation.devices,
        }

    def decide_apart_sync(self, engine: Engine, subs: list[Submission], now: datetime) -> list[Outcome]:
        """`decide_sync` on the whole group, or on its parts when that fails
        (gateway/group_split.py): one verdict (or, past a systemic failure, error) each."""

        async def attempt(part: list[Submission]) -> list[Verdict]:
            return self.decide_sync(engine, part, now)

        async def refuse(sub: Submission) -> Verdict:
            return self.decide_sync(engine, [sub], now, refuse=True)[0]

        outcomes: list[Outcome] = run_to_completion(decide_apart(subs, attempt, refuse))
        return outcomes

    def decide_sync(
        self, engine: Engine, subs: list[Submission], now: datetime, refuse: bool = False
    ) -> list[Verdict]:
        """Decide and commit a group on a synchronous (sqlite3) engine, on this thread."""
        for attempt in range(3):
            try:
                with engine.begin() as conn:
                    verdicts: list[Verdict] = run_to_completion(
                        self.decide(SyncConnection(conn), subs, now, refuse=refuse)
                    )
                    return verdicts
            except BaseException as exc:
                self._forget_states()  # the states of a rolled-back group were moved on
                if not isinstance(exc, IntegrityError) or attempt == 2:
                    raise
                log.info("intake group hit a concurrent duplicate; retrying")
        raise AssertionError("unreachable")

    async def decide(
        self,
        conn: Conn,
        subs: list[Submission],
        now: datetime,
        turn: LockTurn | None = None,
        refuse: bool = False,
    ) -> list[Verdict]:
        """Decide `subs` in order within the caller's transaction on `conn`; `now` is the
        moment of deciding (the clock of the gateway that received them). With `turn`, the
        meters' state rows are locked only after the previous group has locked its own.
        With `refuse`, each is stored as `unprocessable` (its decision failed on its own)."""
        pending = [_Pending(s) for s in subs]
        for p in pending:
            unfit = unfit_field(p.sub)
            if unfit is not None or refuse:
                p.sub = storable(p.sub)  # before anything reaches the database
                p.evaluation = Evaluation(Status.REJECTED, [unprocessable(unfit)])
        await self._replay_known(conn, pending)
        fresh = [p for p in pending if p.verdict is None and p.copy_of is None]
        for p in fresh:
            text_only = p.sub.text is not None and not (p.sub.values or p.sub.positional_values)
            if text_only and p.evaluation is None:
                self._read_text(p)
        lookup = await self._lookup(conn, [p for p in fresh if p.evaluation is None])
        for p in fresh:
            if p.evaluation is not None:
                continue
            if p.text is not None:
                resolve = functools.partial(resolve_meter, lookup=lookup, number=p.text.meter_number)
                p.sub, p.meter, problem = choose(p.text, resolve, self.formats)
            else:
                p.meter, problem = resolve_meter(p.sub, lookup)
            if problem is not None:
                p.evaluation = Evaluation(Status.REJECTED, [problem])
            self._check_sender(p, lookup)
        if turn is not None:
            await turn.wait()
        states = await self._load_states(
            conn, {p.meter.id for p in fresh if p.meter and p.evaluation is None}
        )
        if turn is not None:
            turn.taken()
        # Counted after the meters are locked: every group takes its locks in the same order
        # (meter states, then sender counts), so groups of several gateways cannot deadlock.
        await self._limit_senders(conn, fresh, now)
        for p in fresh:
            if p.evaluation is None and p.meter is not None:
                self._evaluate(p, states, now)
            if p.text is not None and p.evaluation is not None:
                p.evaluation.reasons += p.text.notes
            if p.unverified and p.evaluation is not None:
                p.evaluation.reasons = [generic(r) for r in p.evaluation.reasons]
        await self._store(conn, fresh, states)
        return [self._verdict_of(p, pending) for p in pending]

    async def _replay_known(self, conn: Conn, pending: list[_Pending]) -> None:
        """Messages already stored (same channel message id) get their stored answer again."""
        keys: dict[tuple[str, str], int] = {}
        for i, p in enumerate(pending):
            if p.sub.channel_message_id is None:
                continue
            key = (p.sub.channel.value, p.sub.channel_message_id)
            if key in keys:
                p.copy_of = keys[key]
            else:
                keys[key] = i
        if not keys:
            return
        by_channel: dict[str, list[str]] = {}
        for ch, mid in keys:
            by_channel.setdefault(ch, []).append(mid)
        rows = await intake_rows.stored_answers(conn, by_channel)
        if not rows:
            return
        their_readings = await intake_rows.reading_ids(conn, [r[0] for r in rows])
        for inbound_id, channel, message_id, response in rows:
            p = pending[keys[(channel, message_id)]]
            p.verdict = intake_rows.verdict_from_json(
                response, inbound_id, their_readings.get(inbound_id, {}), duplicate=True
            )

    def _read_text(self, p: _Pending) -> None:
        """Free text (SMS, chat): its readings to choose from, or why it is not understood."""
        found = read_text(p.sub, self.formats)
        if isinstance(found, Reason):
            p.evaluation = Evaluation(Status.REJECTED, [found])
        else:
            p.text, p.sub = found, found.candidates[0]

    async def _lookup(self, conn: Conn, fresh: list[_Pending]) -> RegistryLookup:
        found = RegistryLookup()
        subs = [s for p in fresh for s in (p.text.candidates if p.text else (p.sub,))]
        serials = {s.meter_serial for s in subs if s.meter_serial}
        numbers = {s.account for s in subs if s.account}
        # Every phone's and address's accounts: they name the account of a bare reading and tell
        # whether the sender is verified for the account it names.
        phone_list = {normalize_phone(p.sub.sender) for p in fresh if p.sub.channel in PHONE_CHANNELS}
        email_list = {normalize_email(p.sub.sender) for p in fresh if p.sub.channel is Channel.MAIL}
        known = [
            *(await intake_rows.phone_accounts(conn, list(phone_list)) if phone_list else ()),
            *(await intake_rows.email_accounts(conn, list(email_list)) if email_list else ()),
        ]
        for address, number in known:
            found.by_sender.setdefault(address, []).append(number)
            numbers.add(number)
        if not serials and not numbers:
            return found
        cache = self._meters
        cache.check(await intake_rows.current_registry_version(conn))  # None: never imported
        await self._read_meters(
            conn,
            [s for s in serials if s not in cache.by_serial],
            [n for n in numbers if n not in cache.by_account],
        )
        for serial in serials:
            meter = cache.by_serial[serial]
            if meter is not None:
                found.by_serial[serial] = meter
        for number in numbers:
            account_meters = cache.by_account[number]
            if account_meters is not None:
                found.by_account[number] = list(account_meters)
                found.account_numbers.add(number)
        return found

    async def _read_meters(self, conn: Conn, serials: list[str], numbers: list[str]) -> None:
        """Put the meters of these serials and of these accounts into the cache (None if unknown)."""
        if not serials and not numbers:
            return
        cache = self._meters
        cache.by_serial.update(dict.fromkeys(serials))
        of_account: dict[str, list[MeterInfo]] = {}
        for info in await intake_rows.meters_of(conn, serials, numbers):
            cache.by_serial[info.serial] = info
            of_account.setdefault(info.account, []).append(info)
        if numbers:
            # An account may exist without meters: it is known, with none.
            existing = await intake_rows.existing_accounts(conn, numbers)
            for number in numbers:
                known = number in existing
                cache.by_account[number] = tuple(of_account.get(number, ())) if known else None

    def _check_sender(self, p: _Pending, lookup: RegistryLookup) -> None:
        """SMS, IVR and mail: is the sender's phone (address) registered for the account it speaks for?

        Under `refuse` an unverified sender that named an account or meter gets one answer
        whether or not it exists, so the refusal tells nothing either."""
        sub = p.sub
        if sub.channel is Channel.SITE:  # nobody signs in on the site's form: never verified
            p.unverified = True
            return
        if sub.channel not in ADDRESSED_CHANNELS:
            return
        address = sender_address(sub)
        own = lookup.by_sender.get(address, []) if address else []
        if p.meter is not None and p.meter.account in own:
            return
        if p.meter is None and sub.account in own:  # its own account, told what is wrong with it
            return
        if p.meter is None and not sub.account and not sub.meter_serial:
            # A bare reading from an unknown phone: already "unknown_sender", which names nothing.
            p.unverified = not own
            return
        p.unverified = True
        if self._senders.unverified == "refuse":
            p.meter = None
            p.evaluation = Evaluation(Status.REJECTED, [refusal(self._senders, sub.channel)])

    async def _limit_senders(self, conn: Conn, fresh: list[_Pending], now: datetime) -> None:
        """The hourly limits of `[senders]`, counted in the same statement that records them:
        `submissions_per_hour` per phone (and e-mail address), and the site form's
        `site_per_address_per_hour` and `site_per_account_per_hour`; what is past a limit is
        refused and decides nothing."""
        by_key: dict[str, list[_Pending]] = {}
        limits: dict[str, int] = {}
        for p in fresh:
            if p.sub.channel in ADDRESSED_CHANNELS:
                keys = [(sender_key(p.sub), self._senders.submissions_per_hour)]
            elif p.sub.channel is Channel.SITE:
                keys = site_keys(p.sub.sender, p.sub.account, self._senders)
            else:
                continue
            for key, limit in keys:
                by_key.setdefault(key, []).append(p)
                limits[key] = limit
        if not by_key:
            return
        window = hour_of(now)
        if self._counted_hour != window:
            await forget_before(conn, window)
            self._counted_hour = window
        before = await count_submissions(conn, window, {k: len(v) for k, v in by_key.items()})
        for key, group in by_key.items():
            for p in group[max(0, limits[key] - before[key]) :]:
                site = p.sub.channel is Channel.SITE
                p.meter = None
                p.evaluation = Evaluation(
                    Status.REJECTED,
                    [site_rate_limited() if site else rate_limited(limits[key], p.sub.channel)],
                )

    def _told_account(self, p: _Pending) -> tuple[str | None, str | None]:
        """The account and meter a verdict names: an unverified sender only hears its own words."""
        if p.unverified or p.meter is None:
            return p.sub.account, p.sub.meter_serial
        return p.meter.account, p.meter.serial

    async def preview(self, conn: Conn, sub: Submission, now: datetime) -> Verdict:
        """What deciding `sub` now would answer, storing and counting nothing (the desk's check
        of a paper form's row as it is typed): the same registry lookup and rules, against the
        stored history; a repeat of a stored reading is recognised. No receipt: nothing is kept."""
        p = _Pending(sub)
        unfit = unfit_field(sub)
        if unfit is not None:
            p.evaluation = Evaluation(Status.REJECTED, [unprocessable(unfit)])
        else:
            lookup = await self._lookup(conn, [p])
            p.meter, problem = resolve_meter(sub, lookup)
            if problem is not None or p.meter is None:
                p.evaluation = Evaluation(Status.REJECTED, [problem] if problem else [])
            else:
                self._check_sender(p, lookup)
                # On PostgreSQL read FOR UPDATE as a decision would: held for the look only
                # (the caller's transaction ends with it), so it waits at most for one group.
                states = await self._read_states(conn, {p.meter.id})
                self._evaluate(p, states, now)
        ev = p.evaluation
        assert ev is not None
        account, meter = self._told_account(p)
        readings = tuple(ReadingOut(None, z, v) for z, v in ev.values.items())
        return Verdict(ev.status, tuple(ev.reasons), None, account, meter, p.period, readings, ev.duplicate)

    def _forget_states(self) -> None:
        if self._states is not None:
            self._states.clear()

    async def _load_states(self, conn: Conn, meter_ids: set[int]) -> dict[tuple[int, str], ZoneState]:
        """The zone states of these meters, for this group to judge by and move on.

        The SQLite writer process is the only connection that writes them while it runs, so it
        keeps them between groups instead of reading them back each time (~8 % of its work),
        as long as no other connection has committed anything since its last group (`PRAGMA
        data_version`, read here inside the write transaction, so nothing can commit between
        the check and this group's own commit). Held readings confirmed by their senders,
        operators' decisions and registry imports commit from other connections: the states
        are then read again."""
        if not meter_ids:
            return {}
        cache = self._states
        if cache is not None:
            cache.check(await intake_rows.data_version(conn))
            missing = [m for m in meter_ids if m not in cache.by_meter]
            if missing:
                cache.add(missing, await self._read_states(conn, set(missing)))
            # A group-local mapping of the cached objects: a zone without a stored row gets a
            # fresh state for this group only, as when states are read every time.
            return {key: state for m in meter_ids for key, state in cache.by_meter[m]}
        return await self._read_states(conn, meter_ids)

    async def _read_states(self, conn: Conn, meter_ids: set[int]) -> dict[tuple[int, str], ZoneState]:
        return await intake_rows.read_states(conn, meter_ids, self._postgres)

    @staticmethod
    def period_of(branch: Branch, taken_at: datetime) -> tuple[str, Reason | None]:
        """The billing period a reading counts for in its account's branch, and a note when it is
        not the current one."""
        period = branch.period_of(taken_at)
        if not branch.counts_for_next(taken_at):
            return period, None
        last = branch.last_window_day()
        return period, reason(
            "next_period",
            Severity.INFO,
            f"Учтём в {period_ru(period, prepositional=True)}: приём до {last}-го",
            f"counted for {period}: readings for this month were taken until day {last}",
        )

    def _evaluate(self, p: _Pending, states: dict[tuple[int, str], ZoneState], now: datetime) -> None:
        assert p.meter is not None
        sub, meter = p.sub, p.meter
        group = CHANNEL_GROUP[sub.channel]
        taken_at = sub.taken_at or sub.received_at
        branch = self.branches.of(meter.branch)
        period, note = self.period_of(branch, taken_at)
        zone_states = {z: states.setdefault((meter.id, z), ZoneState()) for z in meter.zones}
        p.period = period
        p.evaluation = ev = evaluate(
            meter=meter,
            values=sub.values,
            positional=sub.positional_values,
            taken_at=taken_at,
            now=now,
            period=period,
            period_note=note,
            group=group,
            limits=self._limits[group],
            states=zone_states,
            tz=branch.calendar.timezone,
            control=sub.control,
        )
        if sub.channel is Channel.SITE and not ev.duplicate:
            hold_site_form(ev, self._senders.site_form == "hold")
        elif p.unverified and self._senders.unverified == "hold" and not ev.duplicate:
            if ev.status is not Status.REJECTED:
                ev.reasons.append(held_for_review(sub.channel))
                ev.status = max(ev.status, Status.FLAGGED, key=_RANK.__getitem__)
        if ev.duplicate or ev.status is not Status.ACCEPTED:
            return
        # Only an accepted value becomes the history later readings are judged against: one held
        # for confirmation or for the back office may yet be rejected (gateway/held.py moves the
        # history on when it is accepted).
        for zone, value in ev.values.items():
            advance_state(
                zone_states[zone], value, taken_at, period, group, ev.consumption.get(zone), p, sub.control
            )

    async def _store(
        self, conn: Conn, fresh: list[_Pending], states: dict[tuple[int, str], ZoneState]
    ) -> None:
        if not fresh:
            return
        sla_days = self.config.billing.sla_working_days
        inbound_rows = []
        reason_lists = []  # each one's reasons as dicts, for its inbound response and its readings
        for p in fresh:
            sub = p.sub
            ev = p.evaluation
            assert ev is not None
            reason_list = [r.as_dict() for r in ev.reasons]
            reason_lists.append(reason_list)
            told_account, told_meter = self._told_account(p)
            response = {
                "status": ev.status.value,
                "reasons": reason_list,
                "account": told_account,
                "meter_serial": told_meter,
                "period": p.period,
                "values": {z: str(v) for z, v in ev.values.items()},
                "duplicate_of": ev.duplicate_of,  # set after the insert when the original is in this group
            }
            p.inbound_row = {
                "channel": sub.channel.value,
                "channel_message_id": sub.channel_message_id,
                "received_at": sub.received_at,
                "source": source_of(sub),
                "payload": sub.raw or sub.text or orjson.dumps({"values": dict(sub.values)}).decode(),
                "response": orjson.dumps(response).decode(),
            }
            inbound_rows.append(p.inbound_row)
        ids = await intake_rows.insert_many(conn, inbound, inbound_rows)
        for p, inbound_id in zip(fresh, ids, strict=True):
            assert p.inbound_row is not None
            p.inbound_row["id"] = inbound_id
        await self._point_duplicates_at_owners(conn, fresh)
        reading_rows: list[dict[str, Any]] = []
        dues: dict[tuple[datetime, str | None], datetime] = {}
        for p, inbound_id, reason_list in zip(fresh, ids, reason_lists, strict=True):
            assert p.inbound_row is not None and p.evaluation is not None
            ev = p.evaluation
            if p.meter is None or ev.duplicate or not ev.values:
                continue
            taken_at = p.sub.taken_at or p.sub.received_at
            # A group's submissions mostly share their moment of receipt and their branch.
            due_key = (p.sub.received_at, p.meter.branch)
            due = dues.get(due_key)
            if due is None:
                branch = self.branches.of(p.meter.branch)
                due = dues[due_key] = branch.due_at(p.sub.received_at, sla_days)
            reasons_json = orjson.dumps(reason_list).decode()
            ratio = None if p.meter.ratio is None else ratios.text(p.meter.ratio)
            for zone, value in ev.values.items():
                raw = ev.raw_values.get(zone)
                row = {
                    "inbound_id": inbound_id,
                    "account_id": p.meter.account_id,
                    "meter_id": p.meter.id,
                    "zone": zone,
                    "value": ratios.text(value),
                    "raw_value": None if raw is None else str(raw),
                    "ratio": None if raw is None else ratio,
                    "taken_at": taken_at,
                    "received_at": p.sub.received_at,
                    "channel": p.sub.channel.value,
                    "source": p.inbound_row["source"],
                    "employee": p.sub.employee,
                    "control": p.sub.control,
                    "period": p.period,
                    "verdict": ev.status.value,
                    "reasons": reasons_json,
                    "due_at": due,
                }
                p.reading_rows.append(row)
                reading_rows.append(row)
        if reading_rows:
            rids = await intake_rows.insert_many(conn, readings, reading_rows)
            for row, rid in zip(reading_rows, rids, strict=True):
                row["id"] = rid
        await self._save_states(conn, fresh, states)

    async def _point_duplicates_at_owners(self, conn: Conn, fresh: list[_Pending]) -> None:
        """A repeat of a message decided earlier in this same group answers with that one's receipt."""
        for p in fresh:
            ev = p.evaluation
            if ev is None or not ev.duplicate or not isinstance(ev.duplicate_owner, _Pending):
                continue
            owner_row = ev.duplicate_owner.inbound_row
            assert owner_row is not None and p.inbound_row is not None
            ev.duplicate_of, ev.duplicate_owner = owner_row["id"], None
            response = orjson.loads(p.inbound_row["response"])
            response["duplicate_of"] = ev.duplicate_of
            p.inbound_row["response"] = orjson.dumps(response).decode()
            await intake_rows.set_response(conn, p.inbound_row["id"], p.inbound_row["response"])

    async def _save_states(
        self, conn: Conn, fresh: list[_Pending], states: dict[tuple[int, str], ZoneState]
    ) -> None:
        touched: dict[tuple[int, str], ZoneState] = {}
        for p in fresh:
            ev = p.evaluation
            if p.meter is None or ev is None or ev.duplicate:
                continue
            if ev.status is not Status.ACCEPTED:
                continue
            for zone in ev.values:
                key = (p.meter.id, zone)
                state = states[key]
                if state.last_owner is p:
                    assert p.inbound_row is not None
                    state.last_receipt = p.inbound_row["id"]
                    state.last_owner = None
                touched[key] = state
        await intake_rows.save_states(conn, touched)

    def _verdict_of(self, p: _Pending, pending: list[_Pending]) -> Verdict:
        if p.verdict is not None:
            return p.verdict
        if p.copy_of is not None:
            original = self._verdict_of(pending[p.copy_of], pending)
            return Verdict(
                original.status,
                original.reasons,
                original.receipt,
                original.account,
                original.meter_serial,
                original.period,
                original.readings,
                duplicate=True,
            )
        ev = p.evaluation
        assert ev is not None and p.inbound_row is not None
        ids = {row["zone"]: row["id"] for row in p.reading_rows}
        receipt = ev.duplicate_of if ev.duplicate else p.inbound_row["id"]
        told_account, told_meter = self._told_account(p)
        return Verdict(
            status=ev.status,
            reasons=tuple(ev.reasons),
            receipt=receipt,
            account=told_account,
            meter_serial=told_meter,
            period=p.period,
            readings=tuple(ReadingOut(ids.get(z), z, v) for z, v in ev.values.items()),
            duplicate=ev.duplicate,
        )
