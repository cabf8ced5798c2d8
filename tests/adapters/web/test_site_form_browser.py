"""The form on the site in a real browser (Debian's Chromium driven by Playwright), on a phone-sized
screen: a typing mistake shown at its field, then the reading sent and the one answer every
reading gets. Screenshots go to test-artifacts/screenshots/ (site-form-*.png)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from gateway.store.schema import readings
from tests.adapters.web.test_cabinet import Web, start_web
from tests.adapters.web.test_cabinet_browser import browser as browser  # noqa: F401 - the fixture
from tests.adapters.web.test_cabinet_browser import check_page, shot
from tests.adapters.web.test_cabinet_browser import db_url as db_url  # noqa: F401 - SQLite only
from tests.conftest import FakeClock


@pytest.fixture
async def web(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Web]:
    w = await start_web(db_url, tmp_path, clock, site_form={"enabled": True})
    yield w
    await w.close()


async def test_a_resident_sends_a_reading_without_signing_in(web: Web, browser: Browser) -> None:
    await web.seed_history("1000002", {"T1": "1000", "T2": "500"}, {"T1": "1300", "T2": "600"})
    context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="ru-RU")
    page = await context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(web.base) else None)

    await page.goto(web.base + "/form/")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Передать показания счётчика")
    await check_page(page, web.base)
    await shot(page, "site-form-01")

    await page.get_by_label("Номер лицевого счёта").fill("1000002")
    await page.get_by_label("Показания (или день, Т1), кВт·ч").fill("1 640")
    await page.get_by_label("Ночь (Т2), если счётчик двухтарифный, кВт·ч").fill("семьсот")
    await page.get_by_role("button", name="Отправить показания").click()
    await expect(page.get_by_role("alert")).to_have_text("Проверьте, пожалуйста, выделенные поля.")
    night = page.get_by_label("Ночь (Т2), если счётчик двухтарифный, кВт·ч")
    await expect(night).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#v2-hint")).to_have_text("Показания — число, например 12345 или 12345,6.")
    await expect(page.get_by_label("Номер лицевого счёта")).to_have_value("1000002")  # kept
    await check_page(page, web.base)
    await shot(page, "site-form-02-mistake")

    await night.fill("705,5")
    await page.get_by_role("button", name="Отправить показания").click()
    answer = page.get_by_role("status")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Показания получены")
    await expect(answer).to_contain_text("Вы указали: лицевой счёт 1000002, показания 1 640, 705,5.")
    await expect(answer).not_to_contain_text("1 300")  # nothing of the account's history
    await check_page(page, web.base)
    await shot(page, "site-form-03-sent")
    assert outside == []
    await context.close()
    async with web.engine.connect() as conn:
        stored = (
            await conn.execute(
                select(readings.c.zone, readings.c.value, readings.c.verdict, readings.c.channel).where(
                    readings.c.channel == "site"
                )
            )
        ).all()
    assert [tuple(r) for r in stored] == [
        ("T1", "1640", "flagged", "site"),
        ("T2", "705.5", "flagged", "site"),
    ]
