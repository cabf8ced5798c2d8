#!/usr/bin/env bash
# Render the telephone menu's prompts to WAV files Asterisk plays as they are: 8 kHz, mono, 16-bit.
#
#   scripts/render-prompts.sh [--durations] [--only NAME] [CATALOGUE] [OUTDIR]
#
# CATALOGUE defaults to adapters/ivr/prompts.toml, OUTDIR to var/ivr-sounds. Each prompt's
# Russian text is spoken by espeak-ng (voice ru) and converted with sox. --durations prints
# "name<TAB>seconds" for every rendered file (the figure to keep in the catalogue's
# duration_seconds); --only renders one prompt. Copy OUTDIR to
# /var/lib/asterisk/sounds/ru/meter-gateway/ on the PBX (the `[ivr] sounds` prefix).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
durations=0
only=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --durations) durations=1 ;;
    --only) only="$2"; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) args+=("$1") ;;
  esac
  shift
done
catalogue="${args[0]:-$here/adapters/ivr/prompts.toml}"
outdir="${args[1]:-$here/var/ivr-sounds}"
rate="${ESPEAK_RATE:-150}"  # words per minute: a little slower than espeak's 175, for the phone

for tool in espeak-ng sox soxi python3; do
  command -v "$tool" >/dev/null || { echo "render-prompts: $tool is not installed (apt-get install espeak-ng sox)" >&2; exit 2; }
done
mkdir -p "$outdir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# name<TAB>text lines from the TOML catalogue (python3's tomllib: no extra package needed)
python3 - "$catalogue" "$only" >"$work/list" <<'PY'
import sys, tomllib
catalogue, only = sys.argv[1], sys.argv[2]
with open(catalogue, "rb") as f:
    prompts = tomllib.load(f)["prompt"]
found = False
for p in prompts:
    if only and p["name"] != only:
        continue
    found = True
    print(f"{p['name']}\t{' '.join(p['text'].split())}")
if only and not found:
    sys.exit(f"render-prompts: no prompt named {only!r} in {catalogue}")
PY

count=0
while IFS=$'\t' read -r name text; do
  espeak-ng -v ru -s "$rate" -w "$work/$name.wav" -- "$text"
  # Asterisk's native telephone format: no resampling on the call path.
  sox -V1 "$work/$name.wav" -r 8000 -c 1 -b 16 -e signed-integer "$outdir/$name.wav" norm -1
  if [ "$durations" = 1 ]; then
    printf '%s\t%s\n' "$name" "$(soxi -D "$outdir/$name.wav")"
  fi
  count=$((count + 1))
done <"$work/list"
echo "rendered $count prompt(s) to $outdir" >&2
