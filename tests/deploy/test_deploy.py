"""deploy/: the Prometheus rules and the Grafana dashboard name only metrics a real
``/metrics`` exports (a renamed metric breaks this test, not an alert at 3 a.m.)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import Api
from tests.support.servers import unavailable

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC_NAME = re.compile(r"\bearmark_[a-z0-9_]+")
RULE_ALERTS = {"EarmarkStoreDown", "EarmarkDatabaseDown", "EarmarkFlusherLagging",
               "EarmarkFenced", "EarmarkWebhookBacklog", "EarmarkSweeperFailing",
               "EarmarkDiscrepanciesOverdue"}  # fmt: skip


async def exported_names(api: Api) -> set[str]:
    """Every family and sample name of /metrics (a counter's family and ``_total``, a
    histogram's ``_bucket``...), after one request so the labelled series exist."""
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 1})
    text = (await api.anon.get("/metrics")).text
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names |= {sample.name for sample in family.samples}
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "count", "sum")}
    return names


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "prometheus-rules.yml").read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8"))
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def test_the_rules_cover_the_alerts_operators_need() -> None:
    assert {rule["alert"] for rule in rules()} == RULE_ALERTS
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


async def test_every_metric_in_the_rules_exists(api: Api) -> None:
    exported = await exported_names(api)
    used = {name for rule in rules() for name in METRIC_NAME.findall(rule["expr"])}
    annotated = {
        name for rule in rules() for name in METRIC_NAME.findall(json.dumps(rule["annotations"]))
    }
    assert used, "the rules name no metric"
    assert used <= exported, sorted(used - exported)
    assert annotated <= exported, sorted(annotated - exported)


async def test_every_metric_in_the_dashboard_exists(api: Api) -> None:
    exported = await exported_names(api)
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    used = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert used <= exported, sorted(used - exported)
    # The dashboard shows what the rules alert on.
    alerted = {name for rule in rules() for name in METRIC_NAME.findall(rule["expr"])}
    assert alerted <= used, sorted(alerted - used)


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        unavailable("promtool is not installed (apt-get install prometheus)")
    return found


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    """What .ci/run runs, from the test suite too: `check rules` and the rules' unit
    tests (deploy/prometheus-rules.test.yml) with Prometheus's own tool."""
    tool = promtool()
    for command in ([tool, "check", "rules", "prometheus-rules.yml"],
                    [tool, "test", "rules", "prometheus-rules.test.yml"]):  # fmt: skip
        done = subprocess.run(
            command, cwd=DEPLOY, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout, done.stdout
