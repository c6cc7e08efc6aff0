"""The Grafana dashboards and the alert rules, checked offline.

The committed JSON must be what the grafanalib sources generate; every panel is described,
uses our units and variables; every query parses (promtool); the alert rules pass promtool's
check and their unit tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli import dashboards_cmd
from agent.cli.main import main
from tests.e2e import panels as p

DASHBOARDS = Path(p.DASHBOARDS_DIR)
EXPECTED_UIDS = {"node.json": ("podbw-node", "podbw / Node"), "pod.json": ("podbw-pod", "podbw / Pod")}
VARIABLES = ["datasource", "cluster", "node", "namespace", "pod"]
BYTE_RATE_METRICS = re.compile(
    r"podbw_network_(receive|transmit)_bytes_total|podbw_throughput(_peak)?_bytes_per_second"
    r"|podbw_limit_rate_bytes_per_second"
)
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) not installed")


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return {name: p.load(name) for name in p.DASHBOARD_FILES}


# ---- generation -----------------------------------------------------------------------------


def test_committed_json_is_what_the_sources_generate() -> None:
    rendered = dashboards_cmd.render_all(str(DASHBOARDS))
    assert sorted(rendered) == sorted(p.DASHBOARD_FILES)
    stale = dashboards_cmd.stale_files(rendered, str(DASHBOARDS))
    assert not stale, f"{stale} are stale: run `podbw dashboards` (make dashboards) and commit the JSON"
    for text in rendered.values():
        assert text.endswith("}\n")


def test_generation_is_deterministic() -> None:
    first = dashboards_cmd.render_all(str(DASHBOARDS))
    assert dashboards_cmd.render_all(str(DASHBOARDS)) == first


def test_cli_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["dashboards", "--output-dir", str(out), "--check"]) == 1  # nothing written yet
    assert "stale" in capsys.readouterr().err
    assert main(["dashboards", "--output-dir", str(out)]) == 0
    assert sorted(os.listdir(out)) == sorted(p.DASHBOARD_FILES)
    for name in p.DASHBOARD_FILES:
        assert (out / name).read_text() == (DASHBOARDS / name).read_text()
    assert main(["dashboards", "--output-dir", str(out), "--check"]) == 0
    (out / "pod.json").write_text((out / "pod.json").read_text().replace("podbw / Pod", "edited"))
    assert main(["dashboards", "--output-dir", str(out), "--check"]) == 1


def test_cli_reports_a_missing_source_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboards", "--source-dir", str(tmp_path / "nope"), "--check"]) == 2
    assert "cannot list" in capsys.readouterr().err


def test_multi_cluster_shows_the_cluster_variable(tmp_path: Path) -> None:
    assert main(["dashboards", "--output-dir", str(tmp_path), "--multi-cluster"]) == 0
    for name in p.DASHBOARD_FILES:
        cluster = next(v for v in p.variables(json.loads((tmp_path / name).read_text())) if v["name"] == "cluster")
        assert cluster["hide"] == 0


# ---- content --------------------------------------------------------------------------------


def test_uids_and_titles_are_stable(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, (uid, title) in EXPECTED_UIDS.items():
        assert (dashboards[name]["uid"], dashboards[name]["title"]) == (uid, title)
        assert dashboards[name]["tags"] == ["podbw"]


def test_every_panel_has_a_description_and_a_unique_id(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, dashboard in dashboards.items():
        ids = [panel["id"] for panel in p.panels(dashboard)]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids), name
        for panel in p.panels(dashboard):
            assert len((panel.get("description") or "").strip()) >= 20, f"{name}: {panel['title']!r}"


def test_panels_fit_the_grid_without_overlapping(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, dashboard in dashboards.items():
        taken: set[tuple[int, int]] = set()
        for panel in p.panels(dashboard):
            g = panel["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, (name, panel["title"])
            cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & taken, f"{name}: {panel['title']!r} overlaps another panel"
            taken |= cells


def _unit_of(panel: dict[str, Any], ref: str) -> str:
    """The unit a query's values are shown in: an override for its refId, else the panel's."""
    for override in panel["fieldConfig"].get("overrides", []):
        if override["matcher"] == {"id": "byFrameRefID", "options": ref}:
            for prop in override["properties"]:
                if prop["id"] == "unit":
                    return str(prop["value"])
    return str(panel["fieldConfig"]["defaults"].get("unit") or "")


def test_units(dashboards: dict[str, dict[str, Any]]) -> None:
    byte_rates = 0
    for dashboard in dashboards.values():
        for panel in p.panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
            for target in panel["targets"]:
                expr, unit = target["expr"], _unit_of(panel, target["refId"])
                assert unit not in ("Bps", "binBps", "decbytes"), f"{panel['title']}: byte rates are shown as bits"
                if "/" in expr:  # utilization, means: ratios
                    if "podbw_limit_rate_bytes_per_second" in expr:
                        assert unit == "percentunit" or panel["type"] == "table", panel["title"]
                    continue
                if BYTE_RATE_METRICS.search(expr):
                    byte_rates += 1
                    assert re.match(r"(topk\(\d+, )?8 \* ", expr), f"{panel['title']}: bits are 8 * bytes: {expr}"
                    assert unit == "bps", f"{panel['title']} {target['refId']}: unit {unit!r}"
    assert byte_rates >= 10


def test_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, dashboard in dashboards.items():
        variables = p.variables(dashboard)
        assert [v["name"] for v in variables] == VARIABLES, name
        by_name = {v["name"]: v for v in variables}
        assert by_name["datasource"]["type"] == "datasource" and by_name["datasource"]["query"] == "prometheus"
        assert by_name["cluster"]["hide"] == 2, "cluster is hidden on a single-cluster install"
        for v in variables[1:]:
            assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            selector, label = p.label_values_query(v["query"])
            assert label == v["name"]
            # Each variable is narrowed by the ones before it.
            earlier = VARIABLES[1 : VARIABLES.index(v["name"])]
            for before in earlier[:3]:
                assert f'{before}=~"${before}"' in selector, (name, v["name"])
    node_vars = {v["name"]: v for v in p.variables(dashboards["node.json"])}
    assert node_vars["namespace"]["multi"] and node_vars["namespace"]["includeAll"]
    assert node_vars["namespace"]["allValue"] == ".*"
    assert not node_vars["node"]["includeAll"], "the node dashboard shows one node"
    pod_vars = {v["name"]: v for v in p.variables(dashboards["pod.json"])}
    assert not pod_vars["pod"]["multi"] and not pod_vars["pod"]["includeAll"], "the pod dashboard shows one pod"


PER_POD_METRIC = re.compile(r"podbw_(network|qdisc|limit|throughput|shaping_state|pod_info)")


def test_every_query_uses_the_datasource_and_the_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    for dashboard in dashboards.values():
        for panel in p.panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"]
                selectors = re.findall(r"(\w+)\{([^}]*)\}", target["expr"])
                assert selectors, target["expr"]
                for metric, selector in selectors:
                    assert 'cluster=~"$cluster", node=~"$node"' in selector, f"{panel['title']}: {metric}"
                    if PER_POD_METRIC.match(metric):
                        assert 'namespace=~"$namespace", pod=~"$pod"' in selector, f"{panel['title']}: {metric}"


def test_both_dashboards_cover_what_the_issue_asks(dashboards: dict[str, dict[str, Any]]) -> None:
    node_exprs = " ".join(q.expr for q in p.queries(dashboards["node.json"]))
    for needle in ("podbw_qdisc_drops_total", "podbw_qdisc_overlimits_total", 'state="invalid"', 'state="foreign"',
                   'state="error"', "podbw_sample_duration_seconds", "podbw_reconcile_latency_seconds",
                   "podbw_annotation_errors_total", "podbw_pods", 'up{job="podbw"',
                   "podbw_limit_rate_bytes_per_second"):
        assert needle in node_exprs, needle
    pod_exprs = " ".join(q.expr for q in p.queries(dashboards["pod.json"]))
    for direction in ("ingress", "egress"):
        assert f'direction="{direction}"' in pod_exprs
    for needle in ("podbw_throughput_peak_bytes_per_second", "podbw_qdisc_backlog_bytes", "podbw_qdisc_drops_total",
                   "podbw_qdisc_overlimits_total", "podbw_network_receive_packets_total",
                   "podbw_network_transmit_errors_total", "podbw_network_receive_packets_dropped_total", "podbw_network_transmit_packets_dropped_total"):
        assert needle in pod_exprs, needle


# ---- PromQL and alert rules (promtool) ------------------------------------------------------

def _promtool(*args: object) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)


SAMPLE_VALUES = {"cluster": "c", "node": "n", "namespace": "ns", "pod": "p", "__rate_interval": "1m"}


@needs_promtool
def test_every_panel_query_parses(dashboards: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Each query, variables filled in, as a recording rule: `promtool check rules` parses it."""
    rules = [
        {"record": f"podbw_dashboard_check:{i}", "expr": p.substitute(q.expr, SAMPLE_VALUES)}
        for i, q in enumerate(q for d in dashboards.values() for q in p.queries(d))
    ]
    path = tmp_path / "panels.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = _promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


@needs_promtool
def test_alert_rules_pass_promtool_check() -> None:
    result = _promtool("check", "rules", DASHBOARDS / "alerts.rules.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


@needs_promtool
def test_alert_rules_unit_tests_pass() -> None:
    result = _promtool("test", "rules", DASHBOARDS / "alerts.test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    rules = yaml.safe_load((DASHBOARDS / "alerts.rules.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert alerts == {
        "PodbwLimitSaturated", "PodbwQdiscDrops", "PodbwInvalidAnnotation", "PodbwForeignQdisc",
        "PodbwShapingErrors", "PodbwAgentDown", "PodbwNodeWithoutAgent", "PodbwAgentsAbsent",
        "PodbwSamplerStalled", "PodbwCollectorFailing", "PodbwKubernetesApiUnavailable",
        "PodbwReconcileLatencyHigh",
    }
    tests = yaml.safe_load((DASHBOARDS / "alerts.test.yaml").read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in tests["tests"]:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert firing == alerts and quiet == alerts
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
            assert 'job="podbw"' in rule["expr"], rule["alert"]
