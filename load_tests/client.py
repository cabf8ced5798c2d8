"""The load generator: many concurrent aiohttp connections pushing device readings for a while.

Run as its own process (`python -m load_tests.client ...`) so that its CPU never competes with
the server's event loop inside one interpreter; prints one JSON object with the figures.

Every worker owns a disjoint slice of the meters and sends its requests one after another, so
the readings of one meter arrive in order. Step `s` of a meter is dated `base + s hours` and
reads `1000 + 10 s` kWh: a strictly increasing value, 10 kWh per hour, inside the default
permitted power (15 kW x 1 h + 1 kWh), so every reading a correct gateway sees is acceptable.
Phases pass `--step-offset` above the last step of the previous phase.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson

from load_tests.common import latency_ms, own_cpu_seconds

VALUE_START = 1000
VALUE_PER_STEP = 10  # kWh per step
STEP = timedelta(hours=1)


@dataclass
class Tally:
    requests: int = 0
    items: int = 0
    accepted: int = 0
    accepted_all: int = 0  # including the warm-up and requests finished after the window
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    not_accepted: dict[str, int] = field(default_factory=dict)  # status/reason -> count
    error_samples: list[str] = field(default_factory=list)


def serial(i: int) -> str:
    return f"BM-{i:06d}"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Worker:
    def __init__(self, index: int, meters: list[int], args: argparse.Namespace, base: datetime) -> None:
        self.index = index
        self.meters = meters
        self.args = args
        self.base = base
        self.turn = 0
        self.steps = [0] * len(meters)
        self.sent = 0
        self.max_step = args.step_offset

    def payload(self) -> bytes:
        items = []
        n = len(self.meters)
        for _ in range(self.args.batch):
            slot = self.turn % n
            self.turn += 1
            step = self.args.step_offset + self.steps[slot]
            self.steps[slot] += 1
            self.max_step = max(self.max_step, step)
            self.sent += 1
            items.append(
                {
                    "id": f"{self.args.tag}-{self.index}-{self.sent}",
                    "meter": serial(self.meters[slot]),
                    "taken_at": iso(self.base + step * STEP),
                    "value": str(VALUE_START + VALUE_PER_STEP * step),
                }
            )
        return orjson.dumps({"readings": items})


async def _run_worker(
    worker: Worker,
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    window: tuple[float, float],
    tally: Tally,
    check: bool,
) -> None:
    start, end = window
    while True:
        sent_at = time.perf_counter()
        if sent_at >= end:
            return  # requests still in flight are awaited, so the run ends with none pending
        body = worker.payload()
        try:
            async with http.post(url, data=body, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.errors += 1
            if len(tally.error_samples) < 5:
                tally.error_samples.append(repr(exc))
            await asyncio.sleep(0.05)
            continue
        done = time.perf_counter()
        answer = orjson.loads(raw) if check and status == 200 else None
        if answer is not None:
            tally.accepted_all += answer["accepted"]
        if not start <= done <= end:
            continue  # answered during the warm-up or after the window closed
        tally.requests += 1
        tally.items += worker.args.batch
        tally.latencies.append(done - sent_at)
        if status != 200:
            tally.errors += 1
            if len(tally.error_samples) < 5:
                tally.error_samples.append(f"HTTP {status}: {raw[:200]!r}")
            continue
        if answer is None:
            continue
        tally.accepted += answer["accepted"]
        if answer["accepted"] != answer["total"]:
            for r in answer["results"]:
                if r["status"] != "accepted":
                    codes = ",".join(x["code"] for x in r["reasons"]) or "-"
                    key = f"{r['status']}:{codes}"
                    tally.not_accepted[key] = tally.not_accepted.get(key, 0) + 1


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = datetime.fromisoformat(args.base).astimezone(UTC)
    meters = list(range(args.first_meter, args.first_meter + args.meters))
    workers = [Worker(w, meters[w :: args.concurrency], args, base) for w in range(args.concurrency)]
    if any(len(w.meters) < 1 for w in workers):
        raise SystemExit("fewer meters than connections")
    headers = {
        "Authorization": f"Bearer {args.token}",
        "X-Device-Id": f"bench-{args.tag}",
        "Content-Type": "application/json",
    }
    connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    tally = Tally()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        now = time.perf_counter()
        window = (now + args.warmup, now + args.warmup + args.duration)
        cpu0 = own_cpu_seconds()
        await asyncio.gather(
            *(_run_worker(w, http, args.url, headers, window, tally, not args.no_check) for w in workers)
        )
        cpu = own_cpu_seconds() - cpu0
        elapsed = time.perf_counter() - now
    return {
        "requests": tally.requests,
        "items": tally.items,
        "accepted": tally.accepted,
        "accepted_all": tally.accepted_all,
        "errors": tally.errors,
        "error_samples": tally.error_samples,
        "not_accepted": tally.not_accepted,
        "duration": args.duration,
        "requests_per_s": tally.requests / args.duration,
        "items_per_s": tally.items / args.duration,
        **latency_ms(tally.latencies),
        "client_cpu": cpu / elapsed,
        "max_step": max(w.max_step for w in workers),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests.client", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--tag", required=True, help="makes item ids and the device id unique per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--first-meter", type=int, default=1)
    parser.add_argument("--meters", type=int, default=20000)
    parser.add_argument("--step-offset", type=int, default=0)
    parser.add_argument("--base", required=True, help="ISO time of step 0")
    parser.add_argument("--no-check", action="store_true", help="do not parse answers (bare baseline)")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
