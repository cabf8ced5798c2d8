"""Every word the mail door writes to residents, in Russian: the answer to a reading (verdict,
explanation, receipt), to «ДА», to a message too large to read, and the help.

A letter has room, unlike an SMS: the answer says what was understood zone by zone, every reason
in full (the core's texts, as SMS and Telegram send them) and how to go on. The reasons of a
sender not verified for the account are already the core's generic words (gateway/senders.py).
"""

from __future__ import annotations

from gateway.grammar import HELP_RU
from gateway.model import Status, Verdict
from gateway.validation.explain import num, period_ru

HEAD = {
    Status.ACCEPTED: "Показания приняты.",
    Status.FLAGGED: "Показания получены и переданы на проверку.",
    Status.NEEDS_CONFIRMATION: "Проверьте показания: они необычны.",
    Status.REJECTED: "Показания не приняты.",
}
SUBJECT = {
    Status.ACCEPTED: "Показания приняты",
    Status.FLAGGED: "Показания на проверке",
    Status.NEEDS_CONFIRMATION: "Подтвердите показания",
    Status.REJECTED: "Показания не приняты",
}
ZONES = {"T": "Показание", "T1": "Т1 (день)", "T2": "Т2 (ночь)", "T3": "Т3 (полупик)"}
HOW_TO = (
    "Как передать показания: напишите в теме или в тексте письма номер лицевого счёта и показание, "
    f"например 1234567 12345; для двухтарифного счётчика 1234567 Т1 12345 Т2 6789. {HELP_RU}"
)
FOOTER = (
    "Это автоматический ответ на ваше письмо с показаниями. Если вы не отправляли показания, "
    "ничего делать не нужно."
)
TOO_LARGE = (
    "Письмо слишком большое, и мы его не прочли: вложения не нужны. Пришлите показания текстом, без вложений."
)
NOTHING_TO_CONFIRM = "Нет показаний, ждущих вашего подтверждения."
CONFIRMED = "Спасибо, показания подтверждены."


def _letter(*paragraphs: str) -> str:
    return "Здравствуйте!\n\n" + "\n\n".join(p for p in paragraphs if p) + "\n\n-- \n" + FOOTER + "\n"


def subject_for(verdict: Verdict | None, original: str) -> str:
    """The answer's subject: "Re: " and the resident's own, threaded; else what was decided."""
    if original:
        return f"Re: {original}"[:200]
    return SUBJECT[verdict.status] if verdict is not None else "Приём показаний"


def verdict_text(verdict: Verdict, too_large: bool = False, confirmed: bool = False) -> str:
    """The answer to a reading (or to «ДА»): what was understood, what was decided, why, the receipt."""
    head = HEAD[verdict.status]
    if verdict.duplicate:
        head += " Эти показания уже были получены раньше."
    if confirmed and verdict.status is not Status.NEEDS_CONFIRMATION:
        head = f"{CONFIRMED} {head}"
    lines = [head]
    where = [
        part
        for part in (
            verdict.account and f"Лицевой счёт {verdict.account}",
            verdict.meter_serial and f"счётчик {verdict.meter_serial}",
        )
        if part
    ]
    if where:
        lines.append(", ".join(where) + ".")
    for r in sorted(verdict.readings, key=lambda r: r.zone):
        if r.value is not None:
            lines.append(f"{ZONES.get(r.zone, r.zone)}: {num(r.value)} кВт·ч")
    reasons = "\n".join(f"— {r.message_ru}" for r in verdict.reasons if r.message_ru)
    tail = ""
    if verdict.status in (Status.ACCEPTED, Status.FLAGGED) and verdict.receipt is not None:
        tail = f"Квитанция № {verdict.receipt}"
        if verdict.period:
            tail += f", показания учтём за {period_ru(verdict.period)} {verdict.period[:4]} г."
        else:
            tail += "."
    elif verdict.status is Status.NEEDS_CONFIRMATION:
        tail = (
            "Если всё верно, ответьте на это письмо словом ДА. "
            "Если ошиблись, пришлите верные показания новым письмом."
        )
    elif verdict.status is Status.REJECTED:
        tail = (TOO_LARGE + "\n\n" if too_large else "") + "Проверьте и пришлите снова. " + HOW_TO
    return _letter("\n".join(lines), reasons, tail)


def nothing_to_confirm() -> str:
    return _letter(NOTHING_TO_CONFIRM, HOW_TO)


def help_text() -> str:
    return _letter(HOW_TO)
