"""Who may speak for an account by SMS and telephone, and what a stranger is told.

A phone is verified for an account when the registry lists it among the account's `phones`
(SMS: the sender's number; IVR: the caller id). A reading for an account from any other phone
follows `[senders] unverified`: `refuse` (default; nothing is decided, the reply says how to
register the number, the same whether the account exists or not), `hold` (decided, then held
for the back office with the reason `unverified_sender`) or `accept`. Whatever the policy, an
unverified sender's reasons are told in words that carry nothing of the account: no earlier
values or dates, no meter digits, zones or serials (`gateway.validation.explain.generic`).

Every phone is also limited to `[senders] submissions_per_hour` readings per clock hour,
counted and checked in one statement (gateway/store/schema_senders.py); the rest are refused
with `sender_rate_limited` and decide nothing.
"""

from __future__ import annotations

from gateway.config import SendersConfig
from gateway.model import Reason, Severity
from gateway.validation.explain import reason

ANONYMOUS = "anonymous"  # an IVR caller without a caller id: never verified


def refusal(config: SendersConfig) -> Reason:
    """`refuse`: the sender's phone is not registered for the account it names."""
    return reason(
        "unverified_sender",
        Severity.REJECT,
        f"Номер не зарегистрирован для этого л/с. Зарегистрируйте его {config.register_hint}",
        "the sender's phone is not registered for this account",
    )


def held_for_review() -> Reason:
    """`hold`: stored, waiting for the back office, because nobody vouches for the sender."""
    return reason(
        "unverified_sender",
        Severity.FLAG,
        "Проверим: номер не зарегистрирован для этого л/с",
        "the sender's phone is not registered for this account; held for the back office",
    )


def rate_limited(limit: int) -> Reason:
    return reason(
        "sender_rate_limited",
        Severity.REJECT,
        "Слишком много показаний с этого номера. Повторите через час",
        f"more than {limit} readings from this phone within the hour",
    )
