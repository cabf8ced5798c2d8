"""The call dialogue: what the caller is asked, in which order, and what is submitted.

`Call` plays the screens declared in adapters/ivr/menu.py over an `AgiSession` (adapters/ivr/agi.py):
the greeting and main menu, whose account (known by the caller id or typed), which meter, the
reading zone by zone, each read back; it builds one `Submission` from the keys pressed once the
caller has confirmed every zone, hands it to the intake, and says the verdict.

Nothing is submitted before the caller has heard the value read back and pressed 1, so a hang-up
before that leaves nothing stored; once pressed, the submission goes through even if the caller
hangs up at that very moment (it is shielded from the call's end). The call returns to the
dialplan with `IVR_RESULT` set to `done` or `operator` (plus `IVR_REASON` and `IVR_ACCOUNT`);
the dialplan queues the caller for an operator on anything but `done`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from adapters.ivr.agi import AgiFailure, AgiHangup, AgiSession
from adapters.ivr.config import IvrConfig
from adapters.ivr.menu import (
    BACK,
    MENU,
    NOTE_PROMPTS,
    OPERATOR,
    REASON_OTHER,
    REASON_PROMPTS,
    ZONE_LABELS,
    ZONE_PROMPTS,
    OneOf,
    Prompt,
    Say,
    Screen,
)
from gateway import held
from gateway.accounts import MeterSummary, accounts_of_phone, branches_of_phone, meters_of_account
from gateway.branches import Branch
from gateway.calendar import window_days
from gateway.grammar import parse_dtmf_number
from gateway.host import Host
from gateway.model import Channel, Severity, Status, Submission, Verdict
from gateway.privacy import mask_phone, normalize_phone

log = logging.getLogger(__name__)

SCRIPT = "readings"  # Asterisk's AGI(agi://HOST:PORT/readings)
MAX_ACCOUNT_DIGITS = 20
MAX_READING_KEYS = 16
EXHAUSTED, GOODBYE = "exhausted", "goodbye"  # what `Call.choose` returns instead of a key

Step = Callable[[], Awaitable["Step | None"]]


@dataclass(slots=True)
class Outcome:
    """How a call ended (the result is counted in the `ivr` probe's outcomes), why, and the receipts."""

    result: str = "hangup"  # done | operator | hangup | error
    reason: str = ""
    receipts: list[int] = field(default_factory=list)


class Call:
    """One caller's way through the menu, from the greeting to the verdict or the operator."""

    def __init__(self, host: Host, config: IvrConfig, agi: AgiSession) -> None:
        self.host = host
        self.cfg = config
        self.agi = agi
        self.outcome = Outcome()
        self.uid = ""
        self.sender = "anonymous"
        self.account: str | None = None
        self.by_caller_id = False
        self.verified = False  # the caller id is registered for self.account
        self.meters: list[MeterSummary] = []
        self.meter: MeterSummary | None = None
        self.submissions = 0  # numbers this call's channel message ids: <uniqueid>:<n>
        self.tries = 0  # submissions for the current meter
        self.verdict: Verdict | None = None
        self.keys_said = False

    # -- the protocol's verbs, as the menu declares them

    async def play(
        self, screen: Screen, slots: dict[str, str | None] | None = None, escape: str = ""
    ) -> str | None:
        """Say a screen's parts in order; the key that cut it short, if any."""
        slots = slots or {}
        for part in screen.parts:
            if isinstance(part, Prompt):
                key = await self.agi.stream_file(f"{self.cfg.sounds}/{part.name}", escape)
            elif isinstance(part, OneOf):
                name = slots.get(part.slot)
                if name is None:
                    if part.optional:
                        continue
                    raise ValueError(f"screen {screen.name}: no prompt for {part.slot}")
                if name not in part.names:
                    raise ValueError(f"screen {screen.name}: {name!r} is not one of {part.slot}")
                key = await self.agi.stream_file(f"{self.cfg.sounds}/{name}", escape)
            else:
                assert isinstance(part, Say)
                value = slots.get(part.slot)
                if value is None:
                    if part.optional:
                        continue
                    raise ValueError(f"screen {screen.name}: no value for {part.slot}")
                key = await self.agi.say(part.how, value, escape)
            if key is not None:
                return key
        return None

    async def feedback(self, level: str, what: str) -> None:
        await self.play(MENU.level(level).screen(f"{level}_feedback"), {"what": what})

    async def wait_key(self) -> str | None:
        return await self.agi.wait_for_digit(int(self.cfg.timeout_seconds * 1000))

    async def collect(self, first: str | None, limit: int) -> str | None:
        """Keys typed one by one up to `#` (or a pause after some); None when nothing at all."""
        typed = ""
        key = first if first is not None else await self.wait_key()
        if key is None:
            return None
        while key is not None and key != "#" and len(typed) < limit:
            typed += key
            key = await self.wait_key()
        return typed

    async def choose(
        self, level: str, screen: Screen, present: Callable[[], Awaitable[str | None]], allowed: str
    ) -> str:
        """Present a choice up to `attempts` times: the key pressed, or EXHAUSTED, or GOODBYE."""
        for _ in range(self.cfg.attempts):
            key = await present()
            if key is None:
                key = await self.wait_key()
            if key is None:
                if screen.on_no_input == "goodbye":  # the caller has what they called for
                    return GOODBYE
                await self.feedback(level, "no_input")
                continue
            if key not in allowed:
                await self.feedback(level, "wrong_key")
                continue
            return key
        return EXHAUSTED

    # -- the whole call

    async def run(self, env: dict[str, str], busy: bool) -> Outcome:
        """The call, once the server has its environment; `busy`: over `[ivr] max_calls`."""
        try:
            self.uid = env.get("agi_uniqueid") or uuid.uuid4().hex
            phone = normalize_phone(env.get("agi_callerid", ""))
            self.sender = phone if len(phone) >= 7 else "anonymous"
            await self.agi.answer()
            if busy:
                await self.to_operator("busy")
                return self.outcome
            step: Step | None = self.greet
            while step is not None:
                step = await step()
        except AgiHangup as exc:
            log.info("call %s ended by hang-up (%s)", self.uid, exc)
            self.outcome.result = "hangup"
        except AgiFailure as exc:
            log.warning("call %s: the PBX refused a command: %s", self.uid, exc)
            self.outcome = Outcome("error", "agi_failure", self.outcome.receipts)
            await self._fail_over()
        except Exception as exc:  # a broken database or a bug: the caller still gets a person
            log.exception("call %s failed: %s", self.uid, type(exc).__name__)
            self.outcome = Outcome("error", type(exc).__name__, self.outcome.receipts)
            await self._fail_over()
        return self.outcome

    async def _fail_over(self) -> None:
        """After a failure the caller may still be on the line: hand them to an operator."""
        try:
            await self.play(MENU.screen("technical"))
            await self.agi.set_variable(self.cfg.operator_variable, "operator")
            await self.agi.set_variable("IVR_REASON", "technical")
        except (AgiHangup, AgiFailure):
            pass

    async def to_operator(self, why: str) -> None:
        """Level 5: the operator. The dialplan queues the caller when the script returns."""
        self.outcome.result, self.outcome.reason = "operator", why
        await self.play(MENU.operator)
        await self.agi.set_variable(self.cfg.operator_variable, "operator")
        await self.agi.set_variable("IVR_REASON", why)
        if self.account:
            await self.agi.set_variable("IVR_ACCOUNT", self.account)

    async def goodbye(self) -> None:
        self.outcome.result = "done"
        await self.play(MENU.screen("goodbye"))
        await self.agi.set_variable(self.cfg.operator_variable, "done")

    # -- level 1: greeting and main menu

    async def greet(self) -> Step | None:
        menu = MENU.level("main").screen("main_menu")
        first = await self.play(MENU.greeting, escape=menu.escape_digits())
        return await self._main(first)

    async def main_menu(self) -> Step | None:
        return await self._main(None)

    async def _main(self, first: str | None) -> Step | None:
        screen = MENU.level("main").screen("main_menu")
        allowed = screen.escape_digits()
        pending = first  # a key pressed during the greeting or the window dates answers the menu

        async def present() -> str | None:
            nonlocal pending
            key, pending = pending, None
            return key if key is not None else await self.play(screen, escape=allowed)

        while True:
            key = await self.choose("main", screen, present, allowed)
            action = screen.action(key) or key
            if action == "readings":
                return self.identify
            if action == "window":
                branch = await self._caller_branch()
                first_day, last_day = window_days(branch.window_start_day, branch.cutoff_day)
                slots: dict[str, str | None] = {"first_day": str(first_day), "last_day": str(last_day)}
                pending = await self.play(MENU.screen("window"), slots, allowed)
                continue
            if action == "back":  # the first level: back says the menu again
                continue
            await self.to_operator(_why(key))
            return None

    async def _caller_branch(self) -> Branch:
        """Whose window dates to say before the caller has named an account: the branch of the
        accounts the caller id is registered for when they all share one, else the default
        branch (`[calendar]`). The dates are the same for every account of a branch, so saying
        them tells nothing of any account."""
        if self.sender == "anonymous":
            return self.host.branches.default
        ids = await branches_of_phone(self.host.engine, self.sender)
        return self.host.branches.of(ids.pop()) if len(ids) == 1 else self.host.branches.default

    # -- level 2: whose account, which meter

    async def identify(self) -> Step | None:
        if self.account is None and not self.by_caller_id and self.sender != "anonymous":
            known = await accounts_of_phone(self.host.engine, self.sender)
            if len(known) == 1:
                self.account, self.by_caller_id, self.verified = known[0], True, True
                await self.play(MENU.screen("caller_account"), {"account": self.account})
                return await self._meters()
        if self.account is not None:
            return await self._meters()
        return self.ask_account

    async def ask_account(self) -> Step | None:
        screen = MENU.screen("ask_account")
        self.account = None
        for _ in range(self.cfg.attempts):
            typed = await self.collect(
                await self.play(screen, escape=screen.escape_digits()), MAX_ACCOUNT_DIGITS
            )
            if typed is None:
                await self.feedback("identify", "no_input")
                continue
            if typed == BACK:
                return self.main_menu
            if typed == OPERATOR:
                await self.to_operator("key")
                return None
            if not typed.isdigit():
                await self.feedback("identify", "not_understood")
                continue
            if not await self._may_speak_for(typed):
                # `[senders] unverified = "refuse"`: a person takes over, before anything of the
                # account (whether it exists, its meters, their zones) is said to this caller.
                await self.to_operator("unverified_sender")
                return None
            meters = await meters_of_account(self.host.engine, typed)
            if meters is None:
                await self.feedback("identify", "account_not_found")
                continue
            self.account = typed
            return await self._meters(meters)
        await self.to_operator(EXHAUSTED)
        return None

    async def _may_speak_for(self, account: str) -> bool:
        """The caller id is registered for `account`, or the policy lets others speak for it."""
        known = [] if self.sender == "anonymous" else await accounts_of_phone(self.host.engine, self.sender)
        self.verified = account in known
        # Under hold or accept the intake decides it; its answers tell nothing of the account.
        return self.verified or self.host.config.senders.unverified != "refuse"

    async def _meters(self, meters: list[MeterSummary] | None = None) -> Step | None:
        assert self.account is not None
        if meters is None:
            meters = await meters_of_account(self.host.engine, self.account) or []
        self.meters = [m for m in meters if m.active]
        screen = MENU.screen("meters")
        offered = screen.keys[0].count
        if not self.meters or len(self.meters) > offered:
            await self.feedback("identify", "no_meters" if not self.meters else "many_meters")
            await self.to_operator("no_meters" if not self.meters else "many_meters")
            return None
        if len(self.meters) == 1:
            return self._start_meter(self.meters[0])
        return self.choose_meter

    def _start_meter(self, meter: MeterSummary) -> Step:
        self.meter, self.tries = meter, 0
        return self.reading

    async def choose_meter(self) -> Step | None:
        screen = MENU.screen("meters")
        option = MENU.screen("meter_option")
        numbered = "".join(str(i + 1) for i in range(len(self.meters)))
        allowed = numbered + BACK + OPERATOR

        async def present() -> str | None:
            key = await self.play(screen, escape=allowed)
            for i, meter in enumerate(self.meters):
                if key is not None:
                    break
                tail = "".join(ch for ch in meter.serial if ch.isalnum())[-4:] or meter.serial[-4:]
                key = await self.play(option, {"serial_end": tail, "key": str(i + 1)}, allowed)
            return key

        key = await self.choose("identify", screen, present, allowed)
        if len(key) == 1 and key in numbered:
            return self._start_meter(self.meters[int(key) - 1])
        if key == BACK:
            return self.ask_account
        await self.to_operator(_why(key))
        return None

    # -- level 3: the reading, zone by zone, each read back

    async def reading(self) -> Step | None:
        assert self.meter is not None
        zones = self.meter.zones
        asks = ZONE_PROMPTS.get(zones)
        if asks is None:  # a zone layout the menu has no words for
            await self.to_operator("zones")
            return None
        ask, readback = MENU.screen("ask_zone"), MENU.screen("readback")
        values: dict[str, str] = {}
        typed_keys: dict[str, str] = {}
        for zone, prompt in zip(zones, asks, strict=True):
            for _ in range(self.cfg.attempts):
                key = await self.play(ask, {"zone": prompt}, ask.escape_digits())
                if key is None and not self.keys_said:
                    self.keys_said = True
                    key = await self.play(MENU.screen("reading_keys"), escape=ask.escape_digits())
                typed = await self.collect(key, MAX_READING_KEYS)
                if typed is None:
                    await self.feedback("reading", "no_input")
                    continue
                if typed == BACK:
                    return self.choose_meter if len(self.meters) > 1 else self.ask_account
                if typed == OPERATOR:
                    await self.to_operator("key")
                    return None
                value = parse_dtmf_number(typed)
                if value is None:
                    await self.feedback("reading", "not_understood")
                    continue
                answer = await self._read_back(readback, value)
                if answer == "confirm":
                    values[zone], typed_keys[zone] = value, typed
                    break
                if answer in ("operator", EXHAUSTED):
                    await self.to_operator("key" if answer == "operator" else EXHAUSTED)
                    return None
                # "reenter" or "back": type this zone again
            else:
                await self.to_operator(EXHAUSTED)
                return None
        return await self._submit(values, typed_keys)

    async def _read_back(self, screen: Screen, value: str) -> str:
        whole, _, fraction = value.partition(".")
        slots: dict[str, str | None] = {
            "whole": whole,
            "comma": "comma" if fraction else None,
            "fraction": fraction or None,
        }
        allowed = screen.escape_digits()
        key = await self.choose("reading", screen, lambda: self.play(screen, slots, allowed), allowed)
        return screen.action(key) or key

    async def _submit(self, values: dict[str, str], typed: dict[str, str]) -> Step | None:
        assert self.meter is not None and self.account is not None
        self.submissions += 1
        self.tries += 1
        how = "caller id" if self.by_caller_id else "keypad"
        raw = f"ivr call {self.uid}: account {self.account} ({how}) meter {self.meter.serial} " + " ".join(
            f"{zone}={keys}#" for zone, keys in typed.items()
        )
        sub = Submission(
            channel=Channel.IVR,
            received_at=self.host.clock(),
            sender=self.sender,
            values=values,
            account=self.account,
            meter_serial=self.meter.serial,
            channel_message_id=f"{self.uid}:{self.submissions}"[:128],
            raw=raw,
        )
        # Confirmed: it is stored even if the caller hangs up or the gateway stops right now.
        self.verdict = await asyncio.shield(self.host.intake.submit(sub))
        if self.verdict.receipt is not None:
            self.outcome.receipts.append(self.verdict.receipt)
        return self.say_verdict

    # -- level 4: the verdict

    async def say_verdict(self) -> Step | None:
        verdict = self.verdict
        assert verdict is not None
        if verdict.status in (Status.ACCEPTED, Status.FLAGGED):
            return await self._accepted(verdict)
        if verdict.status is Status.NEEDS_CONFIRMATION:
            return await self._unusual(verdict)
        return await self._rejected(verdict)

    async def _accepted(self, verdict: Verdict) -> Step | None:
        screen = MENU.screen("accepted")
        notes = [NOTE_PROMPTS[r.code] for r in verdict.reasons if r.code in NOTE_PROMPTS]
        notes = list(dict.fromkeys(notes))
        slots: dict[str, str | None] = {
            "status": "accepted" if verdict.status is Status.ACCEPTED else "flagged",
            "note1": notes[0] if notes else None,
            "note2": notes[1] if len(notes) > 1 else None,
            "receipt": str(verdict.receipt),
        }
        allowed = screen.escape_digits()
        key = await self.choose("verdict", screen, lambda: self.play(screen, slots, allowed), allowed)
        action = screen.action(key) or key
        if action in ("another", "back"):
            self.verdict = None
            return self.choose_meter if len(self.meters) > 1 else self.ask_account
        if action == GOODBYE:
            await self.goodbye()
            return None
        await self.to_operator(_why(key))
        return None

    async def _unusual(self, verdict: Verdict) -> Step | None:
        screen = MENU.screen("unusual")
        allowed = screen.escape_digits()
        key = await self.choose("verdict", screen, lambda: self.play(screen, escape=allowed), allowed)
        action = screen.action(key) or key
        if action == "confirm" and verdict.receipt is not None:
            actor = f"ivr:{mask_phone(self.sender) if self.sender != 'anonymous' else self.uid}"
            self.verdict = await asyncio.shield(
                held.confirm(
                    self.host.engine,
                    self.host.config,
                    verdict.receipt,
                    actor,
                    self.host.clock(),
                    account=self.account,
                )
            )
            return self.say_verdict
        return await self._after_refusal(action)

    async def _rejected(self, verdict: Verdict) -> Step | None:
        screen = MENU.screen("rejected")
        slots: dict[str, str | None] = {}
        refusals = [r for r in verdict.reasons if r.severity is Severity.REJECT] or list(verdict.reasons)
        for i, r in enumerate(refusals[:2], start=1):
            slots[f"zone{i}"] = ZONE_LABELS.get(r.zone or "")
            slots[f"reason{i}"] = REASON_PROMPTS.get(r.code, REASON_OTHER)
            if r.code == "too_many_digits" and self.meter is not None and self.verified:
                slots[f"number{i}"] = str(self.meter.digits)
        if "reason1" not in slots:
            slots["reason1"] = REASON_OTHER
        allowed = screen.escape_digits()
        key = await self.choose("verdict", screen, lambda: self.play(screen, slots, allowed), allowed)
        return await self._after_refusal(screen.action(key) or key)

    async def _after_refusal(self, action: str) -> Step | None:
        self.verdict = None
        if action == "reenter":
            if self.tries >= self.cfg.attempts:
                await self.to_operator(EXHAUSTED)
                return None
            return self.reading
        if action == "back":
            return self.choose_meter if len(self.meters) > 1 else self.ask_account
        await self.to_operator(_why(action))
        return None


def _why(key_or_action: str) -> str:
    """Why the caller goes to the operator: they pressed 0, or tries ran out."""
    return EXHAUSTED if key_or_action == EXHAUSTED else "key"
