"""What `meter-gateway demo` adds for head-end files, unless `[xml80020]` is configured: a watched
folder `var/80020/` whose channel 01 of point 000000000000005 is SIM-0005's zone T1, and a sample
file of yesterday's half hours, `var/80020-sample.xml`, to copy into it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from adapters.meters.xml80020.config import ChannelMapping, Xml80020Config
from gateway.plugins import DemoPart

DEMO_DIR = "var/80020"
SAMPLE = "var/80020-sample.xml"
POINT = "000000000000005"


def sample_message(day: str, point: str = POINT) -> bytes:
    """An 80020 file for `day` (YYYYMMDD): channel 01 (mapped) and 02 (not), 48 half hours each."""
    periods = []
    for i in range(48):
        start, end = i * 30, (i + 1) * 30 % 1440
        periods.append(
            f'<period start="{start // 60:02d}{start % 60:02d}" end="{end // 60:02d}{end % 60:02d}">'
            f'<value status="0">{0.8 + 0.15 * (i % 12):.2f}</value></period>'  # kWh: a 15 kW home's
        )
    channels = "".join(
        f'<measuringchannel code="{code}" desc="{desc}">{"".join(periods)}</measuringchannel>'
        for code, desc in (("01", "активная энергия, приём"), ("02", "активная энергия, отдача"))
    )
    text = (
        '<?xml version="1.0" encoding="windows-1251"?>\n'
        f'<message class="80020" version="2" number="1"><datetime><timestamp>{day}060000</timestamp>'
        f"<daylightsavingtime>0</daylightsavingtime><day>{day}</day></datetime>"
        "<sender><inn>7700000000</inn><name>Демо АИИС КУЭ</name></sender>"
        f'<area><inn>7700000000</inn><name>Демо</name><measuringpoint code="{point}" name="Ввод 1">'
        f"{channels}</measuringpoint></area></message>"
    )
    return text.encode("cp1251")


async def write_sample(host: Any) -> None:
    """Background task of the demo: the sample file of yesterday (Moscow time), written once."""
    yesterday = datetime.now(ZoneInfo("Europe/Moscow")).date() - timedelta(days=1)
    await asyncio.to_thread(_write, Path(SAMPLE), sample_message(yesterday.strftime("%Y%m%d")))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def demo_config(config: Any) -> DemoPart:
    current = config.section("xml80020", Xml80020Config)
    if current.watch_dir is not None or current.channels:
        return DemoPart()  # the operator's own setting stays
    demo = Xml80020Config(
        watch_dir=DEMO_DIR,
        poll_seconds=2,
        channels=[ChannelMapping(point=POINT, channel="01", meter="SIM-0005", zone="T1")],
    )
    return DemoPart(
        overrides={"xml80020": demo},
        background=[write_sample],
        hints=[
            f"Head-end files: cp {SAMPLE} {DEMO_DIR}/ imports yesterday's half hours of SIM-0005 (T1); "
            f"the report appears as {DEMO_DIR}/done/80020-sample.xml.report.txt."
        ],
    )
