"""deploy/systemd/meter-gateway.service: systemd accepts it as written, and the commands it runs
are commands the gateway has."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "systemd" / "meter-gateway.service"
INSTALLED = "/opt/meter-gateway/bin/meter-gateway"


def _directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path: Path) -> None:
    # verify also checks that ExecStart's program exists: point it at this environment's command.
    unit = tmp_path / UNIT.name
    here = str(Path(sys.executable).with_name("meter-gateway"))
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED, here), encoding="utf-8")
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    # Unknown keys and bad values are warnings with exit code 0: any line about our unit fails.
    about_unit = [line for line in (done.stdout + done.stderr).splitlines() if UNIT.name in line]
    assert done.returncode == 0 and not about_unit, done.stdout + done.stderr


def test_the_unit_runs_checks_reloads_and_stops_as_documented() -> None:
    d = _directives()
    parser = build_parser()
    for key in ("ExecStartPre", "ExecStart"):
        argv = shlex.split(d[key][0])
        assert argv[0] == INSTALLED
        parser.parse_args(argv[1:])  # SystemExit if the gateway has no such command
    assert shlex.split(d["ExecStart"][0])[-1] == "run"
    assert shlex.split(d["ExecStartPre"][0])[-2:] == ["config", "check"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # Gateway.reload, on SIGHUP
    assert d["Restart"] == ["on-failure"]
    assert d["KillSignal"] == ["SIGTERM"] and d["KillMode"] == ["mixed"]
    assert d["ProtectSystem"] == ["strict"] and d["NoNewPrivileges"] == ["yes"]
    assert d["StateDirectory"] == ["meter-gateway"] and d["User"] == ["meter-gateway"]
