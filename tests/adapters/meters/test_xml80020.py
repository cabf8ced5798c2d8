"""XML 80020 files from head-end systems: mapped channels stored as interval energy of their meter
and zone, bad values and channels refused alone and reported, a repeated file changing nothing and
saying so, a changed value kept out as a conflict; by the command and by the watched folder."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.meters.tables import meter_intervals
from adapters.meters.xml80020.config import Xml80020Config
from adapters.meters.xml80020.importing import import_file
from adapters.meters.xml80020.message import FileProblem, parse
from gateway.cli import main
from gateway.registry import import_registry
from tests.adapters.meters.rig import until
from tests.conftest import FakeClock, make_config

CONFIG = Xml80020Config.model_validate(
    {
        "channels": [
            {"point": "131150001113003", "channel": "01", "meter": "M-1", "zone": "T"},
            {"point": "131150001113004", "channel": "01", "meter": "M-2", "zone": "T3"},  # M-2 has T1;T2
            {"point": "131150001113005", "channel": "01", "meter": "NO-SUCH", "zone": "T"},
            {"point": "131150001113006", "channel": "1", "meter": "M-2", "zone": "T1"},
        ]
    }
)


def half_hours(first: int = 100) -> list[tuple[str, str, str]]:
    out = []
    for i in range(48):
        start, end = i * 30, (i + 1) * 30 % 1440
        # kWh of a half hour, within what the registry's 10 kW meters can count (5 kWh, 1 of slack)
        kwh = f"{(first + i) / 100:.2f}"
        out.append((f"{start // 60:02d}{start % 60:02d}", f"{end // 60:02d}{end % 60:02d}", kwh))
    return out


def message(points: dict[str, dict[str, list[tuple[str, str, str]]]], number: str = "1056") -> bytes:
    """An 80020 file as head-end systems write it: windows-1251, one area."""
    body = []
    for code, channels in points.items():
        body.append(f'<measuringpoint code="{code}" name="Ввод {code[-1]}">')
        for ch, periods in channels.items():
            body.append(f'<measuringchannel code="{ch}" desc="активная энергия, приём">')
            for start, end, value in periods:
                body.append(f'<period start="{start}" end="{end}"><value status="0">{value}</value></period>')
            body.append("</measuringchannel>")
        body.append("</measuringpoint>")
    text = (
        '<?xml version="1.0" encoding="windows-1251"?>\n'
        f'<message class="80020" version="2" number="{number}">'
        "<datetime><timestamp>20261117040922</timestamp><daylightsavingtime>0</daylightsavingtime>"
        "<day>20261116</day></datetime>"
        '<sender><inn>5257072937</inn><name>ООО "Энергоучёт"</name></sender>'
        "<area><inn>1328903069</inn><name>АО Завод</name>" + "".join(body) + "</area></message>"
    )
    return text.encode("cp1251")


def good_and_bad() -> bytes:
    bad = half_hours(200)
    bad[3] = (bad[3][0], bad[3][1], "abc")  # no number
    bad[4] = (bad[4][0], bad[4][1], "-5")  # negative
    bad[5] = ("2500", "2530", "1")  # no such time
    bad[6] = (bad[6][0], bad[6][1], "6.5")  # more than a 10 kW meter counts in half an hour
    bad.append(bad[0])  # a period twice
    return message(
        {
            "131150001113003": {"01": half_hours(), "02": half_hours(7)},  # 02 (export) is not mapped
            "131150001113004": {"01": half_hours()},
            "131150001113005": {"01": half_hours()},
            "131150001113006": {"01": bad},
        }
    )


async def stored(engine: AsyncEngine, serial: str) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                meter_intervals.c.zone,
                meter_intervals.c.start_at,
                meter_intervals.c.at,
                meter_intervals.c.value,
            )
            .where(meter_intervals.c.meter_serial == serial, meter_intervals.c.kind == "energy")
            .order_by(meter_intervals.c.at)
        )
        return [(r.zone, r.start_at.astimezone(UTC), r.at.astimezone(UTC), r.value) for r in rows]


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(meter_intervals))).scalar_one())


async def test_good_bad_and_repeated_channels(
    engine: AsyncEngine, db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    await import_registry(engine, make_config(db_url, tmp_path).registry.csv or "")
    path = tmp_path / "80020_5257072937_20261116_1056.xml"
    path.write_bytes(good_and_bad())
    report = await import_file(
        engine, CONFIG, path, via="cli", clock=clock, default_max_power_kw=Decimal("15")
    )
    text = report.text()
    assert report.error is None and report.import_id == 1
    assert "class 80020 number 1056 of 2026-11-16 from 5257072937" in text
    assert "point 131150001113003 channel 01 -> meter M-1 zone T: 48 values: 48 stored" in text
    assert "point 131150001113003 channel 02: not mapped (48 values skipped)" in text
    assert "meter M-2 has zones T1;T2, not T3" in text and "meter NO-SUCH is not in the registry" in text
    assert (
        "point 131150001113006 channel 01 -> meter M-2 zone T1: 49 values: "
        "1 bad_period, 2 bad_value, 1 duplicate_period, 1 impossible, 44 stored"
    ) in text
    assert "period 0300-0330: 6.5 kWh in 30 min is more than the 6.0 kWh possible at 10 kW" in text
    assert "'abc' is no number" in text and "-5 kWh is out of range" in text
    assert "total: 241 values: 92 stored, 0 unchanged, 0 conflicts, 101 refused, 48 not mapped" in text
    rows = await stored(engine, "M-1")
    assert len(rows) == 48
    # the file's times are Moscow time (UTC+3): the day's first half hour ends at 21:30 UTC the day before
    assert rows[0] == (
        "T",
        datetime(2026, 11, 15, 21, 0, tzinfo=UTC),
        datetime(2026, 11, 15, 21, 30, tzinfo=UTC),
        "1.00",
    )
    assert rows[-1][1:] == (
        datetime(2026, 11, 16, 20, 30, tzinfo=UTC),
        datetime(2026, 11, 16, 21, 0, tzinfo=UTC),
        "1.47",
    )
    assert await count(engine) == 92

    clock.advance(hours=1)
    again = await import_file(
        engine, CONFIG, path, via="folder", clock=clock, default_max_power_kw=Decimal("15")
    )
    assert again.import_id == 2 and await count(engine) == 92
    assert "this file was imported before (import 1 on 2026-11-17 09:00 UTC)" in again.text()
    assert "48 unchanged" in again.text() and again.text().endswith("nothing changed\n")

    # another file correcting one value: the stored value stays, the difference is reported
    changed = half_hours()
    changed[0] = ("0000", "0030", "1.11")
    other = tmp_path / "80020_5257072937_20261116_1057.xml"
    other.write_bytes(message({"131150001113003": {"01": changed}}, number="1057"))
    third = await import_file(
        engine, CONFIG, other, via="cli", clock=clock, default_max_power_kw=Decimal("15")
    )
    assert "47 unchanged, 1 conflict" in third.text()
    assert "period 0000-0030: 1.11 differs from the stored 1.00; kept 1.00" in third.text()
    assert (await stored(engine, "M-1"))[0][3] == "1.00"


def test_files_that_are_no_80020_message_are_refused_whole() -> None:
    with pytest.raises(FileProblem, match="not an XML file"):
        parse(b"\xff\xfe garbage")
    with pytest.raises(FileProblem, match="not an XML file"):  # entities are never expanded
        parse(
            b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><message>&x;</message>'
        )
    with pytest.raises(FileProblem, match="not an XML 80020 or 80040 message"):
        parse(b'<message class="51070"/>')
    with pytest.raises(FileProblem, match="no date"):
        parse(b'<message class="80020"><datetime><day>2026-11-16</day></datetime></message>')
    assert (
        parse(message({"1": {"01": half_hours()[:2]}}).replace(b'"80020"', b'"80040"')).message_class
        == "80040"
    )


async def test_the_command_imports_and_reports(
    engine: AsyncEngine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    await import_registry(engine, make_config(db_url, tmp_path).registry.csv or "")
    conf = tmp_path / "gateway.toml"
    conf.write_text(
        '[[xml80020.channels]]\npoint = "131150001113003"\nchannel = "01"\nmeter = "M-1"\nzone = "T"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("GATEWAY_DATABASE_URL", db_url)
    path = tmp_path / "day.xml"
    path.write_bytes(message({"131150001113003": {"01": half_hours(), "02": half_hours()}}))
    report = tmp_path / "day.report.txt"
    code = await asyncio.to_thread(
        main, ["--config", str(conf), "import", "80020", str(path), "--report", str(report)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert (
        "48 values: 48 stored" in out and "48 not mapped" in out and report.read_text(encoding="utf-8") == out
    )
    garbage = tmp_path / "bad.xml"
    garbage.write_bytes(b"<html>")
    assert await asyncio.to_thread(main, ["--config", str(conf), "import", "80020", str(garbage)]) == 2
    assert "refused whole: not an XML file" in capsys.readouterr().out


async def test_the_watched_folder_imports_and_files_away(db_url: str, tmp_path: Path) -> None:
    from gateway.service import Gateway
    from tests.adapters.meters.test_service import RealClock

    drop = tmp_path / "in"
    config = make_config(
        db_url,
        tmp_path,
        xml80020={"channels": CONFIG.channels, "watch_dir": str(drop), "poll_seconds": 0.05},
    )
    gateway = Gateway(config, clock=RealClock())
    await gateway.start()
    try:
        await until(drop.is_dir)
        # A link to a file elsewhere is neither read nor moved away (as in the partners' folders).
        elsewhere = tmp_path / "elsewhere.xml"
        elsewhere.write_bytes(message({"131150001113003": {"01": half_hours()}}))
        (drop / "link.xml").symlink_to(elsewhere)
        (drop / "day.xml").write_bytes(message({"131150001113003": {"01": half_hours()}}))
        (drop / "broken.xml").write_bytes(b"<message")
        await until(lambda: (drop / "done" / "day.xml.report.txt").exists(), within=10)
        await until(lambda: (drop / "failed" / "broken.xml.report.txt").exists(), within=10)
        assert "48 values: 48 stored" in (drop / "done" / "day.xml.report.txt").read_text(encoding="utf-8")
        assert (drop / "done" / "day.xml").exists() and not (drop / "day.xml").exists()
        assert "refused whole" in (drop / "failed" / "broken.xml.report.txt").read_text(encoding="utf-8")
        assert (drop / "link.xml").is_symlink() and elsewhere.exists()
        assert not (drop / "done" / "link.xml").exists() and not (drop / "failed" / "link.xml").exists()
        assert len(await stored(gateway.engine, "M-1")) == 48
        health = gateway.health_probes["xml80020"]()
        assert (health["imported"], health["failed"], health["status"]) == (1, 1, "ok")
        # the same file dropped again: imported, nothing changes, filed under another name
        (drop / "day.xml").write_bytes(message({"131150001113003": {"01": half_hours()}}))
        await until(lambda: gateway.health_probes["xml80020"]()["imported"] == 2, within=10)
        report = next((drop / "done").glob("*-day.xml.report.txt")).read_text(encoding="utf-8")
        assert "imported before" in report and "nothing changed" in report
    finally:
        await gateway.stop()


async def test_the_demo_sample_goes_to_sim_0005(
    engine: AsyncEngine, db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    from adapters.meters.xml80020.demo import demo_config, sample_message
    from tests.adapters.meters.test_service import DEMO_REGISTRY

    await import_registry(engine, str(DEMO_REGISTRY))
    demo = demo_config(make_config(db_url, tmp_path)).overrides["xml80020"]
    path = tmp_path / "80020-sample.xml"
    path.write_bytes(sample_message("20261116"))
    text = (
        await import_file(engine, demo, path, via="folder", clock=clock, default_max_power_kw=Decimal("15"))
    ).text()
    assert "point 000000000000005 channel 01 -> meter SIM-0005 zone T1: 48 values: 48 stored" in text, text
    assert "48 not mapped" in text
