"""Prometheus metrics: what operators watch (README, "Metrics", explains each one)."""

from __future__ import annotations

import collections
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.model import Submission, Verdict


class Metrics:
    """The gateway's metrics, in a registry of their own (one per running gateway)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.received = Counter(
            "gateway_submissions_total",
            "Submissions decided, by channel",
            ["channel"],
            registry=self.registry,
        )
        self.verdicts = Counter(
            "gateway_verdicts_total",
            "Verdicts by channel and status (accepted, flagged, needs_confirmation, rejected)",
            ["channel", "status"],
            registry=self.registry,
        )
        self.reasons = Counter(
            "gateway_reasons_total",
            "Validation findings by channel and reason code",
            ["channel", "code"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "gateway_duplicates_total",
            "Repeated messages answered from the store",
            ["channel"],
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "gateway_intake_commit_seconds",
            "Time to decide and durably commit one group of submissions",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.group_size = Histogram(
            "gateway_intake_group_size",
            "Submissions sharing one commit (group commit)",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "gateway_http_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.backlog = Gauge(
            "gateway_billing_backlog",
            "Accepted readings not yet committed to billing, by the account's branch",
            ["branch"],
            registry=self.registry,
        )
        self.oldest_age = Gauge(
            "gateway_billing_oldest_uncommitted_seconds",
            "Age of the oldest accepted reading not yet committed to billing, by branch",
            ["branch"],
            registry=self.registry,
        )
        self.overdue = Gauge(
            "gateway_billing_overdue",
            "Accepted readings past their working-day deadline, by branch",
            ["branch"],
            registry=self.registry,
        )
        self.next_due = Gauge(
            "gateway_billing_next_due_seconds",
            "Seconds until the earliest due time of an accepted reading not yet committed, by branch (negative: past it; 0 with no backlog)",
            ["branch"],
            registry=self.registry,
        )
        self.held = Gauge(
            "gateway_readings_held",
            "Readings waiting for the sender's confirmation or the back office, by branch",
            ["branch", "status"],
            registry=self.registry,
        )
        self.held_overdue = Gauge(
            "gateway_readings_held_overdue",
            "Held readings (by branch and status) past the due time they got at receipt",
            ["branch", "status"],
            registry=self.registry,
        )
        self.held_events = Counter(
            "gateway_held_events_total",
            "What the held-readings job did: reminded (a reminder to confirm was queued), escalated, expired",
            ["event"],
            registry=self.registry,
        )
        self.notices = Counter(
            "gateway_resident_notices_total",
            "Notices to residents by kind (confirm_reminder, committed, expired), channel and outcome",
            ["kind", "channel", "outcome"],
            registry=self.registry,
        )
        # Billing sinks (gateway/billing_delivery.py), by the sink's name (http, folder, nats).
        self.sink_batches = Counter(
            "gateway_sink_batches_total",
            "Delivery attempts of batches by sink and outcome (delivered: acknowledged; failed)",
            ["sink", "outcome"],
            registry=self.registry,
        )
        self.sink_readings = Counter(
            "gateway_sink_readings_total",
            "Readings in batches the sink acknowledged",
            ["sink"],
            registry=self.registry,
        )
        self.sink_pending = Gauge(
            "gateway_sink_pending_readings",
            "Readings waiting for the sink (a billing sink: not yet committed; a copy sink: committed, not yet copied)",
            ["sink"],
            registry=self.registry,
        )
        self.sink_failing = Gauge(
            "gateway_sink_failing_seconds",
            "How long the sink has been failing to deliver its current batch (0: not failing)",
            ["sink"],
            registry=self.registry,
        )
        self.sink_last_delivery = Gauge(
            "gateway_sink_last_delivery_timestamp_seconds",
            "Unix time of the sink's last acknowledged batch (0: none yet)",
            ["sink"],
            registry=self.registry,
        )

        self._request_route: dict[str, Histogram] = {}  # route -> its labelled child, looked up once

    def observe_request(self, route: str, seconds: float) -> None:
        """`request_seconds.labels(route).observe(seconds)`, without the label lookup per request."""
        child = self._request_route.get(route)
        if child is None:
            child = self._request_route[route] = self.request_seconds.labels(route)
        child.observe(seconds)

    def observe_group(self, size: int, seconds: float) -> None:
        self.group_size.observe(size)
        self.commit_seconds.observe(seconds)

    def observe_verdicts(self, decided: Iterable[tuple[Submission, Verdict]]) -> None:
        """Count a group's verdicts by channel, status and reason: each label set is looked up
        once, not per reading."""
        received: collections.Counter[str] = collections.Counter()
        verdicts: collections.Counter[tuple[str, str]] = collections.Counter()
        duplicates: collections.Counter[str] = collections.Counter()
        reasons: collections.Counter[tuple[str, str]] = collections.Counter()
        for sub, verdict in decided:
            channel = sub.channel.value
            received[channel] += 1
            verdicts[channel, verdict.status.value] += 1
            if verdict.duplicate:
                duplicates[channel] += 1
            for r in verdict.reasons:
                reasons[channel, r.code] += 1
        for channel, n in received.items():
            self.received.labels(channel).inc(n)
        for (channel, status), n in verdicts.items():
            self.verdicts.labels(channel, status).inc(n)
        for channel, n in duplicates.items():
            self.duplicates.labels(channel).inc(n)
        for (channel, code), n in reasons.items():
            self.reasons.labels(channel, code).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
