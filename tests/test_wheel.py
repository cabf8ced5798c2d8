"""The gateway as an operator installs it: the wheel built by `python -m build`, installed into a new
virtual environment outside the source tree, run from a directory that is not the source tree
(so nothing is found there by accident): init, config check, profiles check, db upgrade, import
registry, run, a device push, a billing lease, a reload (SIGHUP) and a stop (SIGTERM).

It takes ~30 s, most of it pip installing the dependencies (pip's cache and the package index
serve them); it runs in `make test`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a new virtual environment holding the wheel built (through the sdist) from this tree."""
    tmp = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        # sdist, then the wheel built from the unpacked sdist: both are complete, and nothing is
        # built inside the source tree.
        [sys.executable, "-m", "build", "--outdir", str(tmp / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    [wheel] = (tmp / "dist").glob("meter_gateway-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=120)
    pip = subprocess.run(
        [str(tmp / "venv" / "bin" / "pip"), "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    return tmp / "venv" / "bin"


def _http(method: str, url: str, body: bytes | None = None, token: str = "") -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    work = tmp_path / "site"
    work.mkdir()
    assert ROOT not in work.resolve().parents
    yield work


def test_the_installed_wheel_carries_its_data_and_runs(installed: Path, site: Path) -> None:
    def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(installed / "meter-gateway"), *args],
            cwd=site,
            env=_env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )

    where = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "import gateway, adapters; print(gateway.__file__, adapters.__file__)",
        ],
        cwd=site,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(ROOT) not in where.stdout and str(installed.parent) in where.stdout

    made = cli("init", "etc", "--state-dir", "state")
    assert made.returncode == 0, made.stderr
    conf = site / "etc" / "gateway.toml"
    settings = tomllib.loads(conf.read_text(encoding="utf-8"))
    device_token = settings["devices"]["tokens"][0]
    billing_token = settings["billing"]["tokens"][0]
    c = ("--config", str(conf))
    checked = cli(*c, "config", "check")
    assert checked.returncode == 0 and "valid" in checked.stdout, checked.stderr

    # Firmware profiles shipped in the package, found without any key pointing at them.
    profiles = cli("profiles", "check")
    assert profiles.returncode == 0, profiles.stdout + profiles.stderr
    assert profiles.stderr.rstrip().endswith(" profiles, 0 errors") and "eastron_sdm120" in profiles.stdout

    upgraded = cli(*c, "db", "upgrade")
    assert upgraded.returncode == 0 and "latest schema" in upgraded.stdout, upgraded.stderr
    registry = site / "etc" / "registry.csv"
    with registry.open("a", encoding="utf-8") as out:
        out.write("3000001,W-1,Меркурий 201,T,6,,10,ул. Колесная 1\n")
    imported = cli(*c, "import", "registry", str(registry))
    assert imported.returncode == 0 and "added 1," in imported.stdout, imported.stdout + imported.stderr

    port = _free_port()
    log = (site / "run.log").open("w")
    gateway = subprocess.Popen(
        [str(installed / "meter-gateway"), *c, "run"],
        cwd=site,
        env=_env(GATEWAY_HTTP_PORT=str(port)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _http("GET", f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert gateway.poll() is None, (site / "run.log").read_text()
            assert time.monotonic() < deadline, (site / "run.log").read_text()
            time.sleep(0.2)

        def push(meter: str, value: str) -> dict[str, object]:
            body = orjson.dumps({"readings": [{"id": f"{meter}-{value}", "meter": meter, "value": value}]})
            status, data = _http("POST", f"{base}/api/v1/readings", body, device_token)
            assert status == 200, data
            result: dict[str, object] = orjson.loads(data)["results"][0]
            return result

        assert push("W-1", "1234.5")["status"] == "accepted"
        # A meter added to the registry file is known after a reload (systemctl reload: SIGHUP).
        assert push("W-2", "77.0")["status"] != "accepted"
        with registry.open("a", encoding="utf-8") as out:
            out.write("3000002,W-2,Меркурий 201,T,6,,10,ул. Колесная 2\n")
        gateway.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "reload: registry" not in (site / "run.log").read_text():
            assert gateway.poll() is None and time.monotonic() < deadline, (site / "run.log").read_text()
            time.sleep(0.2)
        pushed = push("W-2", "78.0")
        assert pushed["status"] == "accepted", pushed

        status, data = _http("POST", f"{base}/api/v1/billing/batches", b'{"limit": 10}', billing_token)
        assert status == 201, data
        leased = orjson.loads(data)["readings"]
        assert [(r["meter_serial"], r["value"]) for r in leased] == [("W-1", "1234.5"), ("W-2", "78.0")]
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            code = gateway.wait(timeout=45)
        finally:
            if gateway.poll() is None:
                gateway.kill()
            log.close()
    assert code == 0, (site / "run.log").read_text()
