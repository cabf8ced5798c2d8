"""The residents' cabinet in a real browser (Debian's Chromium driven by Playwright).

Walks what a resident does on a phone-sized screen: a wrong sign-in, the right one, an accepted
reading, an unusual one with its explanation, confirming it, a refused one, the history with its
chart, signing out. A screenshot of every page is kept in test-artifacts/screenshots/.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.adapters.web.test_cabinet import Web, start_web
from tests.adapters.web.test_signin_limits import codes_in, settle
from tests.conftest import FakeClock

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Browser tests run on SQLite only; the same pages are tested on both databases over HTTP."""
    return f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"


@pytest.fixture
async def web(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Web]:
    """The cabinet as shipped (a one-time code, no phone digits); codes go to the log here."""
    w = await start_web(db_url, tmp_path, clock, verification={"code_to_log": True})
    yield w
    await w.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - once, before the browser starts
        pytest.fail(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


async def shot(page: Page, name: str) -> None:
    """Keep a picture of the page as a test artefact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def check_page(page: Page, base: str) -> None:
    """What every page must be: Russian, no horizontal scrolling on a phone, labelled fields."""
    assert await page.get_attribute("html", "lang") == "ru"
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), textarea')]
              .filter(el => !(el.labels && el.labels.length)).map(el => el.name)"""
    )
    assert unlabelled == []


async def test_resident_signs_in_submits_confirms_and_reads_history(
    web: Web, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    await web.seed_history("1000001", {"T": "1000"}, {"T": "1300"})
    batch, _ = await web.gateway.billing.lease("test", 10, web.clock())
    await web.gateway.billing.commit(batch, web.clock())
    context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="ru-RU")
    page = await context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(web.base) else None)

    await page.goto(web.base + "/cabinet/")
    await expect(page).to_have_url(re.compile(r"/cabinet/login$"))
    await check_page(page, web.base)
    await shot(page, "cabinet-01-sign-in")

    await page.get_by_label("Номер лицевого счёта").fill("1000001")
    await page.get_by_role("button", name="Получить код").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Введите код входа")
    await check_page(page, web.base)
    await settle(web)
    (code,) = codes_in(caplog, "1000001")
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    await page.get_by_label("Код из сообщения").fill(wrong)
    await page.get_by_role("button", name="Войти").click()
    await expect(page.get_by_role("alert")).to_contain_text("Код не подходит")
    await expect(page.get_by_label("Код из сообщения")).to_have_attribute("aria-invalid", "true")
    await shot(page, "cabinet-02-sign-in-failed")

    await page.get_by_label("Код из сообщения").fill(code)
    await page.get_by_role("button", name="Войти").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Передать показания")
    field = page.get_by_label("Показания, кВт·ч")
    await expect(field).to_have_attribute("inputmode", "decimal")
    hint = page.locator("#m1-1-hint")
    await expect(hint).to_contain_text("Прежние: 1 300 от 15.10.2026.")
    await expect(hint).to_contain_text("Ожидаем от 1 531 до 1 828.")
    await check_page(page, web.base)
    await shot(page, "cabinet-03-meters")

    await field.fill("1 650,5")
    await page.get_by_role("button", name="Передать показания").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Показания приняты")
    await expect(page.get_by_role("status")).to_contain_text("1 650.5")
    await shot(page, "cabinet-04-accepted")

    # A month later, a value far above this meter's usual consumption.
    web.clock.now = datetime(2026, 12, 17, 9, 0, tzinfo=UTC)
    await page.get_by_role("link", name="Передать показания").click()
    await expect(page.locator("#m1-1-hint")).to_contain_text("Прежние: 1 650.5 от 17.11.2026.")
    await page.get_by_label("Показания, кВт·ч").fill("3500")
    await page.get_by_role("button", name="Передать показания").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Проверьте показания")
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("расход 1 849.5 кВт·ч, обычно")
    await expect(alert).to_contain_text("Подтвердите или исправьте")
    await check_page(page, web.base)
    await shot(page, "cabinet-05-needs-confirmation")

    await page.get_by_role("button", name="Показания верны, подтверждаю").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Показания приняты")
    await expect(page.locator(".notice")).to_have_text("Показания подтверждены и приняты.")
    await shot(page, "cabinet-06-confirmed")

    await page.get_by_role("link", name="Передать показания").click()
    await page.get_by_label("Показания, кВт·ч").fill("3400")
    await page.get_by_role("button", name="Передать показания").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Показания не приняты")
    await expect(page.get_by_role("alert")).to_contain_text("3 400 меньше прежних 3 500 от 17.12. Проверьте")
    await expect(page.get_by_role("heading", name="Введите показания ещё раз")).to_be_visible()
    await shot(page, "cabinet-07-rejected")

    await page.get_by_role("link", name="История").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("История показаний")
    chart = page.locator("svg.chart")
    await expect(chart).to_be_visible()
    await expect(chart.locator("rect")).to_have_count(3)  # October, November, December
    await expect(chart.locator("desc")).to_contain_text("Ноя 26: Расход 350.5 кВт·ч")
    table = page.get_by_role("table", name="Расход, кВт·ч")
    await expect(table.get_by_role("row", name="Декабрь 2026 1 849.5")).to_be_visible()
    history = page.get_by_role("table", name="Показания, учитываемые за октябрь 2026")
    await expect(history).to_contain_text("учтены 17.11.2026")
    await expect(page.get_by_role("table", name="Показания, учитываемые за декабрь 2026")).to_contain_text(
        "не приняты"
    )
    await check_page(page, web.base)
    await shot(page, "cabinet-08-history")

    await page.get_by_role("button", name="Выйти").click()
    await expect(page.get_by_role("status")).to_have_text("Вы вышли из личного кабинета.")
    await page.goto(web.base + "/cabinet/history")
    await expect(page).to_have_url(re.compile(r"/cabinet/login$"))
    assert outside == []  # nothing fetched from anywhere but the gateway
    await context.close()
