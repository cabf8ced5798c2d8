"""Branches (gateway/branches.py): two branches with their own window, regional holiday and zone
give the same day's readings different periods, due times, reminders and closing times, on a real
gateway on both databases; the SLA view and /metrics tell them apart; the configuration and the
registry refuse what is not a branch."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path

import aiohttp
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.sms.kannel import KannelSendsms
from gateway.branches import Branches
from gateway.config import Config, ConfigError, load_config
from gateway.held_job import held_job
from gateway.model import Channel, Status, Submission
from gateway.notify import DueReminder
from gateway.registry import parse_rows
from gateway.reminders import ReminderJob
from gateway.service import Gateway
from tests.conftest import BILLING_TOKEN, DEVICE_TOKEN, REGISTRY_CSV, FakeClock, Running

# Branch "ekb": Yekaterinburg time (UTC+5), readings from the 10th to the 19th, and a regional
# holiday on Monday 23 November 2026. The default branch ([calendar]): Moscow, 15th to 25th.
EKB_REGISTRY = "2000001,E-1,Меркурий 201,T,6,+79120000001,10,Екатеринбург ул. Мира 1,,,ekb\n"
STRANGER = "+79990000000"  # registered for no account


def _registry() -> str:
    header, *rows = REGISTRY_CSV.splitlines()
    return "\n".join([header + ",active,timezone,branch", *(r + ",,," for r in rows)]) + "\n" + EKB_REGISTRY


def _config(db_url: str, tmp_path: Path) -> Config:
    (tmp_path / "registry.csv").write_text(_registry(), encoding="utf-8")
    (tmp_path / "ekb-holidays.toml").write_text('holidays = ["2026-11-23"]\n', encoding="utf-8")
    ekb = {
        "name": "Свердловский филиал",
        "timezone": "Asia/Yekaterinburg",
        "window_start_day": 10,
        "cutoff_day": 20,
        "holidays_override": str(tmp_path / "ekb-holidays.toml"),
        "contacts": "тел. 8-343-000-00-00",
    }
    return load_config(
        None,
        {
            "GATEWAY_DATABASE_URL": db_url,
            "GATEWAY_HTTP_PORT": "0",
            "GATEWAY_REGISTRY_CSV": str(tmp_path / "registry.csv"),
            "GATEWAY_BILLING_TOKENS": f'["{BILLING_TOKEN}"]',
            "GATEWAY_DEVICES_TOKENS": f'["{DEVICE_TOKEN}"]',
            "GATEWAY_BRANCHES_EKB": orjson.dumps(ekb).decode(),
            "GATEWAY_SENDERS_UNVERIFIED": "hold",  # a stranger's reading is held for the back office
        },
    )


@pytest.fixture
async def two_branches(db_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    clock = FakeClock(datetime(2026, 11, 20, 10, 0, tzinfo=UTC))  # Friday: 13:00 Moscow, 15:00 Ekb
    gateway = Gateway(_config(db_url, tmp_path), clock=clock)
    await gateway.start()
    async with aiohttp.ClientSession() as http:
        yield Running(gateway, f"http://127.0.0.1:{gateway.port}", http, clock)
    await gateway.stop()


async def test_the_same_day_counts_for_different_periods_and_is_due_at_different_times(
    two_branches: Running,
) -> None:
    w = two_branches
    moscow, ekb = await w.push(
        {"id": "d-1", "meter": "M-1", "value": "100"}, {"id": "d-2", "meter": "E-1", "value": "100"}
    )
    assert moscow["status"] == ekb["status"] == "accepted"
    # The 20th is inside Moscow's window (to the 25th), and Ekaterinburg's cut-off day.
    assert moscow["period"] == "2026-11" and not moscow["reasons"]
    assert ekb["period"] == "2026-12"
    assert [(r["code"], r["message_ru"]) for r in ekb["reasons"]] == [
        ("next_period", "Учтём в декабре: приём до 19-го")
    ]

    status, view = await w.get("/api/v1/billing/sla", token=BILLING_TOKEN)
    assert status == 200 and isinstance(view, dict)
    due = {r["meter_serial"]: (r["branch"], r["due_at"]) for r in view["readings"]}
    # Received on Friday: due at the end of the next working day in each branch's own calendar,
    # Monday in Moscow; Tuesday in Ekaterinburg, whose Monday is a regional holiday.
    assert due == {
        "M-1": ("default", "2026-11-23T21:00:00+00:00"),  # midnight starting Tue 24 Nov, Moscow
        "E-1": ("ekb", "2026-11-24T19:00:00+00:00"),  # midnight starting Wed 25 Nov, Yekaterinburg
    }
    assert view["pending"] == 2
    branches = view["branches"]
    assert set(branches) == {"default", "ekb"} and branches["ekb"]["name"] == "Свердловский филиал"
    assert branches["default"]["next_due_at"] == "2026-11-23T21:00:00+00:00"
    assert branches["ekb"]["next_due_at"] == "2026-11-24T19:00:00+00:00"
    assert branches["default"]["pending"] == branches["ekb"]["pending"] == 1

    status, one = await w.get("/api/v1/billing/sla?branch=ekb", token=BILLING_TOKEN)
    assert status == 200 and isinstance(one, dict)
    assert one["branch"] == "ekb" and one["pending"] == 1
    assert [r["meter_serial"] for r in one["readings"]] == ["E-1"]
    status, refused = await w.get("/api/v1/billing/sla?branch=nsk", token=BILLING_TOKEN)
    assert status == 400 and isinstance(refused, dict)
    assert refused["error"]["code"] == "unknown_branch" and "default, ekb" in refused["error"]["message"]

    status, text = await w.get("/metrics")
    assert status == 200 and isinstance(text, str)
    assert 'gateway_billing_backlog{branch="default"} 1.0' in text
    assert 'gateway_billing_backlog{branch="ekb"} 1.0' in text
    until = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^gateway_billing_next_due_seconds\{branch="(\w+)"\} (\S+)$', text, re.M)
    }
    assert until == {"default": 3 * 86400 + 11 * 3600, "ekb": 4 * 86400 + 9 * 3600}


class Recorder:
    """The SMS door's words for reminders, recorded instead of sent."""

    channel = "sms"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.inner = KannelSendsms(Config().sms)

    async def contacts(self, engine: AsyncEngine, accounts: Mapping[int, str]) -> dict[str, list[int]]:
        return await self.inner.contacts(engine, accounts)

    def text(self, due: DueReminder, account_numbers: list[str]) -> str:
        return self.inner.text(due, account_numbers)

    async def send(self, recipient: str, text: str) -> None:
        self.sent.append((recipient, text))

    async def close(self) -> None:
        pass


async def test_reminders_and_held_readings_follow_the_branch(two_branches: Running) -> None:
    w = two_branches
    gw = w.gateway
    sms = Recorder()
    reminders = ReminderJob(gw.engine, gw.config, gw.calendar, w.clock, [sms], branches=gw.branches)
    # Tuesday 10 November, 12:00 Moscow, 14:00 Ekaterinburg: Ekaterinburg's window opens today,
    # Moscow's on the 15th.
    w.clock.now = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
    assert await reminders.run_once() == 1
    [(phone, text)] = sms.sent
    assert phone == "+79120000001"
    assert "л/с 2000001 до 19.11" in text and "тел. 8-343-000-00-00" in text

    # Readings of strangers, held for the back office in both branches on the 18th...
    w.clock.now = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
    held = [
        await gw.intake.submit(
            Submission(Channel.SMS, w.clock(), STRANGER, values={"T": "50"}, account=number)
        )
        for number in ("1000001", "2000001")
    ]
    assert [v.status for v in held] == [Status.FLAGGED, Status.FLAGGED]
    # ... Ekaterinburg's period closed at midnight starting its cut-off day (19:00 UTC on the 19th),
    # Moscow's is open until the 26th: only the Ekaterinburg one expires.
    job = held_job(gw)
    w.clock.now = datetime(2026, 11, 19, 18, 59, tzinfo=UTC)
    assert (await job.run_once())["expired"] == 0
    w.clock.now = datetime(2026, 11, 19, 19, 0, tzinfo=UTC)
    assert (await job.run_once())["expired"] == 1
    status, view = await w.get("/api/v1/billing/sla", token=BILLING_TOKEN)
    assert isinstance(view, dict)
    assert [(r["account"], r["state"]) for r in view["readings"]] == [("1000001", "flagged")]
    assert view["branches"]["ekb"]["held"] == {"flagged": 0, "needs_confirmation": 0}


def test_a_branch_takes_what_it_leaves_out_from_the_calendar(tmp_path: Path) -> None:
    config = _config("sqlite+aiosqlite://", tmp_path)
    branches = Branches(config)
    default, ekb = branches.of(None), branches.of("ekb")
    assert branches.of("removed-since") is default  # an account of a branch no longer configured
    assert (default.window_start_day, default.cutoff_day, default.contacts) == (15, 26, "")
    assert (ekb.window_start_day, ekb.cutoff_day) == (10, 20)
    assert ekb.window("2026-11") == (date(2026, 11, 10), date(2026, 11, 19))
    assert not ekb.calendar.is_working_day(date(2026, 11, 23)) and default.calendar.is_working_day(
        date(2026, 11, 23)
    )
    only_zone = load_config(None, {"GATEWAY_BRANCHES_KHV": '{"timezone": "Asia/Vladivostok"}'})
    khv = Branches(only_zone).of("khv")
    assert (khv.name, khv.window_start_day, khv.cutoff_day) == ("khv", 15, 26)
    assert khv.calendar.timezone.key == "Asia/Vladivostok"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[branches.ekb]\ncutoff_day = 12\n",
            "branches.ekb: window_start_day (15) must be before cutoff_day (12)",
        ),
        ("[branches.ekb]\ncutof_day = 12\n", "branches.ekb.cutof_day: unknown key"),
        ("[branches.ekb]\ntimezone = 'Asia/Ekaterinburg'\n", "branches.ekb.timezone: unknown time zone"),
        ("[branches.default]\ncutoff_day = 20\n", "not 'default'"),
        ("[branches.Ekb]\ncutoff_day = 20\n", "branch id 'Ekb'"),
    ],
)
def test_the_configuration_names_what_is_wrong_with_a_branch(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path, {})


def test_the_registry_names_a_branch_that_is_not_configured() -> None:
    text = _registry() + "3000001,N-1,Нева 103,T,6,,10,Новосибирск,,,nsk\n"
    rows, refused = parse_rows(text, branches=("ekb",))
    assert {r.serial: r.branch for r in rows if r.serial in ("M-1", "E-1")} == {"M-1": None, "E-1": "ekb"}
    [(line, why)] = refused
    assert line == 10 and why == "branch 'nsk' is not configured ([branches.<id>]: ekb)"
    # "default" names the accounts of [calendar] as an empty cell does.
    rows, refused = parse_rows(_registry().replace(",,ekb\n", ",,default\n"), branches=())
    assert not refused and {r.branch for r in rows} == {None}
