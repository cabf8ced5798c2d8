"""Who may speak for an account by SMS, telephone and e-mail, and what a stranger is told.

A phone is verified for an account when the registry lists it among the account's `phones`
(SMS: the sender's number; IVR: the caller id), an e-mail address when it is among its `emails`
(the mail door's sender). A reading for an account from any other phone or address
follows `[senders] unverified`: `refuse` (default; nothing is decided, the reply says how to
register the number, the same whether the account exists or not), `hold` (decided, then held
for the back office with the reason `unverified_sender`) or `accept`. Whatever the policy, an
unverified sender's reasons are told in words that carry nothing of the account: no earlier
values or dates, no meter digits, zones or serials (`gateway.validation.explain.generic`).

Every phone (and address) is also limited to `[senders] submissions_per_hour` readings per clock hour,
counted and checked in one statement (gateway/store/schema_senders.py); the rest are refused
with `sender_rate_limited` and decide nothing.

The form on the retailer's site (`Channel.SITE`) has no sender to verify at all: see the block
at the end of this module.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import SendersConfig
from gateway.model import Channel, Reason, Severity, Status, Submission
from gateway.privacy import email_ref, keyed_hash, mask_phone, normalize_email, normalize_phone, phone_hash
from gateway.store.schema_senders import hour_of, sender_counts
from gateway.validation.evaluate import Evaluation
from gateway.validation.explain import reason

ANONYMOUS = "anonymous"  # an IVR caller without a caller id: never verified


def _words(channel: Channel) -> tuple[str, str]:
    """What the sender's identity is called, in Russian and English."""
    return ("адрес", "e-mail address") if channel is Channel.MAIL else ("номер", "phone")


def refusal(config: SendersConfig, channel: Channel = Channel.SMS) -> Reason:
    """`refuse`: the sender's phone (address) is not registered for the account it names."""
    ru, en = _words(channel)
    return reason(
        "unverified_sender",
        Severity.REJECT,
        f"{ru.capitalize()} не зарегистрирован для этого л/с. Зарегистрируйте его {config.register_hint}",
        f"the sender's {en} is not registered for this account",
    )


def held_for_review(channel: Channel = Channel.SMS) -> Reason:
    """`hold`: stored, waiting for the back office, because nobody vouches for the sender."""
    ru, en = _words(channel)
    return reason(
        "unverified_sender",
        Severity.FLAG,
        f"Проверим: {ru} не зарегистрирован для этого л/с",
        f"the sender's {en} is not registered for this account; held for the back office",
    )


def rate_limited(limit: int, channel: Channel = Channel.SMS) -> Reason:
    _, en = _words(channel)
    where = "этого адреса" if channel is Channel.MAIL else "этого номера"
    return reason(
        "sender_rate_limited",
        Severity.REJECT,
        f"Слишком много показаний с {where}. Повторите через час",
        f"more than {limit} readings from this {en} within the hour",
    )


# -- the site's form without sign-in ------------------------------------------------------------
# Whoever fills in the form is never verified for the account it names: its readings follow
# `[senders] site_form` (hold for the back office, or accept), never ask the sender to confirm
# (nobody can be asked), and are counted per client address and per account named, across
# gateway processes, in the same table as phones' submissions.


def site_held() -> Reason:
    """`site_form = "hold"`: stored, waiting for the back office."""
    return reason(
        "unverified_sender",
        Severity.FLAG,
        "Проверим: показания переданы через форму на сайте без входа",
        "sent through the site's form without signing in; held for the back office",
    )


def hold_site_form(ev: Evaluation, hold: bool) -> None:
    """A reading from the site's form, decided: nobody can be asked to confirm it, so a finding
    that would ask holds it for the back office instead; under `site_form = "hold"` every reading
    not refused is held (`site_held`)."""
    if ev.status is Status.REJECTED:
        return
    if ev.status is Status.NEEDS_CONFIRMATION:
        ev.reasons = [
            replace(r, severity=Severity.FLAG) if r.severity is Severity.CONFIRM else r for r in ev.reasons
        ]
        ev.status = Status.FLAGGED
    if hold:
        ev.reasons.append(site_held())
        ev.status = Status.FLAGGED


def site_rate_limited() -> Reason:
    return reason(
        "sender_rate_limited",
        Severity.REJECT,
        "Слишком много показаний за час. Повторите позже",
        "too many readings from this address or for this account through the site's form within the hour",
    )


def site_keys(address: str, account: str | None, config: SendersConfig) -> list[tuple[str, int]]:
    """The counters one form's reading is counted against, with their limits: its client
    address's and the account's it names (kept as keyed hashes, like phones)."""
    keys = [(keyed_hash(f"site-address:{address}"), config.site_per_address_per_hour)]
    if account:
        keys.append((keyed_hash(f"site-account:{account}"), config.site_per_account_per_hour))
    return keys


def site_address(sender: str) -> str:
    """How a form's sender (its client address) is kept with its readings: a keyed reference."""
    return "#" + keyed_hash(f"site-address:{sender}")[:16]


async def site_form_full(
    engine: AsyncEngine, address: str, account: str | None, now: datetime, config: SendersConfig
) -> bool:
    """Whether this address or account has used up its readings of this hour already, so the
    form can say so without storing one more refused reading. Only a look: the intake counts
    and decides (two requests at once may both pass here; the intake refuses the extra one)."""
    keys = dict(site_keys(address, account, config))
    query = select(sender_counts.c.sender_key, sender_counts.c.submissions).where(
        sender_counts.c.sender_key.in_(list(keys)), sender_counts.c.window_start == hour_of(now)
    )
    async with engine.connect() as conn:
        return any(count >= keys[key] for key, count in await conn.execute(query))


# Who sent a submission, as the intake stores, verifies and counts it.

PHONE_CHANNELS = {Channel.SMS, Channel.IVR}
# The doors whose senders the registry lists for accounts: a phone (`phones`) or an e-mail address
# (`emails`); they are verified for the account they speak for (gateway/senders.py).
ADDRESSED_CHANNELS = PHONE_CHANNELS | {Channel.MAIL}


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


def sender_key(sub: Submission) -> str:
    """The keyed hash a sender's submissions are counted under (`submissions_per_hour`)."""
    if sub.channel is Channel.MAIL:
        return keyed_hash(f"mail:{sender_address(sub) or ANONYMOUS}")
    return phone_hash(sender_address(sub) or ANONYMOUS)
