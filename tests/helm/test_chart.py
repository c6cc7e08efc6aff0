"""The Helm chart, rendered for its default values and every ci/*-values.yaml scenario: valid
Kubernetes objects, the security settings podbw promises, flags the agent accepts, and the
alerts and dashboards taken from dashboards/ rather than copied."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agent.cli.main import build_parser
from tests.helm import harness
from tests.helm.conftest import SCENARIOS

CORE_GROUPS = {"v1", "apps/v1"}
"""Kinds kubernetes-validate has schemas for; everything the chart renders from them is checked."""
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Certificate"),  # only from ci/tls-values.yaml's extraObjects
}
MIN_KUBE_VERSION = "1.25"  # Chart.yaml kubeVersion
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DASHBOARDS_DIR = harness.ROOT / "dashboards"


def daemonset(rendered: harness.Rendered) -> dict[str, Any]:
    return rendered.one("DaemonSet")


def agent_container(rendered: harness.Rendered) -> dict[str, Any]:
    containers = daemonset(rendered)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["podbw"]
    return containers[0]


def mounts_by_volume(rendered: harness.Rendered) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    pod = daemonset(rendered)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    return {m["name"]: (m, volumes[m["name"]]) for m in agent_container(rendered)["volumeMounts"]}


def parse_agent_flags(rendered: harness.Rendered, monkeypatch: pytest.MonkeyPatch):
    """The container's args parsed by podbw's own CLI, as the image's `podbw run` entrypoint
    would: a flag the agent does not know fails here, not on the node."""
    for name in list(os.environ):
        if name.startswith("PODBW_"):
            monkeypatch.delenv(name)
    container = agent_container(rendered)
    for env in container["env"]:
        if "value" in env and env["name"].startswith("PODBW_"):
            monkeypatch.setenv(env["name"], env["value"])
    assert "command" not in container, "the image's entrypoint (podbw run) must stay in charge"
    try:
        return build_parser().parse_args(["run", *container["args"]])
    except SystemExit as exc:
        pytest.fail(f"podbw run rejects the chart's args {container['args']}: exit {exc.code}")


# ---- every scenario -------------------------------------------------------------------------


def test_scenarios_exist() -> None:
    assert len(SCENARIOS) >= 5, SCENARIOS


def test_values_satisfy_the_schema(scenario: harness.Rendered) -> None:
    harness.validate_values(scenario.values)  # raises on any violation


def test_every_document_is_a_named_kubernetes_object(scenario: harness.Rendered) -> None:
    assert scenario.documents
    for doc in scenario.documents:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
        name = doc["metadata"]["name"]
        assert len(name) <= 63 and DNS_LABEL.match(name), name


@pytest.mark.parametrize("kube_version", [MIN_KUBE_VERSION, kubernetes_validate.utils.latest_version()])
def test_core_objects_pass_strict_kubernetes_validation(scenario: harness.Rendered, kube_version: str) -> None:
    for doc in scenario.documents:
        if doc["apiVersion"] in CORE_GROUPS:
            try:
                kubernetes_validate.validate(doc, kube_version, strict=True)
            except kubernetes_validate.ValidationError as err:
                where = ".".join(map(str, err.path))
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} at {where}: {err.message}")
        else:
            assert (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS, (doc["apiVersion"], doc["kind"])


def test_daemonset_security(scenario: harness.Rendered) -> None:
    pod = daemonset(scenario)["spec"]["template"]["spec"]
    container = agent_container(scenario)
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "SYS_ADMIN"]}
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security.get("privileged", False) is False
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert not pod.get("hostPID") and not pod.get("hostIPC")
    assert pod["nodeSelector"]["kubernetes.io/os"] == "linux"
    for mount, volume in mounts_by_volume(scenario).values():
        if "hostPath" in volume:
            assert mount["readOnly"] is True, mount


def test_daemonset_scheduling_and_rollout(scenario: harness.Rendered) -> None:
    ds = daemonset(scenario)
    pod = ds["spec"]["template"]["spec"]
    values = scenario.values
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": values["updateStrategy"]["maxUnavailable"]},
    }
    assert pod.get("priorityClassName", "") == values["priorityClassName"]
    assert pod["tolerations"] == values["tolerations"]
    container = agent_container(scenario)
    assert container["resources"] == values["resources"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PODBW_NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["PODBW_LOG_LEVEL"]["value"] == values["agent"]["logLevel"]


def test_default_scenario_schedules_everywhere_as_node_critical(rendered_scenarios) -> None:
    pod = daemonset(rendered_scenarios["default"])["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert daemonset(rendered_scenarios["default"])["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1}


def test_host_mounts(scenario: harness.Rendered) -> None:
    agent = scenario.values["agent"]
    mounts = mounts_by_volume(scenario)
    cri_mount, cri_volume = mounts["cri-socket-dir"]
    socket_dir = str(Path(agent["criSocket"]).parent)
    assert cri_volume["hostPath"] == {"path": socket_dir, "type": "Directory"}
    assert cri_mount["mountPath"] == socket_dir
    netns_mount, netns_volume = mounts["netns"]
    assert netns_volume["hostPath"]["path"] == agent["netnsDir"]
    assert netns_mount["mountPath"] == agent["netnsDir"]
    assert netns_mount["mountPropagation"] == "HostToContainer"
    host_paths = {v["hostPath"]["path"] for _, v in mounts.values() if "hostPath" in v}
    assert host_paths == {socket_dir, agent["netnsDir"]}, "no other host path may be mounted"


def test_probes(scenario: harness.Rendered) -> None:
    container = agent_container(scenario)
    tls = scenario.values["web"]["tls"]
    for probe_key, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        probe = container[probe_key]
        for setting, value in scenario.values[probe_key].items():
            assert probe[setting] == value
        if tls["enabled"] and tls["clientAuth"]:
            assert probe["tcpSocket"] == {"port": "metrics"}  # the kubelet has no client certificate
        else:
            scheme = "HTTPS" if tls["enabled"] else "HTTP"
            assert probe["httpGet"] == {"path": path, "port": "metrics", "scheme": scheme}
    assert container["ports"] == [{"name": "metrics", "containerPort": scenario.values["web"]["port"], "protocol": "TCP"}]


def test_agent_flags_are_accepted_by_podbw_run(scenario: harness.Rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    args = parse_agent_flags(scenario, monkeypatch)
    agent = scenario.values["agent"]
    assert args.command == "run"
    assert getattr(args, "log.level") == {"warning": "warn"}.get(agent["logLevel"], agent["logLevel"])
    assert args.cri_endpoint == "unix://" + agent["criSocket"]
    assert float(args.cri_timeout) == agent["criTimeoutSeconds"]
    assert args.netns_dir == agent["netnsDir"]
    assert args.egress_mode == agent["egressMode"]
    assert args.take_over_foreign is agent["takeOverForeign"]
    assert args.cleanup_on_exit is agent["cleanupOnExit"]
    assert float(args.sample_interval) == agent["sampleIntervalSeconds"]
    assert float(args.peak_window) == agent["peakWindowSeconds"]
    expected_resync = agent["resyncIntervalSeconds"]
    for extra in agent["extraArgs"]:  # appended last: a repeated flag wins
        if extra.startswith("--resync-interval="):
            expected_resync = float(extra.split("=", 1)[1])
    assert float(args.resync_interval) == expected_resync
    assert getattr(args, "web.listen_address") == f":{scenario.values['web']['port']}"


def test_files_named_in_flags_come_from_their_volumes(scenario: harness.Rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    args = parse_agent_flags(scenario, monkeypatch)
    mounts = mounts_by_volume(scenario)

    def volume_of(path: str) -> dict[str, Any]:
        for mount, volume in mounts.values():
            if os.path.dirname(path) == mount["mountPath"]:
                return volume
        pytest.fail(f"{path} is not in any mounted volume")

    tls = scenario.values["web"]["tls"]
    tls_files = [getattr(args, f"web.{name}") for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file")]
    if tls["enabled"]:
        expected = ["tls.crt", "tls.key", "ca.crt" if tls["clientAuth"] else None]
        assert [f and os.path.basename(f) for f in tls_files] == expected
        for path in filter(None, tls_files):
            secret = volume_of(path)["secret"]["secretName"]
            assert secret and "{{" not in secret  # rendered through tpl
    else:
        assert tls_files == [None, None, None]
        assert "tls" not in mounts
    if scenario.values["annotationsOverrides"]:
        config_map = volume_of(args.annotations_file)["configMap"]["name"]
        rendered = [cm for cm in scenario.kinds("ConfigMap") if cm["metadata"]["name"] == config_map]
        assert len(rendered) == 1
        key = os.path.basename(args.annotations_file)
        assert yaml.safe_load(rendered[0]["data"][key]) == scenario.values["annotationsOverrides"]
    else:
        assert args.annotations_file is None


def test_service_selects_the_agents(scenario: harness.Rendered) -> None:
    service = scenario.one("Service")
    pod_labels = daemonset(scenario)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert daemonset(scenario)["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    assert service["spec"]["ports"][0]["port"] == scenario.values["web"]["port"]


def test_everything_lands_in_one_namespace(scenario: harness.Rendered) -> None:
    expected = scenario.values["namespaceOverride"] or harness.RELEASE_NAMESPACE
    dashboards_ns = scenario.values["dashboards"]["namespace"] or expected
    for doc in scenario.documents:
        if doc["kind"] == "Certificate":
            continue
        is_dashboard = doc["kind"] == "ConfigMap" and "-dashboard-" in doc["metadata"]["name"]
        assert doc["metadata"]["namespace"] == (dashboards_ns if is_dashboard else expected), doc["metadata"]


def test_monitors(scenario: harness.Rendered) -> None:
    values = scenario.values
    service = scenario.one("Service")
    pod_labels = daemonset(scenario)["spec"]["template"]["metadata"]["labels"]
    found = {kind: scenario.kinds(kind) for kind in ("ServiceMonitor", "PodMonitor")}
    assert len(found["ServiceMonitor"]) == int(values["serviceMonitor"]["enabled"])
    assert len(found["PodMonitor"]) == int(values["podMonitor"]["enabled"])
    for kind, endpoints_key, values_key, target_labels in (
        ("ServiceMonitor", "endpoints", "serviceMonitor", service["metadata"]["labels"]),
        ("PodMonitor", "podMetricsEndpoints", "podMonitor", pod_labels),
    ):
        for monitor in found[kind]:
            assert monitor["spec"]["selector"]["matchLabels"].items() <= target_labels.items()
            assert monitor["spec"]["namespaceSelector"]["matchNames"] == [daemonset(scenario)["metadata"]["namespace"]]
            [endpoint] = monitor["spec"][endpoints_key]
            assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
            assert endpoint["scheme"] == ("https" if values["web"]["tls"]["enabled"] else "http")
            assert endpoint["honorLabels"] is values[values_key]["honorLabels"]
            relabel = endpoint["relabelings"]
            assert {"targetLabel": "job", "replacement": "podbw", "action": "replace"} in relabel
            assert {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"} in relabel
            assert relabel[2:] == values[values_key]["relabelings"]
            if values[values_key]["interval"]:
                assert endpoint["interval"] == values[values_key]["interval"]
            else:
                assert "interval" not in endpoint
            if values["web"]["tls"]["enabled"]:
                assert endpoint["tlsConfig"] == values[values_key]["tlsConfig"]


def test_prometheus_operator_objects_carry_the_release_label(scenario: harness.Rendered) -> None:
    monitoring = scenario.values["monitoring"]
    for doc in scenario.documents:
        if doc["apiVersion"] != "monitoring.coreos.com/v1":
            continue
        labels = doc["metadata"]["labels"]
        if monitoring["release"]:
            assert labels["release"] == monitoring["release"]
        else:
            assert "release" not in labels
        assert monitoring["additionalLabels"].items() <= labels.items()


def test_prometheus_rule_is_the_rule_file(scenario: harness.Rendered, chart_dir: Path) -> None:
    rules = scenario.kinds("PrometheusRule")
    assert len(rules) == int(scenario.values["prometheusRule"]["enabled"])
    if not rules:
        return
    expected = yaml.safe_load((chart_dir / "files" / "alerts.rules.yaml").read_text())["groups"]
    extra = scenario.values["prometheusRule"]["additionalRuleLabels"]
    for group in expected:
        for rule in group["rules"]:
            if "alert" in rule and extra:
                rule["labels"] = {**extra, **rule.get("labels", {})}
    assert rules[0]["spec"]["groups"] == expected


def test_dashboards_are_the_generated_files(scenario: harness.Rendered, chart_dir: Path) -> None:
    settings = scenario.values["dashboards"]
    maps = [cm for cm in scenario.kinds("ConfigMap") if settings["label"] in cm["metadata"]["labels"]]
    sources = sorted((chart_dir / "files" / "dashboards").glob("*.json"))
    if not settings["enabled"]:
        assert maps == []
        return
    assert len(maps) == len(sources) >= 1
    shipped = {}
    for cm in maps:
        assert cm["metadata"]["labels"][settings["label"]] == settings["labelValue"]
        assert cm["metadata"].get("annotations", {}) == settings["annotations"]
        [(key, text)] = cm["data"].items()
        assert key.startswith("podbw") and key.endswith(".json")
        shipped[key] = text
    for source in sources:
        key = source.name if source.name.startswith("podbw") else f"podbw-{source.name}"
        assert json.loads(shipped[key]) == json.loads(source.read_text())


def test_notes_render(scenario: harness.Rendered) -> None:
    notes = scenario.notes
    assert "rollout status daemonset/" in notes
    assert "<no value>" not in notes and "{{" not in notes
    if scenario.values["agent"]["cleanupOnExit"]:
        assert "cleanupOnExit is on" in notes
    else:
        assert "agent.cleanupOnExit=true" in notes


# ---- specific behaviour ---------------------------------------------------------------------


def test_default_install_has_no_monitoring_objects(rendered_scenarios) -> None:
    kinds = sorted(doc["kind"] for doc in rendered_scenarios["default"].documents)
    assert kinds == ["DaemonSet", "Service", "ServiceAccount"]


def test_image_reference(rendered_scenarios) -> None:
    assert agent_container(rendered_scenarios["default"])["image"] == "podbw:0.1.0"
    pinned = agent_container(rendered_scenarios["agent-flags-values.yaml"])["image"]
    assert pinned == "registry.example.com/platform/podbw@sha256:" + "0123456789abcdef" * 4


def test_notes_warn_when_the_operator_crds_are_missing(render) -> None:
    values = {"serviceMonitor": {"enabled": True}}
    assert "does not serve monitoring.coreos.com/v1" in render(values).notes
    served = render(values, api_versions=("monitoring.coreos.com/v1",)).notes
    assert "does not serve" not in served and 'release is named "kube-prometheus-stack"' in served


def test_helm_numbers_render_as_helm_renders_them(render, monkeypatch: pytest.MonkeyPatch) -> None:
    # Values are float64 in Helm, printed with exponents beyond 1e6 and below 1e-4.
    rendered = render({"agent": {"criTimeoutSeconds": 0.00005, "peakWindowSeconds": 0.25}})
    args = agent_container(rendered)["args"]
    assert "--cri-timeout=5e-05" in args  # what Helm prints, and podbw reads it back
    assert "--peak-window=0.25" in args
    assert parse_agent_flags(rendered, monkeypatch).cri_timeout == 5e-05


@pytest.mark.parametrize(
    "values, where",
    [
        ({"agent": {"egressMode": "tc"}}, "agent.egressMode"),
        ({"agent": {"logLevel": "verbose"}}, "agent.logLevel"),
        ({"agent": {"resyncIntervalSeconds": 0}}, "agent.resyncIntervalSeconds"),
        ({"agent": {"criSocket": "crio.sock"}}, "agent.criSocket"),
        ({"agent": {"extraArgs": ["-v"]}}, "agent.extraArgs.0"),
        ({"agent": {"cleanupOnExit": "yes"}}, "agent.cleanupOnExit"),
        ({"agnet": {}}, "(root)"),
        ({"serviceMonitor": {"enabeld": True}}, "serviceMonitor"),
        ({"serviceMonitor": {"interval": "15 seconds"}}, "serviceMonitor.interval"),
        ({"web": {"port": 70000}}, "web.port"),
        ({"web": {"tls": {"enabled": True}}}, "web.tls.secretName"),
        ({"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}, "(root)"),
        ({"annotationsOverrides": {"web-0": {"kubernetes.io/egress-bandwidth": "1M"}}}, "annotationsOverrides"),
        ({"updateStrategy": {"maxUnavailable": 0}}, "updateStrategy.maxUnavailable"),
        ({"image": {"digest": "latest"}}, "image.digest"),
    ],
)
def test_values_that_violate_the_schema_are_rejected(render, values: dict, where: str) -> None:
    with pytest.raises(harness.ChartError) as raised:
        render(values)
    message = str(raised.value)
    assert "don't meet the specifications of the schema" in message
    assert f"\n{where}:" in message or (where == "web.tls.secretName" and "\nweb.tls:" in message), message


@pytest.mark.parametrize(
    "values, message",
    [
        ({"web": {"tls": {"enabled": True}}}, "web.tls.secretName is required"),
        ({"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}, "not both"),
    ],
)
def test_templates_refuse_what_the_schema_refuses(render, values: dict, message: str) -> None:
    # Behind the schema (a `helm template --skip-schema-validation` still fails, clearly).
    with pytest.raises(harness.ChartError, match=message):
        render(values, validate=False)


# ---- values.yaml, the schema and the symlinks -------------------------------------------------


def _value_keys() -> list[tuple[str, int, str]]:
    """(dotted key, line number, the line above) for every mapping key of values.yaml."""
    lines = (harness.CHART_DIR / "values.yaml").read_text().splitlines()
    keys, stack = [], []
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if not match:
            continue
        depth = len(match.group(1)) // 2
        stack = stack[:depth] + [match.group(2)]
        keys.append((".".join(stack), number + 1, lines[number - 1] if number else ""))
    return keys


def test_every_values_key_has_a_comment_line_above_it() -> None:
    keys = _value_keys()
    assert len(keys) > 50
    missing = [f"{key} (line {line})" for key, line, above in keys if not above.strip().startswith("# ")]
    assert not missing, missing


def test_schema_describes_every_value_with_its_default() -> None:
    schema = harness.schema()
    defaults = harness.load_yaml(harness.CHART_DIR / "values.yaml")
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    keys = [key for key, _, _ in _value_keys()]
    for key in keys:
        node, value, declared = schema, defaults, True
        for part in key.split("."):
            if part in node.get("properties", {}):
                node = node["properties"][part]
            else:  # inside a free-form map (resources.requests): typed, not declared
                node, declared = node["additionalProperties"], False
            value = value[part]
        if declared:
            assert node.get("description"), key
            if "properties" not in node:
                assert node["default"] == value, key
        else:
            assert isinstance(node, dict) and node.get("type"), key
    top = set(schema["properties"]) - {"global"}
    assert top == set(defaults)


def test_chart_files_are_symlinks_to_dashboards_not_copies() -> None:
    links = harness.chart_links()
    expected = {"files/alerts.rules.yaml": "../../../dashboards/alerts.rules.yaml"}
    for source in sorted(DASHBOARDS_DIR.glob("*.json")):
        expected[f"files/dashboards/{source.name}"] = f"../../../../dashboards/{source.name}"
    found = {str(link.relative_to(harness.CHART_DIR)): os.readlink(link) for link in links}
    missing_sources = [rel for rel, target in found.items() if not (harness.CHART_DIR / rel).exists()]
    if missing_sources and not DASHBOARDS_DIR.exists():
        pytest.skip("dashboards/ is not written yet")
    assert not missing_sources, f"dangling links: {missing_sources}"
    assert found == expected, "every dashboards/*.json and the rule file need one link in files/"
    for rel in found:
        real = (harness.CHART_DIR / rel).resolve()
        assert real.parent.parent == harness.ROOT and real.parent.name == "dashboards", real
    regular = [p for p in (harness.CHART_DIR / "files").rglob("*") if p.is_file() and not p.is_symlink()]
    assert regular == [], "copies under files/ drift from dashboards/: use symlinks"


def test_extra_objects_go_through_tpl(rendered_scenarios) -> None:
    [certificate] = rendered_scenarios["tls-values.yaml"].kinds("Certificate")
    assert certificate["metadata"] == {"name": "podbw-tls", "namespace": harness.RELEASE_NAMESPACE}
    assert certificate["spec"]["secretName"] == "podbw-tls"
    volumes = daemonset(rendered_scenarios["tls-values.yaml"])["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "podbw-tls", "defaultMode": 0o400}} in volumes


def test_renderer_source_is_gofmt_clean() -> None:
    result = subprocess.run(["gofmt", "-l", str(harness.RENDER_SOURCE)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
