"""Deciding a group of submissions in one transaction: the rules of intake, in one place.

For each submission of a group: a message already stored (same channel and channel message id)
gets its stored answer again; free text goes through the residents' grammar (gateway/text_intake.py
chooses the reading the registry supports); the meter is found
in the registry; every validation rule is applied against the zone's history; then the inbound
message, its readings and verdict and the moved-on history are written, all in the caller's
transaction. `gateway/intake.py` decides where a group runs and commits it before anyone is
answered. The rows are read and written by gateway/store/intake_rows.py; the one decision runs
on an async connection or, in the SQLite writer process, on a synchronous one through
gateway/store/sync_bridge.py. What remains here (about 700 lines) is one `Decider` whose
steps share a group's pending outcomes, and the few rules it applies to a single row.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
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
    email_ref,
    keyed_hash,
    mask_phone,
    normalize_email,
    normalize_phone,
    phone_hash,
    use_secret,
)
from gateway.senders import (
    ANONYMOUS,
    held_for_review,
    hold_site_form,
    rate_limited,
    refusal,
    site_address,
    site_keys,
    site_rate_limited,
)
from gateway.store import intake_rows
from gateway.store.schema import inbound, readings
from gateway.store.schema_senders import count_submissions, forget_before, hour_of
from gateway.store.sync_bridge import Conn, SyncConnection, run_to_completion
from gateway.text_intake import TextReading, choose, read_text
from gateway.validation.context import SECONDS_PER_DAY, MeterInfo, ZoneState
from gateway.validation.evaluate import Evaluation, evaluate
from gateway.validation.explain import generic, period_ru, reason

log = logging.getLogger(__name__)

PHONE_CHANNELS = {Channel.SMS, Channel.IVR}
# The doors whose senders the registry lists for accounts: a phone (`phones`) or an e-mail address
# (`emails`); they are verified for the account they speak for (gateway/senders.py).
ADDRESSED_CHANNELS = PHONE_CHANNELS | {Channel.MAIL}
# How far a status is from plain acceptance (a hold never softens a worse verdict).
_RANK = {Status.ACCEPTED: 0, Status.FLAGGED: 1, Status.NEEDS_CONFIRMATION: 2, Status.REJECTED: 3}


def source_of(sub: Submission) -> str:
    """Who sent it, as stored with the reading: phones masked, e-mail addresses as their keyed
    reference, other ids as they are."""
    if sub.channel in PHONE_CHANNELS:
        return mask_phone(sub.sender)
    if sub.channel is Channel.MAIL:
        return f"mail:{email_ref(sub.sender) if sub.sender != ANONYMOUS else ANONYMOUS}"
    if sub.channel in (Channel.OPERATOR, Channel.PAPER):
        return f"employee:{sub.employee or sub.sender}"
    if sub.channel is Channel.SITE:
        return f"site:{site_address(sub.sender)}"
    return f"{sub.channel.value}:{sub.sender}"[:128]


def sender_address(sub: Submission) -> str:
    """The sender as the registry lists it: a normalised phone or a lower-case e-mail address;
    "" for an IVR caller without a caller id or a mail whose sender the mail server did not
    vouch for (`ANONYMOUS`: never verified)."""
    if sub.sender == ANONYMOUS:
        return ""
    return normalize_email(sub.sender) if sub.channel is Channel.MAIL else normalize_phone(sub.sender)


def _sender_key(sub: Submission) -> str:
    """The keyed hash a sender's submissions are counted under (`submissions_per_hour`)."""
    if sub.channel is Channel.MAIL:
        return keyed_hash(f"mail:{sender_address(sub) or ANONYMOUS}")
    return phone_hash(sender_address(sub) or ANONYMOUS)


@dataclass(slots=True)
class _Lookup:
    """Registry rows needed by one group, fetched with a few IN queries."""

    by_serial: dict[str, MeterInfo] = field(default_factory=dict)
    by_account: dict[str, list[MeterInfo]] = field(default_factory=dict)
    by_sender: dict[str, list[str]] = field(default_factory=dict)  # phone or e-mail -> account numbers
    account_numbers: set[str] = field(default_factory=set)


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
                resolve = functools.partial(self._resolve, lookup=lookup, number=p.text.meter_number)
                p.sub, p.meter, problem = choose(p.text, resolve, self.formats)
            else:
                p.meter, problem = self._resolve(p.sub, lookup)
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
        await self._limit_site_form(conn, fresh, now)
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
            p.verdict = verdict_from_json(
                response, inbound_id, their_readings.get(inbound_id, {}), duplicate=True
            )

    def _read_text(self, p: _Pending) -> None:
        """Free text (SMS, chat): its readings to choose from, or why it is not understood."""
        found = read_text(p.sub, self.formats)
        if isinstance(found, Reason):
            p.evaluation = Evaluation(Status.REJECTED, [found])
        else:
            p.text, p.sub = found, found.candidates[0]

    async def _lookup(self, conn: Conn, fresh: list[_Pending]) -> _Lookup:
        found = _Lookup()
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

    def _resolve(
        self, sub: Submission, lookup: _Lookup, number: int | None = None
    ) -> tuple[MeterInfo | None, Reason | None]:
        """Which meter a submission is for, or why that cannot be told. `number`: the account's
        meters numbered in the registry's order, as some formats' codes do ("2Э")."""
        if sub.meter_serial:
            meter = lookup.by_serial.get(sub.meter_serial)
            if meter is None:
                return None, reason(
                    "unknown_meter",
                    Severity.REJECT,
                    f"Счётчик {sub.meter_serial[:16]} не найден. Проверьте номер",
                    f"meter {sub.meter_serial} is not in the registry",
                )
            if sub.account and meter.account != sub.account:
                return None, reason(
                    "meter_not_on_account",
                    Severity.REJECT,
                    f"Счётчик {meter.serial[:16]} не относится к л/с {sub.account[:16]}",
                    f"meter {meter.serial} does not belong to account {sub.account}",
                )
            return meter, None
        account = sub.account
        if account is None and sub.channel in ADDRESSED_CHANNELS:
            known = lookup.by_sender.get(sender_address(sub), [])
            if len(known) != 1:
                ru, en = ("адрес", "e-mail address") if sub.channel is Channel.MAIL else ("номер", "phone")
                return None, reason(
                    "unknown_sender" if not known else "account_ambiguous",
                    Severity.REJECT,
                    "Укажите номер л/с: 1234567 12345"
                    if not known
                    else f"На {ru} несколько л/с. Укажите л/с",
                    f"the sender's {en} is not registered; give the account number"
                    if not known
                    else f"the sender's {en} belongs to several accounts; give the account number",
                )
            account = known[0]
        if account is None:
            return None, reason(
                "no_account", Severity.REJECT, "Укажите номер лицевого счёта", "no account or meter given"
            )
        candidates = [m for m in lookup.by_account.get(account, []) if m.active] or lookup.by_account.get(
            account, []
        )
        if account not in lookup.account_numbers:
            return None, reason(
                "unknown_account",
                Severity.REJECT,
                f"Л/с {account[:16]} не найден. Проверьте номер",
                f"account {account} is not in the registry",
            )
        if number is not None:
            numbered = sorted((m for m in candidates if m.active), key=lambda m: m.id)
            if number > len(numbered):
                return None, reason(
                    "unknown_meter_number",
                    Severity.REJECT,
                    f"У л/с {account[:16]} нет счётчика №{number}",
                    f"account {account} has no meter number {number}",
                )
            return numbered[number - 1], None
        if len(candidates) != 1:
            return None, reason(
                "meter_ambiguous" if candidates else "no_meter",
                Severity.REJECT,
                "У л/с несколько счётчиков: укажите л/с#счётчик#показание"
                if candidates
                else "У л/с нет счётчика. Позвоните нам",
                f"account {account} has {len(candidates)} meters; give the meter serial",
            )
        return candidates[0], None

    def _check_sender(self, p: _Pending, lookup: _Lookup) -> None:
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
        """`[senders] submissions_per_hour`: count this group's phone (and e-mail) submissions and
        refuse those past the limit, in the same statement that records them."""
        by_sender: dict[str, list[_Pending]] = {}
        for p in fresh:
            if p.sub.channel in ADDRESSED_CHANNELS:
                by_sender.setdefault(_sender_key(p.sub), []).append(p)
        if not by_sender:
            return
        window = hour_of(now)
        if self._counted_hour != window:
            await forget_before(conn, window)
            self._counted_hour = window
        before = await count_submissions(conn, window, {k: len(v) for k, v in by_sender.items()})
        limit = self._senders.submissions_per_hour
        for key, group in by_sender.items():
            room = max(0, limit - before[key])
            for p in group[room:]:
                p.meter = None
                p.evaluation = Evaluation(Status.REJECTED, [rate_limited(limit, p.sub.channel)])

    async def _limit_site_form(self, conn: Conn, fresh: list[_Pending], now: datetime) -> None:
        """`[senders] site_per_address_per_hour`, `site_per_account_per_hour`: the site form's
        readings counted per client address and per account named, refused past either."""
        by_key: dict[str, list[_Pending]] = {}
        limits: dict[str, int] = {}
        for p in fresh:
            if p.sub.channel is Channel.SITE:
                for key, limit in site_keys(p.sub.sender, p.sub.account, self._senders):
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
                p.meter = None
                p.evaluation = Evaluation(Status.REJECTED, [site_rate_limited()])

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
            p.meter, problem = self._resolve(sub, lookup)
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


def advance_state(
    state: ZoneState,
    value: Decimal,
    taken_at: datetime,
    period: str,
    group: RuleGroup,
    used: Decimal | None,
    owner: object,
    control: bool = False,
) -> None:
    """Make `value` the zone's last reading and add its consumption to the running average;
    a `control` reading (an inspector's) is also what later readings are compared with."""
    if used is not None and state.last_taken_at is not None:
        state.total_kwh += used
        days = Decimal((taken_at - state.last_taken_at).total_seconds()) / SECONDS_PER_DAY
        # A millionth of a day (0.09 s) is plenty, and keeps the stored text short.
        state.total_days = (state.total_days + days).quantize(Decimal("0.000001"))
    state.last_value = value
    state.last_taken_at = taken_at
    state.last_period = period
    # The receipt (inbound id) is known only after the insert; until then the owner stands in.
    state.last_receipt = None
    state.last_owner = owner
    if control:
        state.ctl_value, state.ctl_taken_at = value, taken_at
    elif group is RuleGroup.DEVICES:
        state.dev_value, state.dev_taken_at = value, taken_at
    else:
        state.res_value, state.res_taken_at = value, taken_at


def verdict_from_json(
    text: str, receipt: int, reading_ids: dict[str, int], duplicate: bool = False
) -> Verdict:
    """Rebuild a stored answer (for redelivered messages)."""
    data = orjson.loads(text)
    reasons = tuple(
        Reason(
            code=r["code"],
            severity=Severity[r["severity"].upper()],
            message_ru=r["message_ru"],
            message_en=r["message_en"],
            zone=r.get("zone"),
        )
        for r in data["reasons"]
    )
    values = data.get("values") or {}
    return Verdict(
        status=Status(data["status"]),
        reasons=reasons,
        receipt=data.get("duplicate_of") or receipt,
        account=data.get("account"),
        meter_serial=data.get("meter_serial"),
        period=data.get("period"),
        readings=tuple(ReadingOut(reading_ids.get(z), z, Decimal(v)) for z, v in values.items()),
        duplicate=duplicate,
    )
