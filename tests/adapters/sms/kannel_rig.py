"""Real Kannel on loopback: bearerbox, smsbox and fakesmsc as the SMS centre, from deploy/kannel.

`KannelRig` renders the shipped deploy/kannel/kannel.conf with free ports and a temporary
directory, starts the three programs, waits until the fake SMSC is online and smsbox is
connected, and reads what fakesmsc receives (the SMS the residents' phones would get).
fakesmsc runs interactively: every line written to its standard input is one message from a
phone, in its format `sender receiver ucs2 <url-encoded UTF-16BE>`.

Used by tests/adapters/sms/test_kannel_e2e.py and load_tests/sms_kannel.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

ROOT = Path(__file__).resolve().parents[3]
KANNEL_CONF = ROOT / "deploy" / "kannel" / "kannel.conf"
FAKESMSC = Path("/usr/lib/kannel/test/fakesmsc")
ADMIN_PASSWORD = "rig-admin"
SENDSMS_USER, SENDSMS_PASSWORD = "meter-gateway", "rig-sendsms"


def kannel_binaries() -> tuple[str, str, str] | None:
    """(bearerbox, smsbox, fakesmsc) when Kannel and kannel-extras are installed."""
    bearerbox = shutil.which("bearerbox") or "/usr/sbin/bearerbox"
    smsbox = shutil.which("smsbox") or "/usr/sbin/smsbox"
    found = [p for p in (bearerbox, smsbox, str(FAKESMSC)) if os.access(p, os.X_OK)]
    return (bearerbox, smsbox, str(FAKESMSC)) if len(found) == 3 else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render_conf(template: str, values: Mapping[tuple[str, str], str]) -> str:
    """The config with `key = value` replaced in the named groups (first group of each name)."""
    out, group, seen = [], "", set()
    for line in template.splitlines():
        m = re.match(r"^([a-z0-9-]+)\s*=\s*(.*)$", line.strip())
        if m and m.group(1) == "group":
            group = m.group(2).strip()
            if group in seen:  # only the first group of a kind is edited
                group = f"{group}#later"
            seen.add(group.split("#")[0])
        elif m and (group, m.group(1)) in values:
            line = f"{m.group(1)} = {values[(group, m.group(1))]}"
        out.append(line)
    return "\n".join(out) + "\n"


def encode_mo(text: str) -> str:
    """A message text as fakesmsc's `ucs2` type wants it: UTF-16BE, URL-encoded."""
    return quote(text.encode("utf-16-be"), safe="")


@dataclass
class Received:
    """One SMS fakesmsc got from Kannel (a whole message: concatenated parts are joined)."""

    sender: str
    receiver: str
    coding: str  # "text", "ucs-2", "udh"
    text: str
    parts: int


_GOT = re.compile(r"Got message \d+: <(\S+) (\S+) (text|data|ucs-2|udh) (.*)>\s*$")


def _decode_line(coding: str, rest: str) -> tuple[str, bytes | None]:
    """(text, udh) of one fakesmsc line."""
    if coding == "text":
        return rest, None
    if coding == "udh":
        udh_enc, _, data_enc = rest.partition(" data ")
        udh = unquote_to_bytes(udh_enc.replace("+", "%20"))
        return unquote_to_bytes(data_enc.replace("+", "%20")).decode("utf-16-be", errors="replace"), udh
    data = unquote_to_bytes(rest.replace("+", "%20"))
    if coding == "ucs-2":
        return data.decode("utf-16-be", errors="replace"), None
    return data.decode("latin-1"), None


class KannelRig:
    """bearerbox + smsbox + fakesmsc from the shipped config, in `workdir`, calling `get_url_base`."""

    def __init__(self, workdir: Path, gateway_port: int, kannel_key: str, **smsbox: str) -> None:
        binaries = kannel_binaries()
        if binaries is None:
            raise RuntimeError("Kannel is not installed (Debian packages kannel and kannel-extras)")
        self.bearerbox, self.smsbox, self.fakesmsc = binaries
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.admin_port, self.box_port, self.smsc_port, self.sendsms_port = (free_port() for _ in range(4))
        self.gateway_port = gateway_port
        self.key = kannel_key
        self.smsbox_overrides = smsbox
        self.conf = self.dir / "kannel.conf"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.received: list[Received] = []
        self._parts: dict[tuple[str, int], dict[int, str]] = {}
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    @property
    def sendsms_url(self) -> str:
        return (
            f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"
            f"?username={SENDSMS_USER}&password={SENDSMS_PASSWORD}&from=7377"
        )

    def write_conf(self) -> None:
        template = KANNEL_CONF.read_text(encoding="utf-8")
        get_url = re.search(r'^get-url = "(.*)"$', template, re.M)
        assert get_url, "deploy/kannel/kannel.conf has no get-url"
        url = re.sub(r"^http://[^/]+", f"http://127.0.0.1:{self.gateway_port}", get_url.group(1))
        url = url.replace("CHANGE-ME-kannel-key", self.key)
        values = {
            ("core", "admin-port"): str(self.admin_port),
            ("core", "admin-password"): ADMIN_PASSWORD,
            ("core", "smsbox-port"): str(self.box_port),
            ("core", "log-file"): f'"{self.dir / "bearerbox.log"}"',
            ("core", "access-log"): f'"{self.dir / "access.log"}"',
            ("core", "store-location"): f'"{self.dir / "kannel.store"}"',
            ("core", "log-level"): "0",
            ("smsc", "port"): str(self.smsc_port),
            ("smsbox", "bearerbox-port"): str(self.box_port),
            ("smsbox", "sendsms-port"): str(self.sendsms_port),
            ("smsbox", "log-file"): f'"{self.dir / "smsbox.log"}"',
            ("smsbox", "access-log"): f'"{self.dir / "smsbox-access.log"}"',
            ("smsbox", "log-level"): "0",
            ("sms-service", "get-url"): f'"{url}"',
            ("sendsms-user", "password"): SENDSMS_PASSWORD,
        }
        values.update({("smsbox", k): v for k, v in self.smsbox_overrides.items()})
        self.conf.write_text(render_conf(template, values), encoding="utf-8")

    def _spawn(
        self, name: str, command: list[str], stdin: int = subprocess.DEVNULL, stdout: int | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.out", "ab")  # closed once the child has it
        proc = subprocess.Popen(
            command,
            stdin=stdin,
            stdout=log if stdout is None else stdout,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def status(self) -> str:
        url = f"http://127.0.0.1:{self.admin_port}/status.txt?password={ADMIN_PASSWORD}"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return str(resp.read().decode("utf-8", errors="replace"))

    def _wait(self, what: str, ready: Callable[[], object], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode} while waiting for {what}\n{self.logs()}"
                    )
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Kannel: {what} not ready within {timeout:g} s\n{self.logs()}")

    def start(self, timeout: float = 30.0, messages: list[str] | None = None) -> None:
        """Start everything; return once a message from fakesmsc would reach the gateway.

        With `messages`, fakesmsc sends those (fakesmsc's own syntax, `-m`/`-z` options included)
        right away instead of reading its standard input, and this returns when it started.
        """
        self.write_conf()
        self._spawn("bearerbox", [self.bearerbox, "-v", "1", str(self.conf)])
        self._wait("bearerbox admin port", lambda: "Kannel bearerbox" in self.status(), timeout)
        self._spawn("smsbox", [self.smsbox, "-v", "1", str(self.conf)])
        self._wait("smsbox", lambda: _connects(self.sendsms_port) and self._box_online(), timeout)
        command = [self.fakesmsc, "-H", "127.0.0.1", "-r", str(self.smsc_port), "-i", "0", "-v", "0"]
        interactive = messages is None
        proc = self._spawn(
            "fakesmsc",
            command + (messages or []),
            stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._reader.start()
        if interactive:
            self._wait("the fake SMSC", self._smsc_online, timeout)

    def _box_online(self) -> bool:
        return "on-line" in self.status().split("Box connections", 1)[-1].split("SMSC connections", 1)[0]

    def _smsc_online(self) -> bool:
        return re.search(r"fakesmsc\[[^\]]*\].*\(online", self.status()) is not None

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with open(self.dir / "fakesmsc.log", "ab") as log:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                m = _GOT.search(raw.decode("utf-8", errors="replace"))
                if m:
                    self._got(m.group(1), m.group(2), m.group(3), m.group(4))

    def _got(self, sender: str, receiver: str, coding: str, rest: str) -> None:
        text, udh = _decode_line(coding, rest)
        with self._lock:
            if udh is not None and len(udh) >= 6 and udh[1] == 0x00:  # concatenation IE, 8-bit ref
                ref, total, seq = udh[3], udh[4], udh[5]
                parts = self._parts.setdefault((receiver, ref), {})
                parts[seq] = text
                if len(parts) < total:
                    return
                del self._parts[(receiver, ref)]
                self.received.append(
                    Received(sender, receiver, coding, "".join(parts[i] for i in sorted(parts)), total)
                )
                return
            self.received.append(Received(sender, receiver, coding, text, 1))

    def send(self, phone: str, text: str, to: str = "7377") -> None:
        """One SMS from `phone`, typed in Cyrillic: it reaches Kannel in UCS-2."""
        proc = self.procs["fakesmsc"]
        assert proc.stdin is not None
        proc.stdin.write(f"{phone} {to} ucs2 {encode_mo(text)}\n".encode())
        proc.stdin.flush()

    def messages_to(self, phone: str) -> list[Received]:
        with self._lock:
            return [m for m in self.received if m.receiver == phone]

    def wait_for(self, phone: str, count: int = 1, timeout: float = 20.0) -> list[Received]:
        """Block until `phone` got `count` SMS; returns them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.messages_to(phone)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{phone} got {self.messages_to(phone)}, expected {count} SMS\n{self.logs()}")

    def logs(self, lines: int = 25) -> str:
        out = []
        for name in ("bearerbox.log", "smsbox.log", "bearerbox.out", "smsbox.out", "fakesmsc.log"):
            path = self.dir / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(out)

    def stop(self) -> None:
        """fakesmsc first, then smsbox, then bearerbox; each gets SIGTERM, then SIGKILL."""
        for name in ("fakesmsc", "smsbox", "bearerbox"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGINT if name == "fakesmsc" else signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        fake = self.procs.get("fakesmsc")
        if fake is not None and fake.stdin is not None:
            fake.stdin.close()
        if self._reader is not None:
            self._reader.join(timeout=5)


def _connects(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
