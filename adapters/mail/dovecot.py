"""A private Dovecot IMAP server (Debian `dovecot-imapd`) with its own configuration in a folder
of its own, on a port of loopback, for `make demo` and the tests: the readings mailbox to read
and the mail residents would send dropped into it.

It runs as the current user; under root, Dovecot itself refuses to run its login processes or
to keep mail as root, so it uses the package's own unprivileged users (`dovenull` for logins,
`dovecot` for the rest and the mail) and the folder is made theirs. Passwords are plain, over
loopback only (`ssl = no`). Nothing of the system's Dovecot is touched: not its configuration,
service, ports or mail.
"""

from __future__ import annotations

import getpass
import grp
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")


def dovecot_binary() -> str | None:
    """Where the dovecot binary is, or None when it is not installed."""
    found = shutil.which("dovecot")
    return found or next((c for c in CANDIDATES if os.access(c, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrivateDovecot:
    """Dovecot serving IMAP on 127.0.0.1:`port` for `users` (login -> password), its state,
    sockets, log and mail all under `root`."""

    root: Path
    users: dict[str, str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    def _config(self) -> str:
        root = self.root
        if os.geteuid() == 0:
            internal, login, mail_user = "dovecot", "dovenull", "dovecot"
            group = grp.getgrgid(pwd.getpwnam("dovecot").pw_gid).gr_name
        else:
            internal = login = mail_user = getpass.getuser()
            group = grp.getgrgid(os.getgid()).gr_name
        uid = pwd.getpwnam(mail_user).pw_uid
        gid = pwd.getpwnam(mail_user).pw_gid
        return f"""# written by adapters/mail/dovecot.py: a private IMAP server on loopback
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = meter-gateway-{self.port}
log_path = {self.log_path}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
first_valid_uid = {min(uid, 500)}
first_valid_gid = {min(gid, 500)}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
"""

    def start(self, within: float = 10.0) -> None:
        """Write the configuration and start Dovecot in the foreground of a child process."""
        binary = dovecot_binary()
        if binary is None:
            raise FileNotFoundError("dovecot is not installed (Debian: apt-get install dovecot-imapd)")
        self.port = self.port or free_port()
        with socket.socket() as probe:  # a port taken by another server would answer for this one
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Dovecot binds it
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError as exc:
                raise RuntimeError(f"127.0.0.1:{self.port} is taken: {exc}") from exc
        self.root = self.root.resolve()  # the configuration names its folders absolutely
        for sub in ("run", "state", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # the unprivileged processes under root must reach their sockets
        (self.root / "passwd").write_text(
            "".join(f"{user}:{{PLAIN}}{password}::::::\n" for user, password in self.users.items())
        )
        if os.geteuid() == 0:
            shutil.chown(self.root / "home", "dovecot", "dovecot")
        conf = self.root / "dovecot.conf"
        conf.write_text(self._config())
        self.process = subprocess.Popen(
            [binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace")
                raise RuntimeError(f"dovecot exited at start: {err[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not answer on 127.0.0.1:{self.port} within {within} s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
