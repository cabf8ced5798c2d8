"""deploy/prometheus/: the alert rules pass `promtool check rules` and their own `promtool test rules`,
and the rules and the Grafana dashboard read only metrics (and labels) the gateway exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from adapters.meters.poller import ModbusMetrics
from adapters.mqtt.subscriber import MqttMetrics
from adapters.sms.inbox import _replies_counter
from gateway.metrics import Metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
TESTS = ("alerts-test.yml", "alerts-test-busy-hours.yml")
NAME = re.compile(r"\bgateway_[a-z0-9_]+\b")
MATCHERS = re.compile(r"\b(gateway_[a-z0-9_]+)\{([^}]*)\}")


def _exported() -> dict[str, set[str]]:
    """Every sample name the gateway's /metrics can carry (the core's and each door's), with its labels."""
    metrics = Metrics()
    ModbusMetrics(metrics.registry)
    MqttMetrics(metrics.registry)
    _replies_counter(metrics)
    collectors: dict[str, Any] = metrics.registry._names_to_collectors  # sample name -> collector
    return {name: set(collector._labelnames) for name, collector in collectors.items()}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: the Debian package prometheus provides it (scripts/system-deps.sh)")
    return found


def _check_names(text: str, where: str, exported: dict[str, set[str]]) -> None:
    unknown = sorted(set(NAME.findall(text)) - set(exported))
    assert not unknown, f"{where} reads metrics the gateway does not export: {unknown}"
    for name, matchers in MATCHERS.findall(text):
        labels = {m.split("=")[0].split("!")[0].strip() for m in matchers.split(",") if m.strip()}
        extra = (
            labels - exported[name] - {"job", "instance"} - ({"le"} if name.endswith("_bucket") else set())
        )
        assert not extra, f"{where}: {name} has no label {sorted(extra)}"


def test_rules_pass_promtool_check_and_their_tests() -> None:
    promtool = _promtool()
    checked = subprocess.run(
        [promtool, "check", "rules", "alerts.yml"], cwd=DEPLOY, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", *TESTS], cwd=DEPLOY, capture_output=True, text=True, timeout=120
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(TESTS)


def test_every_alert_has_a_test() -> None:
    rules = set(re.findall(r"^\s+- alert: (\w+)$", (DEPLOY / "alerts.yml").read_text(), re.M))
    tested = {
        name for test in TESTS for name in re.findall(r"alertname: (\w+)$", (DEPLOY / test).read_text(), re.M)
    }
    assert rules and rules == tested


def test_rules_read_only_exported_metrics() -> None:
    exported = _exported()
    _check_names((DEPLOY / "alerts.yml").read_text(), "alerts.yml", exported)
    for test in TESTS:
        _check_names((DEPLOY / test).read_text(), test, exported)


def test_dashboard_reads_only_exported_metrics() -> None:
    exported = _exported()
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 20
    read = set()
    for expr in exprs:
        _check_names(expr, f"grafana-dashboard.json: {expr}", exported)
        read |= set(NAME.findall(expr))
    # Everything operators are told to watch in the README's metrics table is on the dashboard.
    for name in ("gateway_billing_overdue", "gateway_sink_failing_seconds", "gateway_submissions_total"):
        assert name in read
    assert all(panel["gridPos"]["w"] <= 24 for panel in dashboard["panels"])
