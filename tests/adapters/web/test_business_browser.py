"""The business customers' cabinet in a real browser (Debian's Chromium driven by Playwright), on a
phone-sized screen: a contact signs in by contract and phone with the code sent to that phone,
sends the monthly report of the contract's three metering points from the page, then as a file.
A screenshot of every page is kept in test-artifacts/screenshots/."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.adapters.web.test_business_cabinet import CODE, FILE, sendsms, start_business
from tests.adapters.web.test_cabinet import Web
from tests.adapters.web.test_cabinet_browser import browser, check_page, shot
from tests.adapters.web.test_signin_limits import settle
from tests.conftest import FakeClock

__all__ = ["browser", "sendsms"]  # fixtures used here


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Browser tests run on SQLite only; the same pages are tested on both databases over HTTP."""
    return f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"


@pytest.fixture
async def biz(
    db_url: str, tmp_path: Path, clock: FakeClock, sendsms: tuple[str, list[tuple[str, str]]]
) -> AsyncIterator[tuple[Web, list[tuple[str, str]]]]:
    w = await start_business(db_url, tmp_path, clock, sendsms[0])
    yield w, sendsms[1]
    await w.close()


async def test_a_contact_signs_in_and_reports_three_points_then_a_file(
    biz: tuple[Web, list[tuple[str, str]]], browser: Browser, tmp_path: Path
) -> None:
    w, sms = biz
    context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="ru-RU")
    page = await context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(w.base) else None)

    await page.goto(w.base + "/business/")
    await expect(page).to_have_url(re.compile(r"/business/login$"))
    await check_page(page, w.base)
    await shot(page, "business-01-sign-in")
    await page.get_by_label("Номер договора энергоснабжения").fill("12-345/2024")
    await page.get_by_label("Ваш мобильный телефон").fill("+7 916 000-00-01")
    await page.get_by_role("button", name="Получить код").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Введите код входа")
    await settle(w)
    [(phone, text)] = sms
    code = CODE.search(text)
    assert phone == "+79160000001" and code is not None
    await page.get_by_label("Код из SMS").fill(code.group(1))
    await page.get_by_role("button", name="Войти").click()

    await expect(page.get_by_role("heading", level=1)).to_have_text('ООО "Ромашка"')
    await expect(page.get_by_text("Точек учёта: 3")).to_be_visible()
    await check_page(page, w.base)
    await shot(page, "business-02-points")
    for label, value in [
        ("Т1 (день), Цех 1, ввод 1", "12345,6"),
        ("Т2 (ночь), Цех 1, ввод 1", "4567"),
        ("Показания, Цех 2", "812"),
        ("Т1 (день), Склад", "1000"),
        ("Т2 (ночь), Склад", "2000"),
        ("Т3 (полупик), Склад", "3000"),
    ]:
        await page.get_by_label(label, exact=True).fill(value)
    await page.get_by_label("Дата снятия показаний").fill("2026-11-10")
    await page.get_by_role("button", name="Передать отчёт").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Показания переданы")
    await expect(page.get_by_role("status")).to_contain_text(
        "Принято: 3, на проверке: 0, ждут подтверждения: 0, не принято: 0"
    )
    rows = page.locator("#verdicts tbody tr")
    await expect(rows).to_have_count(3)
    for serial in ("B-1", "B-2", "B-3"):
        await expect(page.locator(f'tr[data-serial="{serial}"]')).to_have_attribute("data-status", "accepted")
    await check_page(page, w.base)
    await shot(page, "business-03-report-sent")

    await page.get_by_role("link", name="К точкам учёта").click()
    await expect(page.get_by_text("Прежние").first).to_be_visible()
    report = tmp_path / "отчёт.csv"
    report.write_bytes(FILE.encode("cp1251"))  # as Excel saves "CSV" on a Russian Windows
    await page.get_by_label(re.compile("или CSV")).set_input_files(str(report))
    await page.get_by_role("button", name="Загрузить файл").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Файл отчёт.csv обработан")
    await expect(page.get_by_role("status")).to_contain_text("Принято: 2")
    await expect(page.locator("#refused")).to_contain_text(
        "Строка 5: В договоре нет счётчика или точки учёта «B-7»"
    )
    await check_page(page, w.base)
    await shot(page, "business-04-file-sent")
    assert outside == []
    await context.close()
