#!/usr/bin/env bash
# Install the Debian packages the tests need, only those missing (CI runs as root).
# systemd: systemd-analyze verifies deploy/systemd/meter-gateway.service (tests/test_systemd_unit.py).
# dovecot-imapd: the mail door's tests and `make demo` run a private Dovecot (adapters/mail/dovecot.py).
set -euo pipefail
packages=(postgresql socat chromium espeak-ng sox kannel kannel-extras mosquitto prometheus nats-server systemd dovecot-imapd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
