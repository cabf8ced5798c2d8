"""Billing hand-off: leases, commits, expiry, concurrency, auth, the working-day SLA and its metrics.

Every test runs on SQLite and on PostgreSQL (the `running` and `engine` fixtures are
parametrized over both). Readings enter through the device route or the intake, as in production.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.billing import BatchNotFound, Billing, LeaseExpired
from gateway.model import Channel, Submission
from gateway.store.schema import batches, readings
from tests.conftest import BILLING_TOKEN, DEVICE_TOKEN, FakeClock, Running, stored

LEASE = "/api/v1/billing/batches"
SLA = "/api/v1/billing/sla"
READING_KEYS = {
    "reading_id",
    "account",
    "meter_serial",
    "zone",
    "value",
    "raw_value",
    "ratio",
    "taken_at",
    "received_at",
    "channel",
    "source",
    "employee",
    "period",
    "verdict",
    "reasons",
    "due_at",
    "committed_at",
    "control",
}
SINGLE_RATE = ("M-1", "M-4A", "M-4B", "M-5", "M-6")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _error(body: object) -> dict[str, Any]:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err, dict) and set(err) == {"code", "message"}, body
    assert isinstance(err["code"], str) and isinstance(err["message"], str) and err["message"]
    return err


async def _lease(running: Running, limit: int | None = None, token: str = BILLING_TOKEN) -> dict[str, Any]:
    status, body = await running.post(LEASE, {} if limit is None else {"limit": limit}, token=token)
    assert status == 201, body
    assert isinstance(body, dict)
    return body


async def _commit(running: Running, batch_id: str, token: str = BILLING_TOKEN) -> tuple[int, Any]:
    return await running.post(f"{LEASE}/{batch_id}/commit", token=token)


async def _sla(running: Running) -> dict[str, Any]:
    status, body = await running.get(SLA, token=BILLING_TOKEN)
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def _push_many(running: Running, count: int, chunk: int = 100) -> list[int]:
    """`count` accepted single-rate readings spread over five meters; returns their reading ids."""
    now = running.clock.now
    items = []
    for i in range(count):
        meter = SINGLE_RATE[i % len(SINGLE_RATE)]
        step = i // len(SINGLE_RATE)
        items.append(
            {
                "id": f"bulk-{i}",
                "meter": meter,
                # 864 s (0.01 day) apart per meter, 0.1 kWh each: well inside 10 kW
                "taken_at": _iso(now - timedelta(seconds=864 * (count - step))),
                "value": f"{1000 + step / 10:.1f}",
            }
        )
    ids: list[int] = []
    for start in range(0, count, chunk):
        results = await running.push(*items[start : start + chunk])
        for r in results:
            assert r["status"] == "accepted", r
            ids.extend(stored(x) for x in r["readings"])
    assert len(set(ids)) == count
    return ids


async def _metric(running: Running, name: str) -> float:
    """The metric summed over its series (the billing gauges have one per branch)."""
    status, text = await running.get("/metrics")
    assert status == 200 and isinstance(text, str)
    values = [
        float(line.split()[-1]) for line in text.splitlines() if line.startswith((name + " ", name + "{"))
    ]
    assert values, f"{name} not in /metrics"
    return sum(values)


async def _resident(running: Running, meter: str, value: str) -> str:
    """A cabinet (resident) submission through the intake at the clock's time; returns its status."""
    verdict = await running.gateway.intake.submit(
        Submission(
            channel=Channel.CABINET,
            received_at=running.clock.now,
            sender="cabinet-user-1",
            meter_serial=meter,
            values={"T": value},
        )
    )
    return verdict.status.value


# -- what a lease hands out -------------------------------------------------------------------


async def test_lease_hands_out_accepted_readings_in_the_documented_shape(running: Running) -> None:
    taken = running.clock.now - timedelta(hours=1)
    results = await running.push(
        {"id": "s-1", "meter": "M-1", "value": "12345.67", "taken_at": _iso(taken)},
        {"id": "s-2", "meter": "M-2", "values": {"T1": "100.10", "T2": "0042,5"}},
    )
    assert [r["status"] for r in results] == ["accepted", "accepted"], results
    expected_ids = [x["reading_id"] for r in results for x in r["readings"]]

    body = await _lease(running, 10)
    assert set(body) == {"batch_id", "lease_seconds", "readings"}
    assert body["lease_seconds"] == running.gateway.config.billing.lease_seconds
    got = body["readings"]
    assert [r["reading_id"] for r in got] == expected_ids
    for r in got:
        assert set(r) == READING_KEYS, r
    first = got[0]
    assert first["account"] == "1000001"
    assert first["meter_serial"] == "M-1"
    assert first["zone"] == "T"
    assert first["value"] == "12345.67" and isinstance(first["value"], str)
    assert _at(first["taken_at"]) == taken
    assert _at(first["received_at"]) == running.clock.now
    assert first["channel"] == "device"
    assert first["source"] == "device:token-1"
    assert first["employee"] is None
    assert first["control"] is False  # not an inspector's control reading
    assert first["period"] == "2026-11"
    assert first["verdict"] == "accepted"
    assert first["reasons"] == []
    assert first["committed_at"] is None
    # received on Tuesday 17 Nov 2026: due at the end of Wednesday 18 Nov, Moscow time
    assert _at(first["due_at"]) == datetime(2026, 11, 18, 21, 0, tzinfo=UTC)
    # values exactly as validated: trailing zeros kept, leading zeros and the comma normalised
    assert [(r["zone"], r["value"]) for r in got[1:]] == [("T1", "100.10"), ("T2", "42.5")]
    assert {r["meter_serial"] for r in got[1:]} == {"M-2"}


async def test_rejected_flagged_and_unconfirmed_readings_are_never_leased(running: Running) -> None:
    clock = running.clock
    start = clock.now
    # needs_confirmation: a resident history of 30 days at 10 kWh/day, then 1000 kWh in 30 days
    clock.now = start - timedelta(days=60)
    assert await _resident(running, "M-6", "1000") == "accepted"
    clock.now = start - timedelta(days=30)
    assert await _resident(running, "M-6", "1300") == "accepted"
    clock.now = start
    assert await _resident(running, "M-6", "2300") == "needs_confirmation"
    # flagged: the device says 500, the resident 600 two days later (the cross-check disagrees)
    clock.now = start - timedelta(days=2)
    assert (await running.push({"id": "f-1", "meter": "M-5", "value": "500"}))[0]["status"] == "accepted"
    clock.now = start
    assert await _resident(running, "M-5", "600") == "flagged"
    # rejected but stored with its value: more digits than the counter has
    rejected = await running.push({"id": "r-1", "meter": "M-1", "value": "1234567"})
    assert rejected[0]["status"] == "rejected"
    assert rejected[0]["readings"][0]["reading_id"] is not None
    good = await running.push({"id": "g-1", "meter": "M-4A", "value": "77"})
    assert good[0]["status"] == "accepted"

    async with running.gateway.engine.connect() as conn:
        verdicts: dict[str, int] = dict(
            (await conn.execute(select(readings.c.verdict, func.count()).group_by(readings.c.verdict))).all()
        )
    assert verdicts == {"accepted": 4, "needs_confirmation": 1, "flagged": 1, "rejected": 1}

    leased = (await _lease(running, 100))["readings"]
    assert {r["verdict"] for r in leased} == {"accepted"}
    assert sorted((r["meter_serial"], r["value"]) for r in leased) == [
        ("M-4A", "77"),
        ("M-5", "500"),
        ("M-6", "1000"),
        ("M-6", "1300"),
    ]
    sla = await _sla(running)
    assert sla["held"] == {"flagged": 1, "needs_confirmation": 1}
    assert sla["pending"] == 4
    assert await _metric(running, "gateway_billing_backlog") == 4


async def test_limit_is_respected_and_leases_never_overlap(running: Running) -> None:
    ids = await _push_many(running, 12)
    first = await _lease(running, 5)
    second = await _lease(running, 5)
    third = await _lease(running, 5)
    batches_ = [[r["reading_id"] for r in b["readings"]] for b in (first, second, third)]
    assert [len(b) for b in batches_] == [5, 5, 2]
    assert len({first["batch_id"], second["batch_id"], third["batch_id"]}) == 3
    flat = [i for b in batches_ for i in b]
    assert sorted(flat) == sorted(ids) and len(set(flat)) == len(flat)
    # everything is in a live lease: nothing more to hand out
    assert (await _lease(running, 5))["readings"] == []


@pytest.mark.parametrize("limit", [0, -1, 5001, "10", 2.5, True, None])
async def test_bad_limit_is_a_json_400(running: Running, limit: object) -> None:
    status, body = await running.post(LEASE, {"limit": limit}, token=BILLING_TOKEN)
    assert status == 400
    assert _error(body)["code"] == "bad_limit"


async def test_commit_is_idempotent_and_committed_readings_are_not_leased_again(running: Running) -> None:
    ids = await _push_many(running, 3)
    batch = await _lease(running, 10)
    running.clock.advance(seconds=30)
    committed_at = running.clock.now
    status, body = await _commit(running, batch["batch_id"])
    assert status == 200, body
    assert body == {
        "batch_id": batch["batch_id"],
        "committed_at": body["committed_at"],
        "size": 3,
        "already_committed": False,
    }
    assert _at(body["committed_at"]) == committed_at

    running.clock.advance(seconds=30)
    status, again = await _commit(running, batch["batch_id"])
    assert status == 200, again
    assert again["already_committed"] is True
    assert again["committed_at"] == body["committed_at"]
    assert again["size"] == 3

    # long after the lease would have expired: committed readings stay committed
    running.clock.advance(days=3)
    assert (await _lease(running, 10))["readings"] == []
    status, third = await _commit(running, batch["batch_id"])
    assert status == 200 and third["already_committed"] is True
    async with running.gateway.engine.connect() as conn:
        stored = (
            await conn.execute(select(readings.c.id, readings.c.committed_at).where(readings.c.id.in_(ids)))
        ).all()
    assert {r.committed_at for r in stored} == {committed_at}
    sla = await _sla(running)
    assert sla["pending"] == 0 and sla["readings"] == []


async def test_unknown_batch_is_a_json_404(running: Running) -> None:
    status, body = await _commit(running, "00000000-0000-0000-0000-000000000000")
    assert status == 404
    assert _error(body)["code"] == "batch_not_found"
    status, body = await _commit(running, "not-a-uuid-and-longer-than-thirty-six-characters-xxxxxxxx")
    assert status == 404
    assert _error(body)["code"] == "batch_not_found"


async def test_expired_lease_cannot_be_committed_and_its_readings_return(running: Running) -> None:
    ids = await _push_many(running, 4)
    lease_seconds = running.gateway.config.billing.lease_seconds
    old = await _lease(running, 10)
    assert sorted(r["reading_id"] for r in old["readings"]) == sorted(ids)
    # still live one second before expiry: nothing to hand out
    running.clock.advance(seconds=lease_seconds - 1)
    assert (await _lease(running, 10))["readings"] == []
    running.clock.advance(seconds=2)

    status, body = await _commit(running, old["batch_id"])
    assert status == 409
    assert _error(body)["code"] == "lease_expired"

    new = await _lease(running, 10)
    assert sorted(r["reading_id"] for r in new["readings"]) == sorted(ids)
    assert all(r["committed_at"] is None for r in new["readings"])
    status, body = await _commit(running, new["batch_id"])
    assert status == 200 and body["already_committed"] is False and body["size"] == 4
    # the old batch stays expired, and does not steal the readings committed through the new one
    status, body = await _commit(running, old["batch_id"])
    assert status == 409 and _error(body)["code"] == "lease_expired"
    assert (await _lease(running, 10))["readings"] == []


async def test_billing_class_directly(engine: Any, tmp_path: Path) -> None:
    """The same rules without HTTP: an empty lease, an unknown batch, an expired one."""
    from gateway.registry import import_registry
    from tests.conftest import REGISTRY_CSV

    csv_path = tmp_path / "r.csv"
    csv_path.write_text(REGISTRY_CSV, encoding="utf-8")
    await import_registry(engine, csv_path)
    billing = Billing(engine, lease_seconds=60)
    now = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
    batch_id, rows = await billing.lease("t", 10, now)
    assert rows == []
    with pytest.raises(BatchNotFound):
        await billing.commit("nope", now)
    result = await billing.commit(batch_id, now + timedelta(seconds=59))
    assert result.already is False and result.size == 0
    other, _ = await billing.lease("t", 10, now)
    with pytest.raises(LeaseExpired):
        await billing.commit(other, now + timedelta(seconds=60))
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(batches))).scalar_one() == 2
    backlog = await billing.backlog(now)
    assert backlog["pending"] == 0 and backlog["overdue"] == 0 and backlog["next_due_at"] is None


# -- many billing clients at once -------------------------------------------------------------


async def test_concurrent_leases_hand_out_every_reading_exactly_once(running: Running) -> None:
    ids = await _push_many(running, 500)
    results = await asyncio.gather(*(_lease(running, 70) for _ in range(8)))
    got = [r["reading_id"] for b in results for r in b["readings"]]
    assert all(len(b["readings"]) <= 70 for b in results)
    assert len({b["batch_id"] for b in results}) == 8
    assert len(got) == len(set(got)), "a reading was leased twice"
    assert sorted(got) == sorted(ids)
    assert (await _lease(running, 100))["readings"] == []
    # each reading points at the batch that handed it out
    async with running.gateway.engine.connect() as conn:
        owner = dict((await conn.execute(select(readings.c.id, readings.c.batch_id))).all())
    for b in results:
        assert {owner[r["reading_id"]] for r in b["readings"]} <= {b["batch_id"]}

    # concurrent commits of all batches, then concurrent leases again: nothing is handed out twice
    commits = await asyncio.gather(*(_commit(running, b["batch_id"]) for b in results))
    assert all(status == 200 for status, _ in commits)
    assert sum(body["size"] for _, body in commits) == 500
    again = await asyncio.gather(*(_lease(running, 70) for _ in range(8)))
    assert all(b["readings"] == [] for b in again)


async def test_concurrent_leases_after_expiry_share_nothing(running: Running) -> None:
    ids = await _push_many(running, 120)
    first = await _lease(running, 120)
    assert len(first["readings"]) == 120
    running.clock.advance(seconds=running.gateway.config.billing.lease_seconds + 1)
    results = await asyncio.gather(*(_lease(running, 20) for _ in range(8)))
    got = [r["reading_id"] for b in results for r in b["readings"]]
    assert len(got) == len(set(got)) and sorted(got) == sorted(ids)


# -- who may call ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", LEASE), ("post", LEASE + "/some-batch/commit"), ("get", SLA)],
)
async def test_billing_routes_need_a_billing_token(running: Running, method: str, path: str) -> None:
    call = running.post if method == "post" else running.get
    status, body = await call(path)
    assert status == 401 and _error(body)["code"] == "unauthorized"
    status, body = await call(path, token="wrong-token")
    assert status == 403 and _error(body)["code"] == "forbidden"
    status, body = await call(path, token=DEVICE_TOKEN)
    assert status == 403 and _error(body)["code"] == "forbidden"
    async with running.http.request(
        method.upper(), running.base + path, headers={"Authorization": f"Basic {BILLING_TOKEN}"}
    ) as resp:
        assert resp.status == 401
        _error(await resp.json())


async def test_second_billing_token_works_and_device_route_refuses_billing_token(running: Running) -> None:
    await _push_many(running, 2)
    batch = await _lease(running, 1, token="second-billing-token")
    assert len(batch["readings"]) == 1
    status, body = await _commit(running, batch["batch_id"], token="second-billing-token")
    assert status == 200, body
    status, body = await running.post(
        "/api/v1/readings", {"readings": [{"meter": "M-1", "value": "1"}]}, token=BILLING_TOKEN
    )
    assert status == 403 and _error(body)["code"] == "forbidden"


# -- the working-day SLA ----------------------------------------------------------------------


async def test_sla_across_the_new_year_holidays(running: Running) -> None:
    clock: FakeClock = running.clock
    clock.now = datetime(2025, 12, 30, 7, 0, tzinfo=UTC)  # 10:00 Moscow time, Tuesday
    res = await running.push({"id": "ny-1", "meter": "M-1", "value": "500.5"})
    assert res[0]["status"] == "accepted", res
    reading_id = res[0]["readings"][0]["reading_id"]
    due = datetime(2026, 1, 12, 21, 0, tzinfo=UTC)  # the end of Monday 12 Jan 2026 in Moscow

    clock.now = datetime(2026, 1, 12, 12, 0, tzinfo=UTC)
    sla = await _sla(running)
    assert sla["pending"] == 1 and sla["overdue"] == 0
    assert _at(sla["next_due_at"]) == due
    assert _at(sla["oldest_received_at"]) == datetime(2025, 12, 30, 7, 0, tzinfo=UTC)
    assert sla["held"] == {"flagged": 0, "needs_confirmation": 0}
    [item] = sla["readings"]
    assert item["reading_id"] == reading_id and item["value"] == "500.5"
    assert _at(item["due_at"]) == due
    assert item["overdue"] is False
    assert await _metric(running, "gateway_billing_backlog") == 1
    assert await _metric(running, "gateway_billing_overdue") == 0
    age = await _metric(running, "gateway_billing_oldest_uncommitted_seconds")
    assert age == (clock.now - datetime(2025, 12, 30, 7, 0, tzinfo=UTC)).total_seconds()

    clock.now = due - timedelta(seconds=1)
    assert (await _sla(running))["overdue"] == 0
    clock.now = due + timedelta(seconds=1)
    sla = await _sla(running)
    assert sla["overdue"] == 1 and sla["readings"][0]["overdue"] is True

    clock.now = datetime(2026, 1, 13, 9, 0, tzinfo=UTC)
    sla = await _sla(running)
    assert sla["pending"] == 1 and sla["overdue"] == 1
    assert sla["readings"][0]["overdue"] is True
    assert await _metric(running, "gateway_billing_backlog") == 1
    assert await _metric(running, "gateway_billing_overdue") == 1

    batch = await _lease(running, 10)
    assert [r["reading_id"] for r in batch["readings"]] == [reading_id]
    # leased but not committed: still pending and still overdue
    assert (await _sla(running))["overdue"] == 1
    status, _ = await _commit(running, batch["batch_id"])
    assert status == 200
    sla = await _sla(running)
    assert sla["pending"] == 0 and sla["overdue"] == 0 and sla["readings"] == []
    assert sla["next_due_at"] is None and sla["oldest_received_at"] is None
    assert await _metric(running, "gateway_billing_backlog") == 0
    assert await _metric(running, "gateway_billing_overdue") == 0


async def test_sla_lists_soonest_deadline_first_and_counts_match_metrics(running: Running) -> None:
    clock = running.clock
    # Friday 20 Nov 2026, 20:00 Moscow: due at the end of Monday 23 Nov
    clock.now = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)
    late = await running.push({"id": "o-1", "meter": "M-1", "value": "100"})
    # Monday 16 Nov 2026, 10:00 Moscow: due at the end of Tuesday 17 Nov
    clock.now = datetime(2026, 11, 16, 7, 0, tzinfo=UTC)
    early = await running.push({"id": "o-2", "meter": "M-5", "value": "100"})
    # Thursday 19 Nov 2026: due at the end of Friday 20 Nov
    clock.now = datetime(2026, 11, 19, 7, 0, tzinfo=UTC)
    middle = await running.push({"id": "o-3", "meter": "M-6", "value": "100"})
    ids = [r[0]["readings"][0]["reading_id"] for r in (early, middle, late)]

    clock.now = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)  # Saturday
    sla = await _sla(running)
    assert [r["reading_id"] for r in sla["readings"]] == ids
    assert [_at(r["due_at"]) for r in sla["readings"]] == [
        datetime(2026, 11, 17, 21, 0, tzinfo=UTC),
        datetime(2026, 11, 20, 21, 0, tzinfo=UTC),
        datetime(2026, 11, 23, 21, 0, tzinfo=UTC),
    ]
    assert [r["overdue"] for r in sla["readings"]] == [True, True, False]
    assert sla["pending"] == 3 and sla["overdue"] == 2
    assert _at(sla["next_due_at"]) == datetime(2026, 11, 17, 21, 0, tzinfo=UTC)
    assert await _metric(running, "gateway_billing_backlog") == 3
    assert await _metric(running, "gateway_billing_overdue") == 2


async def test_values_keep_their_exact_decimal_form(running: Running) -> None:
    values = ["0.001", "99999.999", "12345.670", "7"]
    meters = ["M-1", "M-4A", "M-5", "M-6"]
    res = await running.push(
        *({"id": f"x-{m}", "meter": m, "value": v} for m, v in zip(meters, values, strict=True))
    )
    assert all(r["status"] == "accepted" for r in res), res
    leased = (await _lease(running, 10))["readings"]
    assert {r["meter_serial"]: r["value"] for r in leased} == dict(zip(meters, values, strict=True))
    assert all(Decimal(r["value"]) == Decimal(v) for r, v in zip(leased, values, strict=True))


async def test_commit_racing_a_release_of_its_readings_is_refused(engine: Any, running: Running) -> None:
    """A commit that arrives (by its own clock) before expiry, after another client re-leased the
    readings, must not report success: billing would believe it has readings that are in another batch."""
    ids = await _push_many(running, 3)
    billing = Billing(engine, lease_seconds=60)
    t0 = running.clock.now
    old, rows = await billing.lease("a", 10, t0)
    assert sorted(r["reading_id"] for r in rows) == sorted(ids)
    new, rows = await billing.lease("b", 10, t0 + timedelta(seconds=61))
    assert sorted(r["reading_id"] for r in rows) == sorted(ids)
    with pytest.raises(LeaseExpired):
        await billing.commit(old, t0 + timedelta(seconds=59))
    async with engine.connect() as conn:
        assert (
            await conn.execute(select(batches.c.committed_at).where(batches.c.id == old))
        ).scalar_one() is None
        assert (
            await conn.execute(select(func.count()).where(readings.c.committed_at.is_not(None)))
        ).scalar_one() == 0
    done = await billing.commit(new, t0 + timedelta(seconds=62))
    assert done.size == 3 and done.already is False


async def test_device_readings_a_minute_apart_reach_billing(
    running: Running, request: pytest.FixtureRequest
) -> None:
    """A smart meter pushing every minute: every reading is accepted and leased once, in order."""
    start = running.clock.now
    for i in range(5):  # one request a minute, as the meter sends them
        running.clock.now = start + timedelta(minutes=i)
        [result] = await running.push({"id": f"min-{i}", "meter": "M-1", "value": f"{2000 + i / 10:.1f}"})
        assert result["status"] == "accepted", result
    leased = (await _lease(running, 100))["readings"]
    assert [r["value"] for r in leased] == [f"{2000 + i / 10:.1f}" for i in range(5)]
