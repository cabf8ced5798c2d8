"""`make bench`: every benchmark in turn, each printing its figures beside its own baselines.

`python -m load_tests` runs them all; `python -m load_tests device|sms|telegram|modbus|meters|files` one.
"""

import sys

from load_tests import bench, meters_wire, modbus_poll, partner_files, sms_kannel, telegram_webhook

BENCHMARKS = {
    "device": bench.main,  # device push over HTTP vs bare aiohttp and raw SQLite inserts
    "sms": sms_kannel.main,  # the Kannel SMS route (and real Kannel end to end)
    "telegram": telegram_webhook.main,  # Telegram webhook updates
    "modbus": modbus_poll.main,  # 1,000 simulated TCP meters
    "meters": meters_wire.main,  # each protocol's readings per second against the wire, paced lines
    "files": partner_files.main,  # partners' files of 20,000 and 100,000 rows: rows/s, memory, raw inserts
}

chosen = sys.argv[1:2] if len(sys.argv) > 1 and sys.argv[1] in BENCHMARKS else list(BENCHMARKS)
rest = sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] in BENCHMARKS else sys.argv[1:]
status = 0
for name in chosen:
    print(f"\n=== {name} ===", flush=True)
    status |= BENCHMARKS[name](rest if len(chosen) == 1 else [])
sys.exit(status)
