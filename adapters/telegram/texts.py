"""Every word the bot says and every keyboard it shows, in Russian; the handlers only choose.

Templates with `{...}` are filled with `str.format` by the handler that sends them. The callback
data of the buttons (`cf:`, `fx:`, `menu:`, `a:`, `m:`, `z:`, `ul:`, `send`, `cancel`) is what the
handlers in linking.py, readings.py and bot_commands.py are registered for.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from aiogram.types import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)

from gateway.grammar import ACCOUNT_DIGITS, HELP_RU
from gateway.model import Status, Verdict
from gateway.validation.explain import num, period_ru

# -- commands -----------------------------------------------------------------------------------

BOT_COMMANDS = [
    BotCommand(command="start", description="Начать, привязать л/с"),
    BotCommand(command="reading", description="Передать показания по шагам"),
    BotCommand(command="history", description="Последние показания и их статус"),
    BotCommand(command="link", description="Привязать ещё один л/с"),
    BotCommand(command="unlink", description="Отвязать л/с"),
    BotCommand(command="stop", description="Не присылать напоминания"),
    BotCommand(command="help", description="Как передать показания"),
]
HELP = (
    "Как передать показания:\n"
    "• сообщением: 12345 (однотарифный счётчик) или Т1 12345 Т2 6789 (день/ночь), "
    "с номером л/с: 1234567 12345;\n"
    "• по шагам: /reading — счётчик и зона выбираются кнопками, видно прежнее показание.\n"
    "/history — последние показания и их статус\n"
    "/link — привязать ещё один л/с, /unlink — отвязать\n"
    "/stop — не присылать напоминания, /remind — присылать\n"
    "/cancel — отменить ввод\n" + HELP_RU
)
CANCELLED = "Отменено."
CANCELLED_ANSWER = "Отменено"
STALE_BUTTON = "Кнопка устарела"
STALE_BUTTON_RESTART = "Кнопка устарела: начните заново (/reading)"
OTHER_MESSAGE = "Пришлите показание текстом, например 12345. Помощь: /help"
PHOTO_NEEDS_READING = (
    "Фото счётчика принимаем вместе с показанием: отправьте фото ещё раз и напишите показание "
    "в подписи к нему, например 12345."
)
PHOTO_KEPT = "📷 Фото счётчика сохранено вместе с показаниями."
GROUP_CHAT = "Показания принимаются только в личных сообщениях боту."

# -- linking ------------------------------------------------------------------------------------

_DIGITS = f"{ACCOUNT_DIGITS[0]}-{ACCOUNT_DIGITS[1]} цифр"  # the one account format (gateway/grammar.py)
LINK_PROMPT = "Чтобы передавать показания, привяжите лицевой счёт: нажмите /start."
ASK_ACCOUNT = f"Пришлите номер лицевого счёта ({_DIGITS}, он есть в квитанции).\nОтменить: /cancel"
NOT_AN_ACCOUNT = f"Номер л/с — это {_DIGITS} из квитанции. " + ASK_ACCOUNT
FIRST_LINK = "Здравствуйте! Это бот приёма показаний счётчиков электроэнергии.\n"
ANOTHER_LINK = "Привязка ещё одного лицевого счёта.\n"
ALREADY_LINKED = "Л/с {account} уже привязан к этому чату."
SHARE_BUTTON = "📱 Поделиться номером"
CODE_BUTTON = "✉️ Получить код по SMS"
ASK_FACTOR = (
    "Подтвердите, что это ваш л/с {account}: нажмите «Поделиться номером» (телефон должен быть тот, "
    "что указан в договоре)"
)
ASK_CODE = " или «Получить код по SMS»: код придёт на телефон, указанный в договоре"
ASK_DIGITS = ". Можно также прислать последние 4 цифры этого телефона"
OWN_CONTACT = "Нужен ваш собственный номер: нажмите кнопку «Поделиться номером»."
ASK_FACTOR_AGAIN = "Пришлите 6 цифр кода из SMS{digits}, или нажмите «Поделиться номером». Отменить: /cancel"
OR_DIGITS = " или 4 последние цифры телефона"
CODE_SENT = (
    "Если номер л/с указан верно и для него указан телефон, мы отправили на этот телефон SMS "
    "с кодом из 6 цифр. Пришлите код сюда, он действует {minutes} мин. Новый код можно получить "
    "не раньше чем через {resend} с. Отменить: /cancel"
)
# By SMS to the account's registered phones (or, in the demo, to the log), never to a chat.
LINK_CODE_SMS = (
    "Код для привязки Telegram к лицевому счёту: {code}. Действует {minutes} мин. "
    "Никому его не сообщайте, даже сотрудникам."
)
CODE_FAILED = (
    "Код не подходит: он неверный, устарел или уже использован. Проверьте его или получите новый: "
    "«Получить код по SMS». Отменить: /cancel"
)
FACTOR_MISMATCH = (
    "Не совпадает с телефоном, указанным для л/с {account}. Проверьте номер л/с и телефон "
    "и попробуйте снова, или /cancel."
)
TOO_MANY_TRIES = "Слишком много неудачных попыток. Попробуйте ещё раз {wait} или позвоните нам."
LINKED = "✅ Л/с {account} привязан к этому чату."
GREETING = (
    "Здравствуйте! К этому чату привязан{plural} л/с {accounts}.\n"
    "Пришлите показание сообщением, например 12345 (день/ночь: Т1 12345 Т2 6789), "
    "или нажмите «Передать показания»."
)
STRAY_CONTACT = "Чтобы привязать л/с, нажмите /link."
NOTHING_LINKED = "К этому чату не привязан ни один л/с."
WHICH_TO_UNLINK = "Какой л/с отвязать от этого чата?"
UNLINK_BUTTON = "Отвязать л/с {account}"
UNLINKED_ANSWER = "Отвязан"
ALREADY_UNLINKED_ANSWER = "Уже отвязан"
UNLINKED = "Л/с {account} отвязан от этого чата."

# -- readings -----------------------------------------------------------------------------------

NOT_LINKED_HERE = (
    "Л/с {account} не привязан к этому чату. Чтобы передавать по нему показания, привяжите его: /link"
)
NOT_LINKED_ANSWER = "Этот л/с не привязан к чату"
WHICH_ACCOUNT = "К чату привязано несколько л/с. Выберите, для какого эти показания:"
ACCOUNT_BUTTON = "Л/с {account}"
NO_METERS = "У л/с {account} нет действующих счётчиков. Позвоните нам."
WHICH_METER = "У л/с {account} несколько счётчиков. Выберите счётчик:"
METER_BUTTON = "Счётчик {serial}"
ONE_VALUE = (
    "Л/с {account}, счётчик {meter}.\n{previous}.\nВведите текущее показание, например 12345 или 12345,6:"
)
ZONE_VALUE = "{previous}.\nВведите показание:"
ZONE_MENU = "Л/с {account}, счётчик {meter}.\n{previous}\n{ask}"
ALL_ZONES_FILLED = "Все зоны заполнены: проверьте и нажмите «Отправить»."
CHOOSE_ZONE = "Выберите зону и введите её показание:"
FILL_ALL_ZONES = "Введите показания всех зон"
BAD_VALUE = "{reason}\nВведите одно число, например 12345,6:"
ONE_NUMBER = "Введите одно число — показание этой зоны, например 12345,6:"
NOTHING_HELD = "Нет показаний, ждущих подтверждения. Пришлите показание, например 12345."
NOT_FOUND_ANSWER = "Показания не найдены"
CONFIRMED_ANSWER = "Подтверждено"
NOT_ACCEPTED_ANSWER = "Не принято"
CORRECTION = "\n\n✏️ Исправление: введите показание заново."
CORRECT_ANSWER = "Введите показание заново"
NO_HISTORY = "Л/с {account}: показаний ещё нет."
HISTORY_HEAD = "Л/с {account}, последние показания:"
HISTORY_LINE = "{day} · {meter} · {values} кВт·ч — {status} (№ {receipt})"
IN_BILLING_SINCE = ", в расчёте с {day}"
NOT_IN_BILLING_YET = ", ещё не передано в расчёт"
STATUS_HEAD = {
    Status.ACCEPTED: "✅ Показания приняты",
    Status.FLAGGED: "🕓 Показания получены и переданы на проверку",
    Status.NEEDS_CONFIRMATION: "⚠️ Проверьте показания",
    Status.REJECTED: "❌ Показания не приняты",
}
HISTORY_STATUS = {
    Status.ACCEPTED.value: "принято",
    Status.FLAGGED.value: "на проверке",
    Status.NEEDS_CONFIRMATION.value: "ждёт вашего подтверждения",
    Status.REJECTED.value: "не принято",
}
ZONES_RU = {"T1": "Т1", "T2": "Т2", "T3": "Т3"}
TWO_RATE = {"T1": "Т1 (день)", "T2": "Т2 (ночь)"}
THREE_RATE = {"T1": "Т1 (пик)", "T2": "Т2 (ночь)", "T3": "Т3 (полупик)"}

# -- reminders ----------------------------------------------------------------------------------

REMINDERS_ON = "Напоминания о передаче показаний включены. Отключить: /stop"
REMINDERS_OFF = "Напоминания отключены. Включить снова: /remind. Отвязать л/с от чата: /unlink"
REMIND_LAST_DAY_TODAY = "Сегодня последний день приёма показаний за {period} (л/с {accounts})."
REMIND_LAST_DAY = "Показания за {period} (л/с {accounts}) принимаем только до {until}."
REMIND_DUE = "Пора передать показания за {period}: л/с {accounts}, приём до {until}."
REMIND_TAIL = "\nПришлите показание сообщением или нажмите /reading.\nНе напоминать: /stop"
# The held-readings job's reminder to confirm (sent with confirm_keyboard; gateway/held_job.py
# words the other notices).
CONFIRM_REMINDER = (
    "Напоминаем: показания {values} (л/с {account}) ждут вашего подтверждения. "
    "Если всё верно, нажмите «Подтвердить»; если ошиблись — «Исправить»."
)


def zone_label(zone: str, zones: tuple[str, ...] | list[str]) -> str:
    """'Т1 (день)' on a day/night meter, 'Т1 (пик)' on a three-rate one, 'Показание' on a single-rate."""
    if zone == "T":
        return "Показание"
    labels = THREE_RATE if "T3" in zones else TWO_RATE
    return labels.get(zone) or ZONES_RU.get(zone, zone)


def day(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%d.%m.%Y")


def previous_line(
    zone: str, zones: tuple[str, ...], value: Decimal | None, taken: datetime | None, tz: ZoneInfo
) -> str:
    """'Т1 (день): прежнее 12 345 от 01.03.2026', or that there is none."""
    label = zone_label(zone, zones)
    if value is None or taken is None:
        return f"{label}: прежних показаний нет"
    return f"{label}: прежнее {num(value)} от {day(taken, tz)}"


def greeting(linked: list[str]) -> str:
    return GREETING.format(plural="ы" if len(linked) > 1 else "", accounts=", ".join(linked))


def render_verdict(v: Verdict, tz: ZoneInfo) -> str:
    """The verdict as the resident reads it: what was understood, what was decided, and why."""
    head = STATUS_HEAD[v.status]
    if v.duplicate:
        head += " (эти показания уже были получены)"
    lines = [head]
    where = [
        p for p in (v.account and f"Л/с {v.account}", v.meter_serial and f"счётчик {v.meter_serial}") if p
    ]
    if where:
        lines.append(", ".join(where))
    zones = tuple(r.zone for r in v.readings)
    for r in sorted(v.readings, key=lambda r: r.zone):
        if r.value is not None:
            lines.append(f"{zone_label(r.zone, zones)}: {num(r.value)} кВт·ч")
    lines.extend(f"• {r.message_ru}" for r in v.reasons if r.message_ru)
    if v.status in (Status.ACCEPTED, Status.FLAGGED) and v.receipt is not None:
        tail = f"Квитанция № {v.receipt}"
        if v.period:
            tail += f", учтём за {period_ru(v.period)} {v.period[:4]} г."
        lines.append(tail)
    elif v.status is Status.NEEDS_CONFIRMATION:
        lines.append("Если всё верно, нажмите «Подтвердить»; если ошиблись — «Исправить».")
    elif v.status is Status.REJECTED:
        lines.append("Проверьте и пришлите снова. Помощь: /help")
    return "\n".join(lines)


# -- keyboards ----------------------------------------------------------------------------------


def confirm_keyboard(receipt: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text="Подтвердить", callback_data=f"cf:{receipt}"),
                InlineKeyboardButton(text="Исправить", callback_data=f"fx:{receipt}"),
            ]
        ]
    )


def menu_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text="📝 Передать показания", callback_data="menu:read"),
                InlineKeyboardButton(text="📜 История", callback_data="menu:hist"),
            ],
            [InlineKeyboardButton(text="➕ Привязать ещё л/с", callback_data="menu:link")],
        ]
    )


def choice_keyboard(items: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    rows = [[InlineKeyboardButton(text=text, callback_data=data)] for text, data in items]
    rows.append([InlineKeyboardButton(text="Отмена", callback_data="cancel")])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def factor_keyboard(with_code: bool) -> ReplyKeyboardMarkup:
    """The second factor: the chat's own contact, and a code by SMS when codes can be sent."""
    row = [KeyboardButton(text=SHARE_BUTTON, request_contact=True)]
    if with_code:
        row.append(KeyboardButton(text=CODE_BUTTON))
    return ReplyKeyboardMarkup(keyboard=[row], resize_keyboard=True, one_time_keyboard=True)


def zones_keyboard(zones: tuple[str, ...], values: dict[str, str]) -> InlineKeyboardMarkup:
    """A button per zone with the value entered so far, "Отправить" once every zone has one."""
    rows = []
    for zone in zones:
        shown = f"{num(Decimal(values[zone]))} ✓" if zone in values else "—"
        rows.append(
            [InlineKeyboardButton(text=f"{zone_label(zone, zones)}: {shown}", callback_data=f"z:{zone}")]
        )
    if all(z in values for z in zones):
        rows.append([InlineKeyboardButton(text="✅ Отправить", callback_data="send")])
    rows.append([InlineKeyboardButton(text="Отмена", callback_data="cancel")])
    return InlineKeyboardMarkup(inline_keyboard=rows)
