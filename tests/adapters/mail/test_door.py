"""The mail door end to end: a real Dovecot holds the readings mailbox, a real SMTP server
(aiosmtpd) receives the answers, the gateway runs on both databases. What is asserted is what a
resident's mail client would show (the answer, its thread) and what billing would get."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from sqlalchemy import func, select

from adapters.mail.config import MailConfig
from adapters.mail.dovecot import PrivateDovecot
from adapters.mail.mailbox import Mailbox
from adapters.mail.tables import mail_messages
from gateway.service import Gateway
from gateway.store.schema import inbound, readings
from tests.adapters.mail.mail_rig import (
    ADDRESS,
    PASSWORD,
    USER,
    SmtpSink,
    deliver,
    dovecot,  # noqa: F401  (the session's server, a fixture)
    eventually,
    flagged,
    letter,
    new_folder,
    text_of,
)
from tests.conftest import REGISTRY_CSV, FakeClock, make_config

IVAN = "ivan@example.ru"  # registered for account 1000001 (meter M-1, single rate)
PETR = "petr@example.ru"  # registered for account 1000002 (meter M-2, day and night)
STRANGER = "someone@example.org"


def registry_with_emails() -> str:
    lines = REGISTRY_CSV.strip().splitlines()
    emails = {"1000001": "Ivan@Example.ru", "1000002": PETR}
    out = [lines[0] + ",emails"]
    out += [f"{line},{emails.get(line.split(',')[0], '')}" for line in lines[1:]]
    return "\n".join(out) + "\n"


@dataclass
class MailGateway:
    gateway: Gateway
    server: PrivateDovecot
    folder: str
    smtp: SmtpSink
    clock: FakeClock
    http: aiohttp.ClientSession

    def send(self, message: EmailMessage | bytes) -> None:
        deliver(self.server, self.folder, message)

    async def answers_to(self, address: str, count: int = 1) -> list[EmailMessage]:
        async def arrived() -> list[EmailMessage] | None:
            found = self.smtp.to(address)
            return found if len(found) >= count else None

        found: list[EmailMessage] = await eventually(arrived)
        return found

    async def done(self, count: int) -> None:
        async def check() -> bool:
            return flagged(self.server, self.folder) >= count

        await eventually(check)

    async def rows(self) -> list[Any]:
        async with self.gateway.engine.connect() as conn:
            found = await conn.execute(
                select(readings.c.value, readings.c.channel, readings.c.source, readings.c.verdict).order_by(
                    readings.c.id
                )
            )
            return list(found.all())

    async def get(self, path: str) -> str:
        async with self.http.get(f"http://127.0.0.1:{self.gateway.port}{path}") as resp:
            return await resp.text()


@pytest.fixture
async def mail(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    dovecot: PrivateDovecot,  # noqa: F811
) -> AsyncIterator[MailGateway]:
    smtp = SmtpSink()
    smtp.start()
    folder = new_folder(dovecot)
    config = make_config(
        db_url,
        tmp_path,
        mail={
            "enabled": True,
            "address": ADDRESS,
            "imap_host": "127.0.0.1",
            "imap_port": dovecot.port,
            "imap_tls": False,
            "imap_user": USER,
            "imap_password": PASSWORD,
            "mailbox": folder,
            "idle_seconds": 30.0,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "smtp_security": "none",
            "retry_seconds": 1.0,
            "reconnect_initial_seconds": 0.2,
            "max_message_bytes": 20_000,
        },
    )
    registry = Path(config.registry.csv or "")
    await asyncio.to_thread(registry.write_text, registry_with_emails(), encoding="utf-8")
    gateway = Gateway(config, clock=clock)
    await gateway.start()
    async with aiohttp.ClientSession() as http:
        running = MailGateway(gateway, dovecot, folder, smtp, clock, http)
        await eventually(_async(lambda: gateway.health_probes["mail"]()["connected"]))
        yield running
    await gateway.stop()
    smtp.stop()


def _async(fn: Any) -> Any:
    async def check() -> Any:
        return fn()

    return check


async def test_a_letter_is_stored_and_answered_in_its_thread_once(mail: MailGateway) -> None:
    original = letter(
        "Иван Петров <Ivan@Example.ru>",
        html=(
            "<div>Здравствуйте!<br>1000001 12345</div><div>С уважением, Иван</div>"
            '<div class="gmail_quote">вт, 17 нояб. 2026 г. в 10:00, Приём показаний:'
            "<blockquote>Показания приняты. Квитанция № 999, 1000001 99999</blockquote></div>"
        ),
        message_id="<first-1@example.ru>",
    )
    mail.send(original)
    (answer,) = await mail.answers_to(IVAN)
    assert answer["In-Reply-To"] == "<first-1@example.ru>"
    assert "<first-1@example.ru>" in answer["References"]
    assert answer["Subject"] == "Re: Показания"
    assert answer["Auto-Submitted"] == "auto-replied"
    assert answer["From"] == f"Приём показаний <{ADDRESS}>"
    assert mail.smtp.envelopes[0] == (ADDRESS, [IVAN])
    text = text_of(answer)
    assert "Показания приняты." in text and "Лицевой счёт 1000001, счётчик M-1." in text
    assert "Показание: 12 345 кВт·ч" in text and "Квитанция № 1, показания учтём за ноябрь 2026 г." in text
    ((value, channel, source, verdict),) = await mail.rows()
    assert (value, channel, verdict) == ("12345", "mail", "accepted")
    assert source.startswith("mail:#") and "ivan" not in source  # the address is not stored in clear
    async with mail.gateway.engine.connect() as conn:
        payload = (await conn.execute(select(inbound.c.payload))).scalar_one()
    stored = orjson.loads(payload)
    assert stored["body"] == "Здравствуйте!\n1000001 12345" and stored["from"] == IVAN  # the quote is gone

    # The same message again (a second copy in the mailbox): no second reading, no second answer.
    mail.send(original)
    await mail.done(2)
    # Automatic mail, bounces and loops carry a reading but are never answered nor read.
    for kind, extra in [
        ("auto-reply", {"Auto-Submitted": "auto-replied"}),
        ("list", {"Precedence": "bulk"}),
        ("bounce", {"Return-Path": "<>"}),
    ]:
        mail.send(letter(IVAN, "1000001 12999", subject=kind, **extra))
    mail.send(letter(ADDRESS, "1000001 12999", subject="loop"))
    mail.send(letter("MAILER-DAEMON@example.ru", "1000001 12999", subject="Undelivered"))
    await mail.done(7)
    assert len(mail.smtp.received) == 1 and len(await mail.rows()) == 1
    health = mail.gateway.health_probes["mail"]()
    assert health["status"] == "ok" and health["idle"] is True
    assert health["by_kind"] == {"reading": 1, "repeated": 1, "automatic": 5}
    metrics = await mail.get("/metrics")
    assert 'gateway_verdicts_total{channel="mail",status="accepted"} 1.0' in metrics
    assert 'gateway_mail_messages_total{kind="automatic"} 5.0' in metrics
    assert 'gateway_mail_answers_total{outcome="sent"} 1.0' in metrics


async def test_a_letter_that_comes_while_another_is_handled_is_not_left_until_the_next_idle(
    mail: MailGateway,
) -> None:
    """Dovecot tells of a letter that came while the door was busy in the answer to the door's next
    command (its STORE), not by a push once it idles: the door looks again before idling, so the
    second letter is answered at once, not after idle_seconds (30 s here; this test waits 10)."""
    door = mail.gateway.health_probes["mail"].__self__  # type: ignore[attr-defined]
    handle = door.inbox.handle
    sent_second = False

    async def handle_and_meanwhile(message: Any) -> Any:
        nonlocal sent_second
        if not sent_second:
            sent_second = True
            await asyncio.to_thread(mail.send, letter(PETR, "1000002 Т1 101 Т2 51"))
        return await handle(message)

    door.inbox.handle = handle_and_meanwhile
    mail.send(letter(IVAN, "1000001 12345"))
    (first,) = await mail.answers_to(IVAN)
    (second,) = await mail.answers_to(PETR)
    assert "Показания приняты." in text_of(first) and "Показания приняты." in text_of(second)


async def test_news_of_mail_in_the_answer_to_a_command_is_not_lost(
    dovecot: PrivateDovecot,  # noqa: F811
) -> None:
    """The server tells of a letter in the answer to the command running when it comes, once;
    aioimaplib drops that line for its asynchronous commands. The mailbox notes it, so the door
    looks again instead of idling unaware (the search that found nothing was such a command)."""
    folder = new_folder(dovecot)
    config = MailConfig.model_validate(
        {
            "enabled": True,
            "address": ADDRESS,
            "imap_host": "127.0.0.1",
            "imap_port": dovecot.port,
            "imap_tls": False,
            "imap_user": USER,
            "imap_password": PASSWORD,
            "mailbox": folder,
            "smtp_host": "127.0.0.1",
        }
    )
    mailbox = Mailbox(config)
    await mailbox.connect()
    try:
        assert await mailbox.pending() == [] and not mailbox.told_of_mail
        await asyncio.to_thread(deliver, dovecot, folder, letter(IVAN, "1000001 12345"))
        await mailbox.client.noop()  # any command: the server's news comes with its answer
        assert mailbox.told_of_mail
        assert len(await mailbox.pending()) == 1 and not mailbox.told_of_mail
    finally:
        await mailbox.close()


async def test_subject_strangers_refusals_and_a_letter_too_large(mail: MailGateway) -> None:
    mail.send(letter(PETR, "", subject="Re: Т1 100 Т2 50", html=" "))  # the address names the account
    (answer,) = await mail.answers_to(PETR)
    assert "Т1 (день): 100 кВт·ч" in text_of(answer) and "Т2 (ночь): 50 кВт·ч" in text_of(answer)
    # A stranger names an account: refused, told nothing of it beyond its own words (no meter).
    mail.send(letter(STRANGER, "1000001 12400"))
    (refusal,) = await mail.answers_to(STRANGER)
    assert "Показания не приняты.\nЛицевой счёт 1000001.\n" in text_of(refusal)
    assert "Адрес не зарегистрирован для этого л/с" in text_of(refusal) and "M-1" not in text_of(refusal)
    # Words the grammar does not read: the sender is told what was not understood and how to send.
    mail.send(letter(PETR, "Добрый день, как дела?", subject="Вопрос"))
    (_, unclear) = await mail.answers_to(PETR, 2)
    assert "Непонятно" in text_of(unclear) and "Как передать показания" in text_of(unclear)
    # Over max_message_bytes: not read, stored as refused, its sender asked for text.
    big = letter(PETR, "1000002 Т1 110 Т2 55")
    big.add_attachment(b"\x89PNG" + b"0" * 30_000, maintype="image", subtype="png", filename="meter.png")
    mail.send(big)
    (*_, too_large) = await mail.answers_to(PETR, 3)
    assert "Письмо слишком большое" in text_of(too_large)
    assert [(v, verdict) for v, _, _, verdict in await mail.rows()] == [
        ("100", "accepted"),
        ("50", "accepted"),
    ]
    async with mail.gateway.engine.connect() as conn:
        responses = (await conn.execute(select(inbound.c.response).order_by(inbound.c.id))).scalars().all()
    codes = [orjson.loads(r)["reasons"][0]["code"] for r in responses[1:]]
    assert codes == ["unverified_sender", "format_unknown_words", "format_too_long"]


async def test_yes_in_reply_confirms_the_reading_its_answer_asked_about(mail: MailGateway) -> None:
    for n, value in enumerate(("1000", "1300", "1600"), start=1):  # two months of ~10 kWh a day
        mail.send(letter(IVAN, f"1000001 {value}"))
        assert "Показания приняты." in text_of((await mail.answers_to(IVAN, n))[-1])
        mail.clock.advance(days=30)
    mail.send(letter(IVAN, "1000001 2400"))
    asked = (await mail.answers_to(IVAN, 4))[-1]
    assert "Если всё верно, ответьте на это письмо словом ДА" in text_of(asked)
    # Petr's «да» does not touch Ivan's reading.
    mail.send(letter(PETR, "да"))
    (nothing,) = await mail.answers_to(PETR)
    assert "Нет показаний, ждущих вашего подтверждения" in text_of(nothing)
    reply = letter(
        IVAN,
        "Да\n\nвт, 17 нояб. 2026 г. в 12:00, Приём показаний <readings@retailer.test>:\n> Проверьте показания",
        subject="Re: Показания",
        In_Reply_To=asked["Message-ID"],
    )
    mail.send(reply)
    confirmed = (await mail.answers_to(IVAN, 5))[-1]
    assert confirmed["In-Reply-To"] == reply["Message-ID"]
    assert "Спасибо, показания подтверждены. Показания приняты." in text_of(confirmed)
    assert [verdict for *_, verdict in await mail.rows()] == ["accepted"] * 4


async def test_an_answer_that_did_not_go_is_sent_once_smtp_is_back(mail: MailGateway) -> None:
    mail.smtp.stop()  # the SMTP server is down: nothing listens on its port
    mail.send(letter(IVAN, "1000001 12345"))

    async def failed() -> bool:
        async with mail.gateway.engine.connect() as conn:
            state = (await conn.execute(select(mail_messages.c.state))).scalar_one_or_none()
        return state == "failed"

    await eventually(failed)
    assert flagged(mail.server, mail.folder) == 0  # left for the next try
    mail.smtp.start()
    (answer,) = await mail.answers_to(IVAN)
    assert "Показания приняты." in text_of(answer)
    await mail.done(1)
    async with mail.gateway.engine.connect() as conn:
        n = (await conn.execute(select(func.count()).select_from(readings))).scalar_one()
    assert n == 1 and len(mail.smtp.received) == 1
