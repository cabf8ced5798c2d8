"""The operators' desk in a real browser: sign in, find an account, enter readings, review held ones.

Screenshots of every page go to test-artifacts/screenshots/ (operator-*.png).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import orjson
from playwright.async_api import Browser, expect
from sqlalchemy import select

from gateway.model import Status
from gateway.store.schema import audit, readings
from tests.adapters.web.test_cabinet import OPERATOR_PASSWORD, Web
from tests.adapters.web.test_cabinet import web as web  # noqa: F401 - the fixture
from tests.adapters.web.test_cabinet_browser import browser as browser  # noqa: F401 - the fixture
from tests.adapters.web.test_cabinet_browser import check_page, shot
from tests.adapters.web.test_cabinet_browser import db_url as db_url  # noqa: F401 - SQLite only


async def test_operator_enters_readings_and_reviews_the_queue(web: Web, browser: Browser) -> None:
    await web.seed_history("1000002", {"T1": "1000", "T2": "500"}, {"T1": "1300", "T2": "600"})
    await web.seed_history("1000001", {"T": "1000"}, {"T": "1300"})
    waiting = await web.submit("1000001", {"T": "2500"})  # a resident's unusual value, unconfirmed
    assert waiting.status is Status.NEEDS_CONFIRMATION
    context = await browser.new_context(viewport={"width": 1200, "height": 900}, locale="ru-RU")
    page = await context.new_page()

    await page.goto(web.base + "/operator/")
    await expect(page).to_have_url(re.compile(r"/operator/login$"))
    await page.get_by_label("Логин").fill("ivanova")
    await page.get_by_label("Пароль").fill("не тот")
    await page.get_by_role("button", name="Войти").click()
    await expect(page.get_by_role("alert")).to_have_text("Неверный логин или пароль.")
    await check_page(page, web.base)
    await shot(page, "operator-01-sign-in-failed")
    await page.get_by_label("Пароль").fill(OPERATOR_PASSWORD)
    await page.get_by_role("button", name="Войти").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Поиск абонента")

    await page.get_by_label("Лицевой счёт, телефон или адрес").fill("Ленина 1-2")
    await page.get_by_role("button", name="Найти").click()
    await expect(page.get_by_role("heading", name="Найдено: 1")).to_be_visible()
    await shot(page, "operator-02-search")
    await page.get_by_role("link", name="1000002").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Лицевой счёт 1000002")
    await check_page(page, web.base)
    await shot(page, "operator-03-account")

    await page.get_by_label("Т1 (день), кВт·ч").fill("1640")
    await page.get_by_label("Т2 (ночь), кВт·ч").fill("705,5")
    await page.get_by_label("по телефону").check()
    await page.get_by_role("button", name="Внести показания").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Показания приняты")
    await expect(page.locator("main")).to_contain_text("оператор, принял(а) Иванова Анна Петровна")
    await shot(page, "operator-04-entered")

    # A month later the resident dictates a value far above the usual: held for the back office.
    web.clock.now = datetime(2026, 12, 17, 9, 0, tzinfo=UTC)
    await page.get_by_role("link", name="1000002").click()
    await page.get_by_label("Т1 (день), кВт·ч").fill("5000")
    await page.get_by_label("Т2 (ночь), кВт·ч").fill("790")
    await page.get_by_role("button", name="Внести показания").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Показания приняты на проверку")
    await expect(page.get_by_role("status")).to_contain_text("Т1: расход 3 360 кВт·ч, обычно")
    flagged = int(page.url.rsplit("/", 1)[1])
    await shot(page, "operator-05-flagged")

    await page.get_by_role("link", name="Очередь проверки").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Очередь проверки")
    item = page.locator(f"section:has(#item-{flagged})")
    other = page.locator(f"section:has(#item-{waiting.receipt})")
    await expect(item).to_contain_text("на проверке")
    await expect(other).to_contain_text("ждут подтверждения")
    await check_page(page, web.base)
    await shot(page, "operator-06-queue")

    await item.get_by_label("Комментарий").fill("Абонент продиктовал с ошибкой, перезвонить")
    await item.get_by_role("button", name="Отклонить").click()
    await expect(page.get_by_role("status")).to_have_text(f"Квитанция {flagged}: отклонена.")
    await other.get_by_label("Комментарий").fill("Проверено по фото счётчика")
    await other.get_by_role("button", name="Принять").click()
    await expect(page.get_by_role("status")).to_have_text(f"Квитанция {waiting.receipt}: принята.")
    await expect(page.get_by_text("Очередь пуста.")).to_be_visible()
    journal = page.get_by_role("table", name="Кто, когда и как менял показания")
    await expect(journal.get_by_role("row")).to_have_count(1 + 3)  # two zones rejected, one accepted
    await expect(journal).to_contain_text("Проверено по фото счётчика")
    await shot(page, "operator-07-reviewed")
    await context.close()

    async with web.engine.connect() as conn:
        trail = (await conn.execute(select(audit).order_by(audit.c.id))).mappings().all()
        entered = (
            await conn.execute(
                select(readings.c.value, readings.c.verdict, readings.c.employee)
                .where(readings.c.channel == "operator")
                .order_by(readings.c.id)
            )
        ).all()
    assert [tuple(r) for r in entered] == [
        ("1640", "accepted", "Иванова Анна Петровна"),
        ("705.5", "accepted", "Иванова Анна Петровна"),
        ("5000", "rejected", "Иванова Анна Петровна"),
        ("790", "rejected", "Иванова Анна Петровна"),
    ]
    assert [(t["actor"], t["action"]) for t in trail] == [("ivanova (Иванова Анна Петровна)", "review")] * 3
    assert [orjson.loads(t["after"])["verdict"] for t in trail] == ["rejected", "rejected", "accepted"]
