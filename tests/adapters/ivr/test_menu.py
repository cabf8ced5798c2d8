"""The telephone menu against the contact-centre standard, the prompt catalogue, the dialplan.

4 levels of information plus the operator, at most 7 positions and 60 seconds per level
(requirements 5.1.7-5.1.9), back and operator keys everywhere; prompts rendered to 8 kHz mono.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from adapters.ivr.channel import install
from adapters.ivr.menu import (
    DEFAULT_CATALOGUE,
    MAX_POSITIONS,
    MAX_SECONDS_PER_LEVEL,
    MENU,
    NOTE_PROMPTS,
    REASON_PROMPTS,
    CatalogueError,
    Key,
    Level,
    Prompt,
    Screen,
    check_menu,
    level_seconds,
    load_catalogue,
)
from gateway.config import ConfigError
from gateway.service import Gateway
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parents[3]


def test_menu_keeps_to_the_standard() -> None:
    catalogue = load_catalogue()
    assert check_menu(MENU, catalogue) == []
    assert [lv.depth for lv in MENU.levels] == [1, 2, 3, 4]
    figures = {
        lv.name: (level_seconds(lv, catalogue, MENU.greeting if lv.depth == 1 else None), len(lv.positions()))
        for lv in MENU.levels
    }
    print("seconds and positions per level:", figures)
    for seconds, positions in figures.values():
        assert seconds <= MAX_SECONDS_PER_LEVEL and positions <= MAX_POSITIONS


def test_check_finds_every_breach() -> None:
    catalogue = load_catalogue()
    main = MENU.levels[0]
    fifth = Level("extra", 5, (Screen("extra", (Prompt("goodbye"),)),))
    assert any("5 levels" in p for p in check_menu(replace(MENU, levels=(*MENU.levels, fifth)), catalogue))

    crowded = Screen(
        "crowded",
        (Prompt("main_menu"),),
        keys=(Key("1", "x", count=6), Key("*", "back"), Key("0", "operator")),
    )
    problems = check_menu(
        replace(MENU, levels=(replace(main, screens=(crowded,)), *MENU.levels[1:])), catalogue
    )
    assert any("8 positions" in p for p in problems)

    long = {**catalogue, "main_menu": replace(catalogue["main_menu"], duration_seconds=40.0)}
    assert any("level main" in p and "at most 60 s" in p for p in check_menu(MENU, long))

    no_back = Screen("no_back", (Prompt("main_menu"),), keys=(Key("1", "readings"), Key("0", "operator")))
    problems = check_menu(
        replace(MENU, levels=(replace(main, screens=(no_back,)), *MENU.levels[1:])), catalogue
    )
    assert any("must offer *" in p for p in problems)

    missing = {k: v for k, v in catalogue.items() if k != "reason_lower"}
    assert any("'reason_lower' is not in the catalogue" in p for p in check_menu(MENU, missing))
    unused = {**catalogue, "spare": replace(catalogue["goodbye"], name="spare")}
    assert any("'spare'" in p and "no screen says it" in p for p in check_menu(MENU, unused))


def test_every_refusal_of_the_core_has_words() -> None:
    """Each REJECT reason code in the core is said by a prompt of its own (not 'ask the operator')."""
    sources = [
        *(ROOT / "gateway" / "validation").glob("*.py"),
        *(ROOT / "gateway" / n for n in ("decide.py", "meter_resolution.py")),
    ]
    codes: set[str] = set()
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r'reason\(\s*"(\w+)"\s*,\s*Severity\.REJECT', text):
            codes.add(m.group(1))
        for m in re.finditer(r'"(\w+)" if \w+ else "(\w+)",\s*Severity\.REJECT', text):
            codes.update(m.groups())
    assert {"lower_than_previous", "too_many_digits", "unknown_account"} <= codes
    assert sorted(codes - set(REASON_PROMPTS)) == []
    assert set(NOTE_PROMPTS) == {"next_period", "rollover"}


def test_catalogue_errors_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "prompts.toml"
    bad.write_text('[[prompt]]\nname = "a"\ntext = "Да"\nduration_seconds = 0\n', encoding="utf-8")
    with pytest.raises(CatalogueError, match="duration_seconds"):
        load_catalogue(bad)
    bad.write_text(
        '[[prompt]]\nname = "a"\ntext = "Да"\nduration_seconds = 1\n' * 2,
        encoding="utf-8",
    )
    with pytest.raises(CatalogueError, match="listed twice"):
        load_catalogue(bad)
    with pytest.raises(CatalogueError, match="not found"):
        load_catalogue(tmp_path / "none.toml")


def test_start_up_refuses_a_menu_over_the_limits(tmp_path: Path) -> None:
    text = DEFAULT_CATALOGUE.read_text(encoding="utf-8")
    slow = re.sub(r'(name = "main_menu"\ntext = .*\nduration_seconds = )[\d.]+', r"\g<1>45.0", text)
    assert slow != text
    (tmp_path / "slow.toml").write_text(slow, encoding="utf-8")
    config = make_config(
        "sqlite+aiosqlite:///unused.db",
        tmp_path,
        ivr={"enabled": True, "prompts": str(tmp_path / "slow.toml")},
    )
    with pytest.raises(ConfigError, match=r"level main: .* at most 60 s"):
        install(Gateway(config), web.Application())


def test_dialplan_calls_the_gateway_and_queues_for_an_operator() -> None:
    dialplan = (ROOT / "deploy" / "asterisk" / "extensions.conf").read_text(encoding="utf-8")
    assert re.search(r"AGI\(agi://[^)]*:4573/readings\)", dialplan)
    assert "Set(CHANNEL(language)=ru)" in dialplan
    assert '"${IVR_RESULT}" = "done"' in dialplan
    assert re.search(r"Queue\([^)]*\)", dialplan)


# --- rendering -------------------------------------------------------------------------------

needs_tts = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox") and shutil.which("soxi")),
    reason="espeak-ng and sox are not installed (scripts/system-deps.sh installs them)",
)


@needs_tts
def test_render_one_prompt_to_8khz_mono(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "render-prompts.sh"
    subprocess.run(
        ["bash", str(script), "--only", "welcome", str(DEFAULT_CATALOGUE), str(tmp_path)], check=True
    )
    wav = tmp_path / "welcome.wav"
    info = {
        flag: subprocess.run(
            ["soxi", flag, str(wav)], capture_output=True, text=True, check=True
        ).stdout.strip()
        for flag in ("-r", "-c", "-b", "-D")
    }
    assert (info["-r"], info["-c"], info["-b"]) == ("8000", "1", "16")
    assert 2.0 < float(info["-D"]) <= load_catalogue()["welcome"].duration_seconds


@needs_tts
def test_recorded_durations_are_not_understated(tmp_path: Path) -> None:
    """The menu check is only as good as the durations: each rendered prompt fits its figure."""
    script = ROOT / "scripts" / "render-prompts.sh"
    out = subprocess.run(
        ["bash", str(script), "--durations", str(DEFAULT_CATALOGUE), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    measured = {name: float(sec) for name, sec in (line.split("\t") for line in out.splitlines())}
    catalogue = load_catalogue()
    assert set(measured) == set(catalogue)
    over = {
        n: (s, catalogue[n].duration_seconds)
        for n, s in measured.items()
        if s > catalogue[n].duration_seconds + 0.05
    }
    assert over == {}
