"""Meter photos over plain HTTP on both databases: a photo uploaded with a reading in the cabinet
is seen by its account and by staff, by nobody else; a form without a photo still works."""

from __future__ import annotations

import re

import aiohttp

from tests.adapters.web.test_cabinet import OPERATOR_PASSWORD, Client, Web
from tests.adapters.web.test_cabinet import web as web  # noqa: F401 - the fixture
from tests.gateway.test_photos import camera_jpeg


async def upload(c: Client, serial: str, value: str, photo: bytes | None) -> str:
    """Send the cabinet's reading form as the browser does (multipart, the token first); the
    receipt it leads to."""
    home = await c.get("/cabinet/")
    nonce = re.search(r'name="nonce" value="([^"]+)"', home.text)
    assert nonce is not None
    form = aiohttp.FormData()
    form.add_field("_csrf", home.token())
    form.add_field("nonce", nonce.group(1))
    form.add_field("v_T", value)
    form.add_field("photo", photo or b"", filename="IMG_0001.jpg" if photo else "", content_type="image/jpeg")
    async with c.http.post(c.base + f"/cabinet/meters/{serial}", data=form) as resp:
        assert resp.status == 200, await resp.text()
        found = re.search(r"/cabinet/receipts/(\d+)$", str(resp.url))
    assert found is not None
    return found.group(1)


async def test_a_photo_is_seen_by_its_account_and_staff_only(web: Web) -> None:
    ivan = web.client()
    await ivan.sign_in("1000001", "4567")
    receipt = await upload(ivan, "M-1", "12345", camera_jpeg(1200, 900, 1))
    page = await ivan.get(f"/cabinet/receipts/{receipt}")
    assert f'src="/cabinet/receipts/{receipt}/photo?thumb=1"' in page.text
    async with ivan.http.get(ivan.base + f"/cabinet/receipts/{receipt}/photo") as resp:
        assert resp.status == 200 and resp.content_type == "image/jpeg"
        assert b"PhoneMaker" not in await resp.read()
    without = await upload(ivan, "M-1", "12350", None)  # no file chosen: the reading alone
    assert "figure" not in (await ivan.get(f"/cabinet/receipts/{without}")).text
    assert (await ivan.get(f"/cabinet/receipts/{without}/photo")).status == 404

    petr = web.client()
    await petr.sign_in("1000002", "4568")
    assert (await petr.get(f"/cabinet/receipts/{receipt}/photo")).status == 404  # not their reading
    assert (await petr.get(f"/cabinet/receipts/{receipt}/photo?thumb=1")).status == 404
    stranger = web.client()
    assert (await stranger.get(f"/operator/receipts/{receipt}/photo")).url.endswith("/operator/login")

    staff = web.client()
    await staff.operator_sign_in("ivanova", OPERATOR_PASSWORD)
    assert (
        f'src="/operator/receipts/{receipt}/photo?thumb=1"'
        in (await staff.get(f"/operator/receipts/{receipt}")).text
    )
    async with staff.http.get(staff.base + f"/operator/receipts/{receipt}/photo?thumb=1") as resp:
        assert resp.status == 200 and resp.content_type == "image/jpeg"
