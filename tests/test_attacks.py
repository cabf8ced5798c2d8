"""What a security review found still failing after issue 11, against a real gateway on SQLite and
PostgreSQL: each test sent what an attacker or a careless client would and got a 500 before.

- the operators' search with a NUL in the query (PostgreSQL refused the text: 500);
- a review comment with a NUL on a held reading (PostgreSQL: 500, the decision lost);
- a Telegram update whose chat, sender or update id does not fit in 64 bits (every database: 500,
  and Telegram would deliver it again and again).

A review of the doors of issues 13-16 found, and these tests keep fixed:
- `GET /api/v1/meters/{serial}/intervals` with `limit=²` (a digit to `str.isdigit`, not to `int`)
  or a time in year 1 (it overflows a day before it, or in UTC): 500;
- a multipart form cut short, or with a NUL in a part's header, after a valid token (the cabinet's
  reading form with a photo, the business upload, the desk's upload): 500;
- a letter with a NUL in From or Message-ID: PostgreSQL refused its row, and the mail door fetched
  it again on every round, so the letters behind it were never read;
- a business report CSV with a bare CR line end (old Excel for Mac) or a cell over the csv module's
  field limit: csv.Error, 500;
- an 80020 file for year 1 or 9999 (OverflowError: the import died), or with a value like
  `1e-999999999` (written out as a billion digits, a gigabyte, before being stored).
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import aiohttp
import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from adapters.mail import tables as mail_tables
from adapters.mail.message import read_message
from adapters.meters.xml80020.importing import import_file
from adapters.telegram.tables import telegram_updates
from gateway.model import Status
from gateway.registry import import_registry
from gateway.store.schema import audit
from tests.adapters.meters.test_xml80020 import CONFIG as XML80020
from tests.adapters.meters.test_xml80020 import message as xml80020
from tests.adapters.telegram.fake_bot_api import callback_update, message_update
from tests.adapters.telegram.test_conversations import Chat
from tests.adapters.telegram.test_conversations import chat as chat  # noqa: F401 - the fixture
from tests.adapters.telegram.test_conversations import fake as fake  # noqa: F401 - the fixture
from tests.adapters.web.test_business_cabinet import biz as biz  # noqa: F401 - the fixture
from tests.adapters.web.test_business_cabinet import sendsms as sendsms  # noqa: F401 - the fixture
from tests.adapters.web.test_business_cabinet import sign_in as business_sign_in
from tests.adapters.web.test_cabinet import OPERATOR_PASSWORD, Web, start_web
from tests.adapters.web.test_cabinet import web as web  # noqa: F401 - the fixture
from tests.conftest import BILLING_TOKEN, FakeClock, Running, make_config


async def test_operator_search_with_control_characters_is_no_500(web: Web) -> None:  # noqa: F811
    c = web.client()
    await c.operator_sign_in("ivanova", OPERATOR_PASSWORD)
    for query in ("%00", "1000%00001", "%D0%9B%D0%B5%00", "%1B%5B31m", "%7F"):
        page = await c.get(f"/operator/?q={query}")
        assert page.status == 200, (query, page.text[:300])
    page = await c.get("/operator/?q=1000%00001")  # read as "1000 001": no account, no error
    assert page.status == 200


async def test_a_review_comment_with_a_nul_is_kept_without_it(web: Web) -> None:  # noqa: F811
    await web.seed_history("1000001", {"T": "1000"}, {"T": "1300"})
    waiting = await web.submit("1000001", {"T": "2500"})
    assert waiting.status is Status.NEEDS_CONFIRMATION
    c = web.client()
    await c.operator_sign_in("ivanova", OPERATOR_PASSWORD)
    await c.get("/operator/queue")
    page = await c.post(
        f"/operator/receipts/{waiting.receipt}/review",
        {"decision": "reject", "comment": "не\x00верно\x1b\tсовсем", "back": "/operator/queue"},
    )
    assert page.status == 200 and f"Квитанция {waiting.receipt}: отклонена" in page.text, page.text[:300]
    async with web.engine.connect() as conn:
        (row,) = (await conn.execute(select(audit.c.comment, audit.c.after))).all()
    assert row.comment == "не верно совсем"
    assert orjson.loads(row.after)["verdict"] == "rejected"


@pytest.mark.parametrize(
    "update",
    [
        message_update(7001, 2**63, "/start"),
        message_update(7002, 501, "/start", user_id=2**63),
        message_update(2**63, 501, "/start"),
        message_update(7003, -(2**63) - 1, "/start"),
        callback_update(7004, 2**64, "confirm:1"),
    ],
    ids=["chat 2^63", "user 2^63", "update_id 2^63", "chat -2^63-1", "callback chat 2^64"],
)
async def test_telegram_ids_beyond_64_bits_are_ignored_not_500(chat: Chat, update: dict) -> None:  # noqa: F811
    status, body = await chat.post(update, raw=json.dumps(update).encode())  # orjson stops at 64 bits
    assert status == 200 and body == {"ok": True, "outcome": "ignored"}, (status, body)
    assert await chat.count(telegram_updates) == 0 and chat.fake.calls == []
    # The bot still serves everyone else.
    replies = await chat.say(501, "/start")
    assert replies, "the bot stopped answering"


async def test_meter_intervals_with_odd_digits_or_year_one_are_400(running: Running) -> None:
    base = "/api/v1/meters/M-1/intervals"
    for query, code in [
        ("?limit=%C2%B2", "bad_limit"),  # "²"
        ("?limit=%D9%A1%D9%A2", "bad_limit"),  # Arabic-Indic "12"
        ("?to=0001-01-01T00:00", "bad_time"),
        ("?from=0001-01-01T00:00%2B05:00&to=0001-01-02T00:00", "bad_time"),
        ("?to=9999-12-31T23:59:59-05:00", "bad_time"),
    ]:
        status, body = await running.get(base + query, token=BILLING_TOKEN)
        assert status == 400 and isinstance(body, dict) and body["error"]["code"] == code, (
            query,
            status,
            body,
        )
    status, body = await running.get(base + "?limit=12", token=BILLING_TOKEN)
    assert status == 200 and isinstance(body, dict) and body["intervals"] == []


async def test_a_multipart_form_cut_short_after_its_token_is_400(web: Web) -> None:  # noqa: F811
    c = web.client()
    await c.sign_in("1000001", "4567")
    home = await c.get("/cabinet/")
    first = b'--x\r\nContent-Disposition: form-data; name="_csrf"\r\n\r\n' + home.token().encode() + b"\r\n"
    for rest in [
        b'--x\r\nContent-Disposition: form-data; name="v_T"\r\n\r\n12345',  # no closing boundary
        b'--x\r\nContent-Disposition: form-data; name="v\x00T"\r\n\r\n12345\r\n--x--\r\n',
    ]:
        async with c.http.post(
            c.base + "/cabinet/meters/M-1",
            data=first + rest,
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        ) as resp:
            assert resp.status == 400, (rest, resp.status, (await resp.text())[:300])
    form = aiohttp.FormData()  # the same form whole still goes through
    form.add_field("_csrf", home.token())
    form.add_field("nonce", home.nonce())
    form.add_field("v_T", "12345")
    async with c.http.post(c.base + "/cabinet/meters/M-1", data=form) as resp:
        assert resp.status == 200 and "/cabinet/receipts/" in str(resp.url)


async def test_a_letter_with_a_nul_in_its_headers_is_recorded(engine: AsyncEngine, clock: FakeClock) -> None:
    letter = (
        b"From: Ivan <ivan\x00@example.ru>\r\nSubject: 1000001\x00 12345\r\n"
        b"Message-ID: <a\x00b@example.ru>\r\nIn-Reply-To: <c\x00d@example.ru>\r\n\r\n12345\r\n"
    )
    mail = read_message(letter, "readings@gateway.example", 20)
    assert "\x00" not in mail.sender + mail.key + mail.subject + "".join(mail.references), mail
    record = mail_tables.ToRecord(mail.key, mail.sender, clock(), "reading", "ответ", "<r@gateway.example>")
    row = await mail_tables.claim(
        engine, record, 10
    )  # PostgreSQL refused the NUL: the letter came back forever
    assert row is not None and row.state == "claimed"
    assert await mail_tables.awaiting_confirmation(engine, mail.sender, mail.references) is None


async def test_80020_files_out_of_range_are_refused_not_fatal(
    engine: AsyncEngine, db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    await import_registry(engine, make_config(db_url, tmp_path).registry.csv or "")
    for day in ("00010101", "99991231"):
        path = tmp_path / f"80020_{day}.xml"
        path.write_bytes(
            xml80020({"131150001113003": {"01": [("2330", "0000", "5")]}}).replace(b"20261116", day.encode())
        )
        report = await import_file(
            engine, XML80020, path, via="cli", clock=clock, default_max_power_kw=Decimal("15")
        )
        assert report.error == f"<datetime><day> is out of range: '{day}'", report.error
    periods = [("0000", "0030", "1e-999999999"), ("0030", "0100", "0e999999999"), ("0100", "0130", "1" * 40)]
    path = tmp_path / "80020_exponents.xml"
    path.write_bytes(xml80020({"131150001113003": {"01": [*periods, ("0130", "0200", "2,5")]}}))
    report = await import_file(
        engine, XML80020, path, via="cli", clock=clock, default_max_power_kw=Decimal("15")
    )
    assert report.error is None and report.totals()["stored"] == 1, report.text()
    assert report.text().count("is no number") == 3, report.text()


async def test_a_business_report_with_cr_line_ends_or_a_huge_cell_is_no_500(
    biz: tuple[Web, list[tuple[str, str]]],  # noqa: F811
) -> None:
    w, sms = biz
    c = w.client("10.0.0.7")
    await business_sign_in(w, sms, c)
    mac = "счётчик;зона;показание\rB-2;;812\r".encode("cp1251")
    huge = ('счётчик;зона;показание\nB-2;;"' + "9" * 200_000 + '"\n').encode()
    for data, status, said in [
        (mac, 200, "Принято: 1"),
        (huge, 422, "Строка 2: файл не читается как CSV"),
    ]:
        page = await c.get("/business/")
        form = aiohttp.FormData()
        form.add_field("_csrf", page.token())
        form.add_field("file", data, filename="отчёт.csv", content_type="text/csv")
        async with c.http.post(c.base + "/business/upload", data=form) as resp:
            text = await resp.text()
        assert resp.status == status and said in text, (status, resp.status, text[:1500])


async def test_an_upload_dripped_slower_than_allowed_gets_408(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    """A multipart form is left unread by the body deadline (the file is streamed), so the upload
    has its own: a form that has not arrived within `http.body_timeout_seconds` gets 408 and the
    connection closed, like any other body, instead of holding its handler open."""
    from tests.test_edge_bounds import _drip

    w = await start_web(db_url, tmp_path, clock, http={"body_timeout_seconds": 1.0})
    try:
        c = w.client()
        await c.sign_in("1000001", "4567")
        home = await c.get("/cabinet/")
        cookie = "; ".join(
            f"{m.key}={m.value}" for m in c.http.cookie_jar.filter_cookies(URL(c.base)).values()
        )
        body = (
            b'--x\r\nContent-Disposition: form-data; name="_csrf"\r\n\r\n' + home.token().encode() + b"\r\n"
            b'--x\r\nContent-Disposition: form-data; name="v_T"\r\n\r\n12345\r\n--x--\r\n'
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", w.gateway.port)
        writer.write(
            b"POST /cabinet/meters/M-1 HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: "
            + cookie.encode()
            + b"\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        answer = await _drip(writer, reader, body)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    finally:
        await w.close()
