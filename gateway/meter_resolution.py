"""Which meter a submission speaks for: by its serial, or by its account (named, or the one
its sender's phone or e-mail address is registered for), or by its number among the account's
meters ("2Э"); and, when that cannot be told, the refusal that says why. Applied by the Decider
(gateway/decide.py) to the registry rows it has read for the group."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.model import Channel, Reason, Severity, Submission
from gateway.senders import ADDRESSED_CHANNELS, sender_address
from gateway.validation.context import MeterInfo
from gateway.validation.explain import reason


@dataclass(slots=True)
class RegistryLookup:
    """Registry rows needed by one group, fetched with a few IN queries."""

    by_serial: dict[str, MeterInfo] = field(default_factory=dict)
    by_account: dict[str, list[MeterInfo]] = field(default_factory=dict)
    by_sender: dict[str, list[str]] = field(default_factory=dict)  # phone or e-mail -> account numbers
    account_numbers: set[str] = field(default_factory=set)


def resolve_meter(
    sub: Submission, lookup: RegistryLookup, number: int | None = None
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
                "Укажите номер л/с: 1234567 12345" if not known else f"На {ru} несколько л/с. Укажите л/с",
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
