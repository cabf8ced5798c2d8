"""The business customers' cabinet (adapters/web/business.py) over real HTTP on both databases: a
contact signs in by contract and phone with a code sent to that phone alone, sends the monthly
report of three metering points from the page and as a file (each stored once however often it
is sent), sees only its own contract; the desk finds the customer by contract, INN and name."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from gateway.store.schema import readings
from tests.adapters.web.test_cabinet import OPERATOR, OPERATOR_PASSWORD, Client, Page, Web, start_web
from tests.adapters.web.test_signin_limits import settle
from tests.conftest import REGISTRY_CSV, FakeClock
from tests.gateway.test_business import CUSTOMER

CONTACTS = "Иванов Иван Иванович <ivanov@romashka.ru> +79160000001; Петрова Анна +79160000002"
ROWS = [
    f'3000001,B-1,Меркурий 230,T1;T2,6,+79160000001,100,{CUSTOMER},"Цех 1, ввод 1","{CONTACTS}"',
    f'3000001,B-2,Меркурий 201,T,6,+79160000001,60,{CUSTOMER},Цех 2,"{CONTACTS}"',
    f'3000001,B-3,Нева 303,T1;T2;T3,6,+79160000001,100,{CUSTOMER},Склад,"{CONTACTS}"',
]
CODE = re.compile(r"Код входа в кабинет по договору: (\d{6})")
SENT = "Если номер договора указан верно и телефон есть среди контактных лиц договора"
REPORT = {
    "v:B-1:T1": "12345,6",
    "v:B-1:T2": "4567",
    "v:B-2:T": "812",
    "v:B-3:T1": "1000",
    "v:B-3:T2": "2000",
    "v:B-3:T3": "3000",
}
FILE = "счётчик;зона;показание;дата\nB-1;Т1;12400;17.11.2026\nB-1;Т2;4600;17.11.2026\nB-2;;900;\nB-7;;1;\n"


def registry(tmp_path: Path) -> Path:
    header, *residents = REGISTRY_CSV.splitlines()
    lines = [header + ",kind,contract,name,inn,point,contacts", *(r + ",,,,,," for r in residents), *ROWS]
    path = tmp_path / "business-registry.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
async def sendsms() -> AsyncIterator[tuple[str, list[tuple[str, str]]]]:
    """Kannel's sendsms as the gateway sees it: each message (phone, text) recorded, 202 answered."""
    got: list[tuple[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        got.append((request.query["to"], request.query["text"]))
        return web.Response(status=202, text="0: Accepted for delivery")

    app = web.Application()
    app.router.add_get("/cgi-bin/sendsms", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/cgi-bin/sendsms?username=gw&password=pw", got
    await runner.cleanup()


async def start_business(
    db_url: str, tmp_path: Path, clock: FakeClock, sendsms_url: str, **sections: dict[str, object]
) -> Web:
    """The gateway with the test registry and a business customer of three points, SMS to `sendsms_url`."""
    return await start_web(
        db_url,
        tmp_path,
        clock,
        sms={"sendsms_url": sendsms_url, "reminders": False},
        registry={"csv": str(registry(tmp_path))},
        verification={"phone_digits": False},
        **sections,
    )


@pytest.fixture
async def biz(
    db_url: str, tmp_path: Path, clock: FakeClock, sendsms: tuple[str, list[tuple[str, str]]]
) -> AsyncIterator[tuple[Web, list[tuple[str, str]]]]:
    w = await start_business(db_url, tmp_path, clock, sendsms[0], operators={"users": [OPERATOR]})
    yield w, sendsms[1]
    await w.close()


async def ask_code(w: Web, c: Client, contract: str, phone: str) -> Page:
    await c.get("/business/login")
    page = await c.post("/business/login", {"contract": contract, "phone": phone})
    assert page.status == 200 and page.url.endswith("/business/login/code") and SENT in page.text
    await settle(w)
    return page


async def sign_in(w: Web, sms: list[tuple[str, str]], c: Client, phone: str = "+79160000001") -> Page:
    await ask_code(w, c, "12-345/2024", phone)
    [code] = [m.group(1) for to, text in sms if to == phone and (m := CODE.search(text))][-1:]
    page = await c.post("/business/login/code", {"code": code})
    assert page.status == 200 and page.url.endswith("/business/"), page.text[:300]
    return page


async def count_readings(w: Web) -> int:
    async with w.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(readings))).scalar_one())


async def test_a_contact_signs_in_by_contract_and_phone_only(biz: tuple[Web, list[tuple[str, str]]]) -> None:
    w, sms = biz
    c = w.client("10.0.0.1")
    assert (await c.get("/business/")).url.endswith("/business/login")
    # An unknown contract, a phone not among its contacts: the same page, nothing sent.
    await ask_code(w, c, "99-999/2024", "+79160000001")
    await ask_code(w, c, "12-345/2024", "+79169999999")
    assert sms == []
    # The account number at the residents' cabinet: the same neutral page, nothing sent either,
    # though the business account has a phone in its registry row.
    await c.get("/cabinet/login")
    await c.post("/cabinet/login", {"account": "3000001"})
    await settle(w)
    assert sms == []
    # The contract (written another way) and a contact's phone: the code goes to that phone alone.
    await ask_code(w, c, "№ 12-345/2024", "8 916 000-00-02")
    assert [to for to, _ in sms] == ["+79160000002"]
    [code] = [m.group(1) for _, text in sms if (m := CODE.search(text))]
    wrong = await c.post("/business/login/code", {"code": f"{(int(code) + 1) % 10**6:06d}"})
    assert wrong.status == 401 and "Код не подходит" in wrong.text
    home = await c.post("/business/login/code", {"code": code})
    assert home.url.endswith("/business/") and "ООО &#34;Ромашка&#34;" in home.text
    assert "Вы вошли как Петрова Анна" in home.text and "Точек учёта: 3" in home.text
    for point in ("Цех 1, ввод 1", "Цех 2", "Склад"):
        assert point in home.text
    # The session opens the contract's pages, not the residents' cabinet.
    assert (await c.get("/cabinet/")).url.endswith("/cabinet/login")


async def test_the_report_from_the_page_and_as_a_file_is_stored_once(
    biz: tuple[Web, list[tuple[str, str]]],
) -> None:
    w, sms = biz
    c = w.client("10.0.0.2")
    home = await sign_in(w, sms, c)
    nonce = home.nonce()
    page = await c.post("/business/report", {**REPORT, "nonce": nonce, "taken_on": "2026-11-10"})
    assert page.status == 200 and "Принято: 3, на проверке: 0" in page.text, page.text[:2000]
    assert await count_readings(w) == 6  # 2 + 1 + 3 zones
    async with w.engine.connect() as conn:
        sources = set((await conn.execute(select(readings.c.source).distinct())).scalars())
    assert len(sources) == 1 and re.fullmatch(r"cabinet:3000001:contact-\d+", sources.pop())
    # The same form sent again (a reload): the same receipts, nothing stored twice.
    await c.get("/business/")
    again = await c.post("/business/report", {**REPORT, "nonce": nonce})
    assert again.text.count("уже были переданы") == 3 and await count_readings(w) == 6

    upload = await c.get("/business/")
    token = upload.token()
    for attempt in range(2):
        form = aiohttp.FormData()
        form.add_field("_csrf", token)
        form.add_field("file", FILE.encode("cp1251"), filename="отчёт.csv", content_type="text/csv")
        async with c.http.post(c.base + "/business/upload", data=form) as resp:
            text = await resp.text()
        assert resp.status == 200 and "Строка 5: В договоре нет счётчика или точки учёта «B-7»" in text
        assert "Принято: 2" in text
        assert text.count("уже были переданы") == (0 if attempt == 0 else 2)
    assert await count_readings(w) == 6 + 3


async def test_a_contract_sees_only_its_own_and_the_desk_finds_it(
    biz: tuple[Web, list[tuple[str, str]]],
) -> None:
    w, sms = biz
    resident = await w.submit("1000001", {"T": "100"})
    c = w.client("10.0.0.3")
    await sign_in(w, sms, c)
    assert (await c.get(f"/business/receipts/{resident.receipt}")).status == 404
    await c.get("/business/")
    missing = await c.post("/business/upload", {"file": "x"})  # not a file upload
    assert missing.status == 400
    desk = w.client("10.0.0.4")
    await desk.operator_sign_in(OPERATOR.login, OPERATOR_PASSWORD)
    for query in ("12-345/2024", "7707083893", "ромашка"):
        found = await desk.get("/operator/?q=" + query)
        assert "/operator/accounts/3000001" in found.text and "договор 12-345/2024" in found.text, query
    account = await desk.get("/operator/accounts/3000001")
    assert "Юридическое лицо, договор 12-345/2024, ИНН 7707083893" in account.text
    assert "Иванов Иван Иванович, +7 9** ***-**-**, iv***@romashka.ru" in account.text
    assert "Цех 1, ввод 1: счётчик B-1" in account.text
