"""What a security review found still failing after issue 11, against a real gateway on SQLite and
PostgreSQL: each test sent what an attacker or a careless client would and got a 500 before.

- the operators' search with a NUL in the query (PostgreSQL refused the text: 500);
- a review comment with a NUL on a held reading (PostgreSQL: 500, the decision lost);
- a Telegram update whose chat, sender or update id does not fit in 64 bits (every database: 500,
  and Telegram would deliver it again and again).
"""

from __future__ import annotations

import json

import orjson
import pytest
from sqlalchemy import select

from adapters.telegram.tables import telegram_updates
from gateway.model import Status
from gateway.store.schema import audit
from tests.adapters.telegram.fake_bot_api import callback_update, message_update
from tests.adapters.telegram.test_conversations import Chat
from tests.adapters.telegram.test_conversations import chat as chat  # noqa: F401 - the fixture
from tests.adapters.telegram.test_conversations import fake as fake  # noqa: F401 - the fixture
from tests.adapters.web.test_cabinet import OPERATOR_PASSWORD, Web
from tests.adapters.web.test_cabinet import web as web  # noqa: F401 - the fixture


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
