"""A real Prometheus scraping `podbw run` on a lab node with traffic: every dashboard query and
every alert rule is evaluated against what it stored.

The stack (tests/e2e/conftest.py): shop/client sends to shop/server (limits 50M in, 20M out)
with iperf3; shop/bad has an invalid annotation; ops/legacy a foreign qdisc; shop/late starts
during the traffic (a reconcile inside the queried window). Prometheus scrapes every second
with the `node` and `cluster` target labels a Kubernetes scrape config would add.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
import yaml

from agent.lab.spec import PodSpec
from agent.lab.traffic import iperf
from tests.e2e import panels as p
from tests.e2e.conftest import EGRESS, SERVER_INGRESS_BITS_PER_S
from tests.e2e.stack import CLUSTER_LABEL, NODE_LABEL, RULES_FILE, Stack, finite_values

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

IPERF_S = 16.0
LATE_POD_AFTER_S = 7.0
RATE_INTERVAL = "10s"
"""$__rate_interval for the queries: a window that lies inside the iperf3 run."""
EVAL_BEFORE_END_S = 1.5


@dataclass(frozen=True)
class Traffic:
    iperf_bits_per_s: float
    eval_at_s: float
    """Unix time the queries are evaluated at: the rate window [t-10s, t] is inside the run."""


@pytest.fixture(scope="module")
def traffic(e2e_stack: Stack) -> Iterator[Traffic]:
    lab, pods = e2e_stack.lab, e2e_stack.pods
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["iperf"] = iperf(lab, pods["client"], pods["server"], IPERF_S)
        except Exception as e:  # re-raised in the fixture
            outcome["error"] = e

    sender = threading.Thread(target=send, name="iperf3")
    sender.start()
    try:
        time.sleep(LATE_POD_AFTER_S)
        pods["late"] = lab.add(PodSpec("late", "shop", {EGRESS: "10M"}))
    finally:
        sender.join(IPERF_S + 40)
    if "error" in outcome:
        raise outcome["error"]
    assert not sender.is_alive(), "iperf3 did not finish"
    yield Traffic(outcome["iperf"].received_bits_per_s, time.time() - EVAL_BEFORE_END_S)


def resolve_variables(stack: Stack, dashboard: dict[str, Any], chosen: dict[str, str]) -> dict[str, list[str]]:
    """Run each variable's label_values() query as Grafana would, narrowed by the values chosen
    for the variables before it; returns the values each offered."""
    offered: dict[str, list[str]] = {}
    values = {"__rate_interval": RATE_INTERVAL}
    for variable in p.variables(dashboard):
        if variable["type"] != "query":
            continue
        selector, label = p.label_values_query(variable["query"])
        offered[variable["name"]] = stack.prometheus.label_values(label, p.substitute(selector, values))
        values[variable["name"]] = chosen[variable["name"]]
    return offered


NODE_VIEW = {"cluster": CLUSTER_LABEL, "node": NODE_LABEL, "namespace": ".*", "pod": ".*"}
"""The node dashboard as it opens: namespace and pod on All (allValue `.*`)."""
POD_VIEW = {"cluster": CLUSTER_LABEL, "node": NODE_LABEL, "namespace": "shop", "pod": "server"}


def test_variables_offer_the_lab(e2e_stack: Stack, traffic: Traffic) -> None:
    node = resolve_variables(e2e_stack, p.load("node.json"), NODE_VIEW)
    assert node["cluster"] == [CLUSTER_LABEL] and node["node"] == [NODE_LABEL]
    assert set(node["namespace"]) == {"shop", "ops"}
    assert set(node["pod"]) == {"client", "server", "bad", "legacy", "late"}
    pod = resolve_variables(e2e_stack, p.load("pod.json"), POD_VIEW)
    assert set(pod["pod"]) == {"client", "server", "bad", "late"}, "narrowed to namespace shop"


@pytest.mark.parametrize(("name", "view"), [("node.json", NODE_VIEW), ("pod.json", POD_VIEW)])
def test_every_panel_query_returns_finite_data(
    e2e_stack: Stack, traffic: Traffic, name: str, view: dict[str, str]
) -> None:
    values = {**view, "__rate_interval": RATE_INTERVAL}
    problems = []
    checked = 0
    for query in p.queries(p.load(name)):
        expr = p.substitute(query.expr, values)
        result = e2e_stack.prometheus.query(expr, at_s=traffic.eval_at_s)
        values_found = [float(s["value"][1]) for s in result]
        if not values_found:
            problems.append(f"{query.where}: empty: {expr}")
        elif not all(math.isfinite(v) for v in values_found):
            problems.append(f"{query.where}: {values_found}: {expr}")
        checked += 1
    assert checked >= 25
    assert not problems, "\n".join(problems)


def _panel_query(dashboard: str, title: str, ref: str) -> str:
    for query in p.queries(p.load(dashboard)):
        if query.panel == title and query.ref == ref:
            return query.expr
    raise AssertionError(f"no query {ref} in panel {title!r} of {dashboard}")


def test_pod_throughput_panel_matches_iperf3(e2e_stack: Stack, traffic: Traffic) -> None:
    values = {**POD_VIEW, "__rate_interval": RATE_INTERVAL}
    panel = "Throughput vs limit (ingress)"
    mean = e2e_stack.prometheus.query(p.substitute(_panel_query("pod.json", panel, "A"), values), traffic.eval_at_s)
    limit = e2e_stack.prometheus.query(p.substitute(_panel_query("pod.json", panel, "C"), values), traffic.eval_at_s)
    [mean_bits_per_s] = finite_values(mean)
    [limit_bits_per_s] = finite_values(limit)
    assert limit_bits_per_s == SERVER_INGRESS_BITS_PER_S
    # iperf3 counts TCP payload, the panel link-layer bytes (~4.5 % more at MTU 1500).
    assert mean_bits_per_s == pytest.approx(traffic.iperf_bits_per_s, rel=0.10), (mean_bits_per_s, traffic)
    assert mean_bits_per_s <= limit_bits_per_s * 1.02, "the limit held"


def test_node_ranking_puts_the_busy_pod_first(e2e_stack: Stack, traffic: Traffic) -> None:
    values = {**NODE_VIEW, "__rate_interval": RATE_INTERVAL}
    ranked = e2e_stack.prometheus.query(
        p.substitute(_panel_query("node.json", "Pods ranked by throughput", "A"), values), traffic.eval_at_s
    )
    ranked.sort(key=lambda s: float(s["value"][1]), reverse=True)
    top_two = {(s["metric"]["pod"], s["metric"]["direction"]) for s in ranked[:2]}
    assert top_two == {("server", "ingress"), ("client", "egress")}, "one flow, seen from both ends"
    utilization = e2e_stack.prometheus.query(
        p.substitute(_panel_query("node.json", "Pods ranked by throughput", "C"), values), traffic.eval_at_s
    )
    by_pod = {(s["metric"]["pod"], s["metric"]["direction"]): float(s["value"][1]) for s in utilization}
    assert 0.9 < by_pod[("server", "ingress")] <= 1.05, by_pod


def test_alert_rules_evaluate_on_real_series(e2e_stack: Stack, traffic: Traffic) -> None:
    groups = e2e_stack.prometheus.rule_groups()
    rules = [rule for group in groups for rule in group["rules"]]
    with open(RULES_FILE, encoding="utf-8") as f:
        in_file = yaml.safe_load(f)["groups"]
    assert len(rules) == sum(len(group["rules"]) for group in in_file) >= 10
    assert all(rule["health"] == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]
    alerts = {
        (a["labels"]["alertname"], a["labels"].get("namespace"), a["labels"].get("pod")): a
        for a in e2e_stack.prometheus.alerts()
    }
    invalid = alerts[("PodbwInvalidAnnotation", "shop", "bad")]
    foreign = alerts[("PodbwForeignQdisc", "ops", "legacy")]
    for alert in (invalid, foreign):
        assert alert["state"] == "pending"  # their `for:` is minutes
        assert alert["labels"]["node"] == NODE_LABEL and alert["labels"]["cluster"] == CLUSTER_LABEL
    assert invalid["labels"]["direction"] == "ingress"
    assert "not limited" in invalid["annotations"]["description"]
    names = {name for name, _, _ in alerts}
    assert not names & {"PodbwAgentDown", "PodbwSamplerStalled", "PodbwShapingErrors", "PodbwReconcileLatencyHigh",
                        "PodbwAgentsAbsent"}
