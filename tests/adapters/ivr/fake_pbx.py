"""A fake Asterisk for the tests: `Pbx` speaks FastAGI byte for byte to the real gateway.

Asterisk cannot run here, so `Pbx` plays its side of the protocol: the `agi_*` environment block,
`200 result=...` replies with the ASCII code of the key pressed, `(timeout)`, `-1` and a
`HANGUP` line when the caller hangs up, `511` on a dead channel, `510` and multi-line `520`
errors. The caller is a list of keys, one taken each time the gateway waits for a digit (None:
silence; HANG: hang up; "1!": press 1 and hang up at once). What the caller heard is the list of
prompt names and numbers the gateway asked Asterisk to play.
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass, field

HANG = "HANG"
PHONE_1 = "79161234567"  # account 1000001, one single-rate meter M-1 (6 digits)
PHONE_2 = "+79161234568"  # account 1000002, two-rate meter M-2
PHONE_TWO_ACCOUNTS = "89031112233"  # accounts 1000003 and 1000005
STRANGER = "74950000000"  # no account


def keys(text: str) -> list[str | None]:
    """'12345*6#' -> one key per character."""
    return list(text)


@dataclass
class Pbx:
    """Asterisk's side of one FastAGI call."""

    port: int
    caller: list[str | None]
    callerid: str = PHONE_1
    uniqueid: str = "1763370000.1"
    script: str = "readings"
    hangup_on: str | None = None  # hang up when asked to play this prompt
    refuse: dict[str, list[str]] = field(default_factory=dict)  # command prefix -> reply lines
    heard: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    dead_at: int | None = None  # commands received when the caller hung up

    async def call(self) -> Pbx:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        env = {
            "agi_network": "yes",
            "agi_network_script": self.script,
            "agi_request": f"agi://127.0.0.1:{self.port}/{self.script}",
            "agi_channel": "PJSIP/trunk-00000001",
            "agi_language": "ru",
            "agi_type": "PJSIP",
            "agi_uniqueid": self.uniqueid,
            "agi_version": "20.5.0",
            "agi_callerid": self.callerid,
            "agi_calleridname": "unknown",
            "agi_callingpres": "0",
            "agi_dnid": "3433115300",
            "agi_rdnis": "unknown",
            "agi_context": "meter-readings",
            "agi_extension": "s",
            "agi_priority": "6",
            "agi_enhanced": "0.0",
            "agi_accountcode": "",
            "agi_threadid": "140093244446400",
        }
        block = "".join(f"{k}: {v}\n" for k, v in env.items()) + "\n"
        writer.write(block.encode())
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                break  # the script returned: back to the dialplan
            command = line.decode().rstrip("\n")
            self.commands.append(command)
            for reply in self.answer(command):
                writer.write(reply.encode())
            await writer.drain()
        writer.close()
        return self

    def hang_up(self, result: str = "-1") -> list[str]:
        self.dead_at = len(self.commands)
        return [f"200 result={result}\n", "HANGUP\n"]

    @property
    def dead(self) -> bool:
        return self.dead_at is not None

    def answer(self, command: str) -> list[str]:
        if self.dead:
            return ["511 Command Not Permitted on a dead channel or intercepted channel\n"]
        for prefix, lines in self.refuse.items():
            if command.startswith(prefix):
                return lines
        words = shlex.split(command)
        verb = " ".join(words[:3]) if words[:2] == ["WAIT", "FOR"] else " ".join(words[:2])
        if words == ["ANSWER"]:
            return ["200 result=0\n"]
        if verb == "STREAM FILE":
            name = words[2].rsplit("/", 1)[-1]
            self.heard.append(name)
            if name == self.hangup_on:
                self.dead_at = len(self.commands)
                return ["200 result=-1 endpos=0\n", "HANGUP\n"]
            return ["200 result=0 endpos=16000\n"]
        if verb in ("SAY NUMBER", "SAY DIGITS", "SAY ALPHA"):
            self.heard.append(f"{words[1].lower()}:{words[2]}")
            return ["200 result=0\n"]
        if verb == "WAIT FOR DIGIT":
            if not self.caller:
                return self.hang_up()  # the script has run out: the caller gives up
            key = self.caller.pop(0)
            if key is None:
                return ["200 result=0\n"]
            if key == HANG:
                return self.hang_up()
            if key.endswith("!"):  # the key, and the caller hangs up right after it
                self.dead_at = len(self.commands)
                return [f"200 result={ord(key[0])}\n", "HANGUP\n"]
            return [f"200 result={ord(key)}\n"]
        if verb == "SET VARIABLE":
            self.variables[words[2]] = words[3]
            return ["200 result=1\n"]
        return ["510 Invalid or unknown command\n"]
