"""Readings from a linked chat: as free text (the one grammar, gateway/grammar.py) or step by
step with buttons (account, meter, zone), the verdict back as a message, the confirmation of a
value held for it ("Подтвердить" / "Исправить", gateway/held.py) and the chat's history.

A reading becomes a `Submission` for the intake (channel `telegram`, sender the chat's keyed
reference, `channel_message_id` the update_id, `raw` the update JSON); the handlers translate
and nothing else. Words of the grammar typed as a whole message ("помощь", "история", "да", ...)
are answered here as their commands are. A text is parsed once, here, with the enabled text
formats: the parse goes with the submission (kept in the conversation's state while buttons ask
for the account or meter), and the core reads it instead of the text. A photo with the reading in
its caption is read the same way, and the photo is kept with the reading (photos.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message, Update

from adapters.telegram import linking, notifier, photos, texts
from adapters.telegram.storage import remember
from gateway import account_views, accounts, held
from gateway.grammar import Command as TextCommand
from gateway.grammar import ParsedReading, ParseFailure, parse_message
from gateway.model import Severity, Status
from gateway.privacy import chat_ref
from gateway.validation.explain import num

if TYPE_CHECKING:
    from adapters.telegram.channel import TelegramChannel


class Flow(StatesGroup):  # the class name is part of the state stored in telegram_fsm
    choose_account = State()  # buttons: which linked account (free text or step by step)
    choose_meter = State()  # buttons: which meter of the account
    zones = State()  # buttons: which zone to enter, "Отправить" once all have values
    value = State()  # waiting for the value of data["zone"]


def router() -> Router:
    r = Router(name="telegram-readings")
    r.message.register(on_value, Flow.value, F.text)
    r.message.register(on_text, F.text)
    r.message.register(on_photo, F.photo | F.document.mime_type.in_(photos.IMAGE_TYPES))
    r.callback_query.register(on_menu, F.data.startswith("menu:"))
    r.callback_query.register(on_pick_account, Flow.choose_account, F.data.startswith("a:"))
    r.callback_query.register(on_pick_meter, Flow.choose_meter, F.data.startswith("m:"))
    r.callback_query.register(on_pick_zone, Flow.zones, F.data.startswith("z:"))
    r.callback_query.register(on_send, Flow.zones, F.data == "send")
    r.callback_query.register(on_confirm, F.data.regexp(r"^cf:\d+$"))
    r.callback_query.register(on_correct, F.data.regexp(r"^fx:\d+$"))
    return r


# -- steps ----------------------------------------------------------------------------------------


async def text_command(tg: TelegramChannel, chat_id: int, command: TextCommand, state: FSMContext) -> None:
    """Whole-message words of the grammar ("помощь", "да", "история", ...)."""
    if command.name == "help":
        await tg.say(chat_id, texts.HELP)
    elif command.name == "history":
        await history(tg, chat_id)
    elif command.name == "start":
        linked = await tg.linked(chat_id)
        if linked:
            await linking.greet(tg, chat_id, linked)
        else:
            await linking.start_link(tg, chat_id, state, first=True)
    elif command.name == "stop":
        await notifier.switch_reminders(tg, chat_id, False)
    elif command.name == "remind":
        await notifier.switch_reminders(tg, chat_id, True)
    elif command.name in ("confirm", "correct"):
        receipt = (await state.get_data()).get("held")
        if not isinstance(receipt, int):
            await tg.say(chat_id, texts.NOTHING_HELD)
        elif command.name == "confirm":
            await _confirm_held(tg, chat_id, receipt, state, None)
        else:
            await _correct_held(tg, chat_id, receipt, state, None)


async def begin_guided(tg: TelegramChannel, chat_id: int, state: FSMContext, update: Update) -> None:
    linked = await tg.linked(chat_id)
    if not linked:
        await tg.say(chat_id, texts.LINK_PROMPT)
        return
    data = {"purpose": "guided"}
    if len(linked) > 1:
        await _choose_account(tg, chat_id, linked, state, data)
        return
    await _after_account(tg, chat_id, linked[0], state, data, update)


async def _choose_account(
    tg: TelegramChannel, chat_id: int, linked: list[str], state: FSMContext, data: dict[str, Any]
) -> None:
    await remember(state, Flow.choose_account, data)
    await tg.say(
        chat_id,
        texts.WHICH_ACCOUNT,
        texts.choice_keyboard([(texts.ACCOUNT_BUTTON.format(account=a), f"a:{a}") for a in linked]),
    )


async def _after_account(
    tg: TelegramChannel, chat_id: int, account: str, state: FSMContext, data: dict[str, Any], update: Update
) -> None:
    """The account is known: choose the meter when the account has several, then go on."""
    data = {**data, "account": account}
    known = next((link.active_meters for link in await tg.links(chat_id) if link.account == account), None)
    if data.get("purpose") == "text" and (data.get("has_meter") or (known is not None and known <= 1)):
        # The text names its meter, or the account has one: the core resolves (or explains) it.
        await _submit_text(tg, chat_id, state, data, None)
        return
    meters = [m for m in await accounts.meters_of_account(tg.db.reader, account) or [] if m.active]
    if data.get("purpose") == "text" and len(meters) <= 1:
        await _submit_text(tg, chat_id, state, data, None)
        return
    if not meters:
        await remember(state, None, {})
        await tg.say(chat_id, texts.NO_METERS.format(account=account))
        return
    if len(meters) > 1:
        await remember(state, Flow.choose_meter, data)
        await tg.say(
            chat_id,
            texts.WHICH_METER.format(account=account),
            texts.choice_keyboard(
                [(texts.METER_BUTTON.format(serial=m.serial), f"m:{m.serial}") for m in meters]
            ),
        )
        return
    await _start_values(tg, chat_id, account, meters[0].serial, meters[0].zones, state)


async def _submit_text(
    tg: TelegramChannel, chat_id: int, state: FSMContext, data: dict[str, Any], meter: str | None
) -> None:
    verdict = await tg.submit(
        chat_id,
        int(data["update_id"]),
        str(data["raw"]),
        data.get("account"),
        text=str(data["text"]),
        reading=_reading_of(data),
        meter=meter,
    )
    photo = data.get("photo")
    note = None
    if isinstance(photo, dict) and verdict.receipt is not None:  # the reading came with its photo
        note = await photos.keep(tg, photo, verdict.receipt)
    await tg.answer_verdict(chat_id, verdict, state, note)


def _previous_line(
    tg: TelegramChannel, zone: str, zones: tuple[str, ...], last: dict[str, account_views.LastValue]
) -> str:
    found = last.get(zone)
    return texts.previous_line(
        zone, zones, found.value if found else None, found.taken_at if found else None, tg.tz
    )


async def _start_values(
    tg: TelegramChannel, chat_id: int, account: str, meter: str, zones: tuple[str, ...], state: FSMContext
) -> None:
    """Step by step: show the previous reading, then ask for the value (or the zone first)."""
    data = {"purpose": "guided", "account": account, "meter": meter, "zones": list(zones), "values": {}}
    if len(zones) == 1:
        await remember(state, Flow.value, {**data, "zone": zones[0]})
        last = await account_views.last_values(tg.db.reader, meter)
        previous = _previous_line(tg, zones[0], zones, last)
        await tg.say(chat_id, texts.ONE_VALUE.format(account=account, meter=meter, previous=previous))
        return
    await remember(state, Flow.zones, data)
    await _zone_menu(tg, chat_id, data)


async def _zone_menu(tg: TelegramChannel, chat_id: int, data: dict[str, Any]) -> None:
    zones = tuple(data["zones"])
    values: dict[str, str] = data["values"]
    last = await account_views.last_values(tg.db.reader, data["meter"])
    previous = "\n".join(_previous_line(tg, z, zones, last) for z in zones)
    ask = texts.ALL_ZONES_FILLED if all(z in values for z in zones) else texts.CHOOSE_ZONE
    await tg.say(
        chat_id,
        texts.ZONE_MENU.format(account=data["account"], meter=data["meter"], previous=previous, ask=ask),
        texts.zones_keyboard(zones, values),
    )


async def history(tg: TelegramChannel, chat_id: int) -> None:
    linked = await tg.linked(chat_id)
    if not linked:
        await tg.say(chat_id, texts.LINK_PROMPT)
        return
    parts = []
    for account in linked:
        rows = await account_views.last_readings(tg.db.reader, account, tg.settings.history_limit)
        if not rows:
            parts.append(texts.NO_HISTORY.format(account=account))
            continue
        lines = [texts.HISTORY_HEAD.format(account=account)]
        for view in rows:
            zones = tuple(view.values)
            values = ", ".join(
                num(v) if z == "T" else f"{texts.zone_label(z, zones)} {num(v)}"
                for z, v in view.values.items()
            )
            status = texts.HISTORY_STATUS.get(view.status.value, view.status.value)
            if view.status is Status.ACCEPTED:
                status += (
                    texts.IN_BILLING_SINCE.format(day=texts.day(view.committed_at, tg.tz))
                    if view.committed_at is not None
                    else texts.NOT_IN_BILLING_YET
                )
            elif view.status is Status.REJECTED and view.reasons:
                why = next((r for r in view.reasons if r.severity is Severity.REJECT), view.reasons[-1])
                status += f": {why.message_ru}"
            taken = view.taken_at or view.received_at
            lines.append(
                texts.HISTORY_LINE.format(
                    day=texts.day(taken, tg.tz),
                    meter=view.meter_serial,
                    values=values,
                    status=status,
                    receipt=view.receipt,
                )
            )
        parts.append("\n".join(lines))
    await tg.say(chat_id, "\n\n".join(parts))


async def _owned(tg: TelegramChannel, chat_id: int, receipt: int) -> tuple[str, str, tuple[str, ...]] | None:
    """Account, meter and zones of a stored reading, if it belongs to an account linked to the chat."""
    for account in await tg.linked(chat_id):
        view = await account_views.receipt(tg.db.reader, receipt, account=account)
        if view is not None and view.meter_serial is not None:
            meters = await accounts.meters_of_account(tg.db.reader, account) or []
            zones = next((m.zones for m in meters if m.serial == view.meter_serial), tuple(view.values))
            return account, view.meter_serial, zones
    return None


async def _confirm_held(
    tg: TelegramChannel, chat_id: int, receipt: int, state: FSMContext, edit: tuple[int, int] | None
) -> str:
    """The resident vouches for a value that needed confirmation; returns the callback answer."""
    owner = await _owned(tg, chat_id, receipt)
    if owner is None:
        return texts.NOT_FOUND_ANSWER
    try:
        verdict = await held.confirm(
            tg.engine, tg.config, receipt, f"telegram:{chat_ref(chat_id)}", tg.clock(), account=owner[0]
        )
    except held.NotHeld:
        return texts.NOT_FOUND_ANSWER
    await remember(state, None, {})
    text = texts.render_verdict(verdict, tg.tz)
    if edit is not None:
        await tg.edit(edit[0], edit[1], text)
    else:
        await tg.say(chat_id, text)
    return texts.CONFIRMED_ANSWER if verdict.status is Status.ACCEPTED else texts.NOT_ACCEPTED_ANSWER


async def _correct_held(
    tg: TelegramChannel, chat_id: int, receipt: int, state: FSMContext, edit: tuple[int, int, str] | None
) -> str:
    owner = await _owned(tg, chat_id, receipt)
    if owner is None:
        return texts.NOT_FOUND_ANSWER
    if edit is not None:
        await tg.edit(edit[0], edit[1], edit[2] + texts.CORRECTION)
    await _start_values(tg, chat_id, *owner, state)
    return texts.CORRECT_ANSWER


def _edit_target(query: CallbackQuery) -> tuple[int, int, str] | None:
    message = query.message
    if isinstance(message, Message):
        return message.chat.id, message.message_id, message.text or ""
    return None


# -- handlers: messages ---------------------------------------------------------------------------


def _reading_of(data: dict[str, Any]) -> ParsedReading | ParseFailure:
    """The text's parse as `on_text` made it, or as the conversation's state kept it (JSON)."""
    kept = data["reading"]
    if isinstance(kept, ParsedReading | ParseFailure):
        return kept
    if "code" in kept:
        return ParseFailure(kept["code"], kept["message_ru"], kept["message_en"])
    return ParsedReading.from_data(kept)


async def on_value(
    message: Message, state: FSMContext, tg: TelegramChannel, event_update: Update, raw_update: str
) -> None:
    data = await state.get_data()
    parsed = parse_message(message.text or "", tg.formats)
    if isinstance(parsed, TextCommand):
        await text_command(tg, message.chat.id, parsed, state)
        return
    if isinstance(parsed, ParseFailure):
        await tg.say(message.chat.id, texts.BAD_VALUE.format(reason=parsed.message_ru))
        return
    zone = str(data["zone"])
    if (
        parsed.account
        or parsed.meter_serial
        or len(parsed.values) != 1
        or parsed.values[0][0] not in (None, zone)
    ):
        await tg.say(message.chat.id, texts.ONE_NUMBER)
        return
    entered = {**data["values"], zone: parsed.values[0][1]}
    values = {z: entered[z] for z in data["zones"] if z in entered}
    data = {**data, "values": values}
    zones = tuple(data["zones"])
    if len(zones) == 1:
        verdict = await tg.submit(
            message.chat.id,
            event_update.update_id,
            raw_update,
            str(data["account"]),
            values=values,
            meter=str(data["meter"]),
        )
        await tg.answer_verdict(message.chat.id, verdict, state)
        return
    await remember(state, Flow.zones, data)
    await _zone_menu(tg, message.chat.id, data)


async def on_text(
    message: Message, state: FSMContext, tg: TelegramChannel, event_update: Update, raw_update: str
) -> None:
    await _text_reading(tg, message.chat.id, message.text or "", state, event_update, raw_update, None)


async def on_photo(
    message: Message, state: FSMContext, tg: TelegramChannel, event_update: Update, raw_update: str
) -> None:
    """A photo of the meter: its caption is the reading, the photo is kept with it."""
    caption = (message.caption or "").strip()
    photo = photos.chosen(message, tg.config.photos.max_bytes)
    if not caption or photo is None:
        await tg.say(message.chat.id, texts.PHOTO_NEEDS_READING)
        return
    await _text_reading(tg, message.chat.id, caption, state, event_update, raw_update, photo)


async def _text_reading(
    tg: TelegramChannel,
    chat_id: int,
    text: str,
    state: FSMContext,
    event_update: Update,
    raw_update: str,
    photo: dict[str, Any] | None,
) -> None:
    """A message's text (or a photo's caption) read once: a command, or a reading to submit."""
    parsed = parse_message(text, tg.formats)
    if isinstance(parsed, TextCommand):
        await text_command(tg, chat_id, parsed, state)
        return
    if text.startswith("/"):  # a command this bot does not have
        await tg.say(chat_id, texts.HELP)
        return
    linked = await tg.linked(chat_id)
    if not linked:
        await tg.say(chat_id, texts.LINK_PROMPT)
        return
    data: dict[str, Any] = {
        "purpose": "text",
        "text": text,
        "update_id": event_update.update_id,
        "raw": raw_update,
        "has_meter": isinstance(parsed, ParsedReading) and any(r.meter_serial for r in parsed.readings()),
        "reading": parsed,  # orjson writes it into the conversation's state as an object
        "photo": photo,  # its file id: kept with the reading once it is submitted
    }
    if isinstance(parsed, ParseFailure):
        # The core explains what it did not understand, like any other verdict.
        await _submit_text(tg, chat_id, state, {**data, "account": linked[0]}, None)
        return
    if parsed.account is not None:
        if parsed.account not in linked:
            await tg.say(chat_id, texts.NOT_LINKED_HERE.format(account=parsed.account))
            return
        await _after_account(tg, chat_id, parsed.account, state, data, event_update)
        return
    if len(linked) > 1:
        await _choose_account(tg, chat_id, linked, state, data)
        return
    await _after_account(tg, chat_id, linked[0], state, data, event_update)


# -- handlers: buttons ----------------------------------------------------------------------------


async def on_menu(query: CallbackQuery, state: FSMContext, tg: TelegramChannel, event_update: Update) -> None:
    await tg.answer(query)
    chat_id = tg.chat_id(query)
    if query.data == "menu:read":
        await begin_guided(tg, chat_id, state, event_update)
    elif query.data == "menu:hist":
        await history(tg, chat_id)
    else:
        await linking.start_link(tg, chat_id, state, first=False)


async def on_pick_account(
    query: CallbackQuery, state: FSMContext, tg: TelegramChannel, event_update: Update
) -> None:
    chat_id = tg.chat_id(query)
    account = (query.data or "")[2:]
    if account not in await tg.linked(chat_id):
        await tg.answer(query, texts.NOT_LINKED_ANSWER, show_alert=True)
        return
    await tg.answer(query)
    await _after_account(tg, chat_id, account, state, await state.get_data(), event_update)


async def on_pick_meter(query: CallbackQuery, state: FSMContext, tg: TelegramChannel) -> None:
    chat_id = tg.chat_id(query)
    serial = (query.data or "")[2:]
    data = await state.get_data()
    account = str(data.get("account"))
    meters = {m.serial: m for m in await accounts.meters_of_account(tg.db.reader, account) or []}
    if serial not in meters or account not in await tg.linked(chat_id):
        await tg.answer(query, texts.STALE_BUTTON, show_alert=True)
        return
    await tg.answer(query)
    if data.get("purpose") == "text":
        await _submit_text(tg, chat_id, state, data, serial)
        return
    await _start_values(tg, chat_id, account, serial, meters[serial].zones, state)


async def on_pick_zone(query: CallbackQuery, state: FSMContext, tg: TelegramChannel) -> None:
    chat_id = tg.chat_id(query)
    zone = (query.data or "")[2:]
    data = await state.get_data()
    zones = tuple(data.get("zones") or ())
    if zone not in zones:
        await tg.answer(query, texts.STALE_BUTTON, show_alert=True)
        return
    await tg.answer(query)
    await remember(state, Flow.value, {**data, "zone": zone})
    last = await account_views.last_values(tg.db.reader, str(data["meter"]))
    await tg.say(chat_id, texts.ZONE_VALUE.format(previous=_previous_line(tg, zone, zones, last)))


async def on_send(
    query: CallbackQuery, state: FSMContext, tg: TelegramChannel, event_update: Update, raw_update: str
) -> None:
    chat_id = tg.chat_id(query)
    data = await state.get_data()
    values: dict[str, str] = data.get("values") or {}
    if not all(z in values for z in data.get("zones") or ()):
        await tg.answer(query, texts.FILL_ALL_ZONES, show_alert=True)
        return
    await tg.answer(query)
    verdict = await tg.submit(
        chat_id,
        event_update.update_id,
        raw_update,
        str(data["account"]),
        values=values,
        meter=str(data["meter"]),
    )
    await tg.answer_verdict(chat_id, verdict, state)


async def on_confirm(query: CallbackQuery, state: FSMContext, tg: TelegramChannel) -> None:
    target = _edit_target(query)
    answer = await _confirm_held(
        tg, tg.chat_id(query), int((query.data or "")[3:]), state, target[:2] if target else None
    )
    await tg.answer(query, answer)


async def on_correct(query: CallbackQuery, state: FSMContext, tg: TelegramChannel) -> None:
    answer = await _correct_held(
        tg, tg.chat_id(query), int((query.data or "")[3:]), state, _edit_target(query)
    )
    await tg.answer(query, answer)
