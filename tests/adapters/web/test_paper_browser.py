"""Paper forms typed in on the desk in a real browser, with the keyboard only: no click after the
page opens. Rows are checked as they are typed, a mistake is corrected by going back with
Shift+Tab, and Enter on an empty account saves the batch. Screenshots: paper-*.png."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from gateway.store.schema import readings
from tests.adapters.web.test_cabinet import OPERATOR_PASSWORD, Web
from tests.adapters.web.test_cabinet import web as web  # noqa: F401 - the fixture
from tests.adapters.web.test_cabinet_browser import browser as browser  # noqa: F401 - the fixture
from tests.adapters.web.test_cabinet_browser import check_page, shot
from tests.adapters.web.test_cabinet_browser import db_url as db_url  # noqa: F401 - SQLite only


async def _type_and_enter(page: Page, text: str, then: str | None = None) -> None:
    """Type into the focused field and press Enter; with `then`, wait (as the operator watches
    the screen) until the cursor has moved to that field."""
    await page.keyboard.type(text)
    await page.keyboard.press("Enter")
    if then is not None:
        await expect(page.locator(then)).to_be_focused()


async def test_a_batch_of_paper_forms_typed_with_the_keyboard_only(web: Web, browser: Browser) -> None:
    await web.seed_history("1000001", {"T": "1000"}, {"T": "1300"})
    context = await browser.new_context(viewport={"width": 1200, "height": 900}, locale="ru-RU")
    page = await context.new_page()
    await page.goto(web.base + "/operator/login")
    await page.get_by_label("Логин").focus()
    await page.keyboard.type("ivanova")
    await page.keyboard.press("Tab")
    await _type_and_enter(page, OPERATOR_PASSWORD)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Поиск абонента")

    await page.goto(web.base + "/operator/paper")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Бумажные бланки")
    await expect(page.locator("#r1-account")).to_be_focused()  # the page opens at the first row
    await check_page(page, web.base)

    # Row 1: a single-rate meter, one value.
    await _type_and_enter(page, "1000001", then="#r1-v1")
    await expect(page.locator("#r1-check")).to_have_text("Счётчик M-1: показание")
    await expect(page.locator("#r1-v2")).to_be_disabled()
    await _type_and_enter(page, "1610", then="#r2-account")
    await expect(page.locator("#r1-check")).to_have_text("будет принято")

    # Row 2: an account that is not there, then the right one.
    await _type_and_enter(page, "1000009")
    await expect(page.locator("#r2-check")).to_have_text("Лицевой счёт 1000009 не найден")
    await expect(page.locator("#r2-account")).to_be_focused()
    await page.keyboard.press("Control+A")
    await _type_and_enter(page, "1000002", then="#r2-v1")
    await expect(page.locator("#r2-check")).to_have_text("Счётчик M-2: Т1, Т2")
    await _type_and_enter(page, "4521,5", then="#r2-v2")
    await _type_and_enter(page, "1720", then="#r3-account")
    await expect(page.locator("#r2-check")).to_have_text("будет принято")

    # Row 3: three zones, a mistake in the last one, corrected by going back.
    await _type_and_enter(page, "1000003", then="#r3-v1")
    await _type_and_enter(page, "100", then="#r3-v2")
    await _type_and_enter(page, "200", then="#r3-v3")
    await _type_and_enter(page, "З00", then="#r4-account")  # a Cyrillic З instead of 3
    await expect(page.locator("#r3-check")).to_have_text(
        "не будет принято: Т3: «З00» не число. Пример: 12345 или 12345,6"
    )
    await expect(page.locator("#r4-account")).to_be_focused()
    await shot(page, "paper-01-mistake")
    await page.keyboard.press("Shift+Tab")
    await expect(page.locator("#r3-v3")).to_be_focused()
    await page.keyboard.press("Control+A")
    await _type_and_enter(page, "300", then="#r4-account")
    await expect(page.locator("#r3-check")).to_have_text("будет принято")

    # Row 4: lower than the previous reading; the check says so with the figures.
    await _type_and_enter(page, "1000001", then="#r4-v1")
    await _type_and_enter(page, "1200", then="#r5-account")
    await expect(page.locator("#r4-check")).to_have_text(
        "не будет принято: 1 200 меньше прежних 1 300 от 15.10. Проверьте"
    )
    await shot(page, "paper-02-grid")

    # Enter on the empty account of row 5: to «Сохранить бланки»; Enter there saves.
    await expect(page.locator("#r5-account")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Сохранить бланки")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Бланки сохранены")
    await expect(page.get_by_role("status")).to_contain_text(
        "строк 4; приняты 3, на проверке 0, не приняты 1."
    )
    await check_page(page, web.base)
    await shot(page, "paper-03-saved")
    await context.close()

    async with web.engine.connect() as conn:
        stored = (
            await conn.execute(
                select(readings.c.zone, readings.c.value, readings.c.verdict, readings.c.employee)
                .where(readings.c.channel == "paper")
                .order_by(readings.c.id)
            )
        ).all()
    assert [tuple(r) for r in stored] == [
        ("T", "1610", "accepted", "Иванова Анна Петровна"),
        ("T1", "4521.5", "accepted", "Иванова Анна Петровна"),
        ("T2", "1720", "accepted", "Иванова Анна Петровна"),
        ("T1", "100", "accepted", "Иванова Анна Петровна"),
        ("T2", "200", "accepted", "Иванова Анна Петровна"),
        ("T3", "300", "accepted", "Иванова Анна Петровна"),
        ("T", "1200", "rejected", "Иванова Анна Петровна"),
    ]
    assert web.clock.now == datetime(2026, 11, 17, 9, 0, tzinfo=UTC)  # entered today: dated now
