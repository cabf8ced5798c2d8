"""Meter photos in a real browser (Debian's Chromium driven by Playwright): a resident uploads a
photo with an unusual reading in the cabinet, sees it on the receipt, and the back office sees it
beside the held reading in the desk's queue; a file that is no photo leaves the reading alone.
Screenshots go to test-artifacts/screenshots/ (photos-*.png)."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.adapters.web.test_cabinet import OPERATOR_PASSWORD, Web
from tests.adapters.web.test_cabinet import web as web  # noqa: F401 - the fixture
from tests.adapters.web.test_cabinet_browser import browser as browser  # noqa: F401 - the fixture
from tests.adapters.web.test_cabinet_browser import check_page, shot
from tests.adapters.web.test_cabinet_browser import db_url as db_url  # noqa: F401 - SQLite only
from tests.gateway.test_photos import camera_jpeg

PHOTO_LABEL = "Фото счётчика (можно не прикладывать)"


async def image_shown(page: Page, selector: str) -> bool:
    """The image was fetched and decoded (a broken one has no natural width)."""
    return bool(await page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0"))


async def test_a_photo_uploaded_with_a_reading_is_seen_on_the_receipt_and_in_the_desk_queue(
    web: Web, browser: Browser, tmp_path: Path
) -> None:
    await web.seed_history("1000001", {"T": "1000"}, {"T": "1300"})  # ~10 kWh a day
    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(camera_jpeg(2400, 1800))  # with GPS in its EXIF
    not_a_photo = tmp_path / "meter.jpg"
    not_a_photo.write_bytes(b"just some text, not a picture")

    resident = await (
        await browser.new_context(viewport={"width": 390, "height": 844}, locale="ru-RU")
    ).new_page()
    await resident.goto(web.base + "/cabinet/login")
    await resident.get_by_label("Номер лицевого счёта").fill("1000001")
    await resident.get_by_label("Последние 4 цифры телефона (если не нужен код)").fill("4567")
    await resident.get_by_role("button", name="Войти или получить код").click()
    await expect(resident.get_by_role("heading", level=1)).to_have_text("Передать показания")
    await expect(resident.get_by_label(PHOTO_LABEL)).to_have_attribute(
        "accept", "image/jpeg,image/png,image/webp"
    )
    await check_page(resident, web.base)

    await resident.get_by_label("Показания, кВт·ч").fill("2500")  # far above the usual
    await resident.get_by_label(PHOTO_LABEL).set_input_files(str(photo))
    await resident.get_by_role("button", name="Передать показания").click()
    await expect(resident.get_by_role("heading", level=1)).to_have_text("Проверьте показания")
    figure = resident.locator("figure.photo img")
    await expect(figure).to_have_attribute("alt", re.compile(r"^Фото счётчика к квитанции № \d+$"))
    assert await image_shown(resident, "figure.photo img")
    await shot(resident, "photos-01-cabinet-receipt")
    receipt = re.search(r"/receipts/(\d+)", resident.url)
    assert receipt is not None
    full = await resident.request.get(f"{web.base}/cabinet/receipts/{receipt.group(1)}/photo")
    assert full.headers["content-type"] == "image/jpeg"
    body = await full.body()
    assert b"PhoneMaker" not in body and b"Exif" not in body  # GPS and the camera are gone

    # A file that is no photo: the reading is taken, the resident is told the photo was not.
    await resident.goto(web.base + "/cabinet/")
    await resident.get_by_label("Показания, кВт·ч").fill("1650")
    await resident.get_by_label(PHOTO_LABEL).set_input_files(str(not_a_photo))
    await resident.get_by_role("button", name="Передать показания").click()
    await expect(resident.get_by_role("heading", level=1)).to_have_text("Показания приняты")
    await expect(resident.locator("main")).to_contain_text(
        "Фото не сохранено: это не фотография в JPEG, PNG или WebP. Показания переданы без фото."
    )
    assert await resident.locator("figure.photo").count() == 0
    await shot(resident, "photos-02-cabinet-not-a-photo")

    desk = await (
        await browser.new_context(viewport={"width": 1200, "height": 900}, locale="ru-RU")
    ).new_page()
    await desk.goto(web.base + "/operator/login")
    await desk.get_by_label("Логин").fill("ivanova")
    await desk.get_by_label("Пароль").fill(OPERATOR_PASSWORD)
    await desk.get_by_role("button", name="Войти").click()
    await desk.goto(web.base + "/operator/queue")
    item = desk.locator(
        "section.card", has=desk.get_by_role("heading", name=re.compile(f"№ {receipt.group(1)}"))
    )
    await expect(item).to_contain_text("2 500")
    await expect(item.locator("figure.photo img")).to_be_visible()
    assert await image_shown(desk, "section.card figure.photo img")
    await check_page(desk, web.base)
    await shot(desk, "photos-03-desk-queue")
    await item.locator("figure.photo a").click()
    await expect(desk).to_have_url(re.compile(rf"/operator/receipts/{receipt.group(1)}/photo$"))
    # The photo opens at its kept size, upright (the camera's 2400 x 1800, scaled to 2048 wide).
    size = await desk.evaluate("[document.images[0].naturalWidth, document.images[0].naturalHeight]")
    assert size == [1536, 2048]
