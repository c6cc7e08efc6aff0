"""The Helm chart as the real helm renders it, for its default values and every ci/*-values.yaml
scenario at the oldest and newest supported Kubernetes minors: valid Kubernetes objects, the
security settings podbw promises, flags the agent accepts, and what each value turns into."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli.main import build_parser
from agent.service.web_config import parse_web_config
from tests.helm import harness
from tests.helm.conftest import scenario_named

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RULES_FILE = harness.CHART_DIR / "files" / "alerts.rules.yaml"
NODE_NAME = "node-1"
"""What the kubelet puts into PODBW_NODE_NAME (spec.nodeName) when the flags are parsed here."""
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}
API_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]
"""All the Kubernetes API source needs: this node's pods, the namespaces' defaults, pod Events."""


def daemonset(rendered: harness.Rendered) -> dict[str, Any]:
    return rendered.one("DaemonSet")


def pod_spec(rendered: harness.Rendered) -> dict[str, Any]:
    return daemonset(rendered)["spec"]["template"]["spec"]


def agent_container(rendered: harness.Rendered) -> dict[str, Any]:
    containers = pod_spec(rendered)["containers"]
    assert [c["name"] for c in containers] == ["podbw"]
    return containers[0]


def mounts_by_volume(rendered: harness.Rendered) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    volumes = {v["name"]: v for v in pod_spec(rendered)["volumes"]}
    return {m["name"]: (m, volumes[m["name"]]) for m in agent_container(rendered)["volumeMounts"]}


def chart_mounts(rendered: harness.Rendered) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """The chart's own mounts, without the user's extraVolumeMounts."""
    extra = {m["name"] for m in rendered.values["extraVolumeMounts"]}
    return {name: pair for name, pair in mounts_by_volume(rendered).items() if name not in extra}


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
        elif env.get("valueFrom") == {"fieldRef": {"fieldPath": "spec.nodeName"}}:
            monkeypatch.setenv(env["name"], NODE_NAME)
    assert "command" not in container, "the image's entrypoint (podbw run) must stay in charge"
    try:
        return build_parser().parse_args(["run", *container["args"]])
    except SystemExit as exc:
        pytest.fail(f"podbw run rejects the chart's args {container['args']}: exit {exc.code}")


def scheme(values: dict[str, Any]) -> str:
    web = values["web"]
    if web["existingSecret"]["name"]:
        return "https" if web["existingSecret"]["https"] else "http"
    return "https" if web["tls"]["enabled"] or "tls_server_config" in web["config"] else "http"


def http_probes(values: dict[str, Any]) -> bool:
    """Whether the kubelet, with neither a client certificate nor a password, can probe over HTTP."""
    web = values["web"]
    client_auth = web["config"].get("tls_server_config", {}).get("client_auth_type", "NoClientCert")
    if web["tls"]["enabled"] and web["tls"]["clientAuth"]:
        client_auth = "RequireAndVerifyClientCert"
    return not (web["existingSecret"]["name"] or web["config"].get("basic_auth_users")
                or client_auth in ("RequireAnyClientCert", "RequireAndVerifyClientCert"))


def web_config_secret(rendered: harness.Rendered) -> dict[str, Any] | None:
    secrets = [s for s in rendered.kinds("Secret") if s["metadata"]["name"].endswith("-web-config")]
    assert len(secrets) <= 1
    return secrets[0] if secrets else None


def monitoring_namespace(rendered: harness.Rendered, settings_key: str) -> str:
    return rendered.values[settings_key]["namespace"] or chart_namespace(rendered)


def chart_namespace(rendered: harness.Rendered) -> str:
    return rendered.values["namespaceOverride"] or harness.RELEASE_NAMESPACE


# ---- every scenario, at each kube version -------------------------------------------------------


def test_every_document_is_a_named_kubernetes_object(scenario: harness.Rendered) -> None:
    assert scenario.documents
    for doc in scenario.documents:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
        name = doc["metadata"]["name"]
        assert len(name) <= 63 and DNS_LABEL.match(name), name


def test_no_line_ends_in_whitespace(scenario: harness.Rendered) -> None:
    # A template's whitespace control gone wrong shows here first (blank list items, stray indents).
    trailing = [line for line in scenario.stream.splitlines() if line != line.rstrip()]
    assert trailing == []


def test_daemonset_security(scenario: harness.Rendered) -> None:
    pod = pod_spec(scenario)
    container = agent_container(scenario)
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "SYS_ADMIN"]}
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security.get("privileged", False) is False
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # A token only for the Kubernetes API source, whose ClusterRole reads and posts nothing else.
    assert pod["automountServiceAccountToken"] is scenario.values["kubernetesApi"]["enabled"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert not pod.get("hostPID") and not pod.get("hostIPC")
    assert pod["nodeSelector"]["kubernetes.io/os"] == "linux"
    assert [c["name"] for c in pod["containers"]] == ["podbw"] and "initContainers" not in pod
    for mount, volume in chart_mounts(scenario).values():
        if "hostPath" in volume:
            assert mount["readOnly"] is True, mount


def test_daemonset_scheduling_and_rollout(scenario: harness.Rendered) -> None:
    ds = daemonset(scenario)
    pod = pod_spec(scenario)
    values = scenario.values
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": values["updateStrategy"]["maxUnavailable"]},
    }
    assert ds["spec"]["revisionHistoryLimit"] == values["revisionHistoryLimit"]
    assert ds["metadata"].get("annotations", {}) == values["daemonsetAnnotations"]
    assert pod.get("priorityClassName", "") == values["priorityClassName"]
    assert pod["tolerations"] == values["tolerations"]
    container = agent_container(scenario)
    assert container["resources"] == values["resources"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PODBW_NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["PODBW_LOG_LEVEL"]["value"] == values["agent"]["logLevel"]
    assert container["env"][len(container["env"]) - len(values["agent"]["extraEnv"]) :] == values["agent"]["extraEnv"]


def test_pod_labels_and_annotations(scenario: harness.Rendered) -> None:
    metadata = daemonset(scenario)["spec"]["template"]["metadata"]
    assert scenario.values["podLabels"].items() <= metadata["labels"].items()
    assert metadata["annotations"] == {
        "kubectl.kubernetes.io/default-container": "podbw",
        **scenario.values["podAnnotations"],
    }


def test_image_and_pull_secrets(scenario: harness.Rendered) -> None:
    values = scenario.values
    image = values["image"]
    registry = values["global"]["imageRegistry"] or image["registry"]
    repository = f"{registry.rstrip('/')}/{image['repository']}" if registry else image["repository"]
    reference = f"{repository}@{image['digest']}" if image["digest"] else f"{repository}:{image['tag'] or '0.1.0'}"
    assert agent_container(scenario)["image"] == reference
    expected = [s if isinstance(s, dict) else {"name": s} for s in values["imagePullSecrets"] + values["global"]["imagePullSecrets"]]
    assert pod_spec(scenario).get("imagePullSecrets", []) == expected


def test_host_mounts(scenario: harness.Rendered) -> None:
    agent = scenario.values["agent"]
    mounts = chart_mounts(scenario)
    cri_mount, cri_volume = mounts["cri-socket-dir"]
    socket_dir = str(Path(agent["criSocket"]).parent)
    assert cri_volume["hostPath"] == {"path": socket_dir, "type": "Directory"}
    assert cri_mount["mountPath"] == socket_dir
    netns_mount, netns_volume = mounts["netns"]
    assert netns_volume["hostPath"]["path"] == agent["netnsDir"]
    assert netns_mount["mountPath"] == agent["netnsDir"]
    assert netns_mount["mountPropagation"] == "HostToContainer"
    host_paths = {v["hostPath"]["path"] for _, v in mounts.values() if "hostPath" in v}
    assert host_paths == {socket_dir, agent["netnsDir"]}, "the chart mounts no other host path"


def test_extra_volumes_and_mounts(scenario: harness.Rendered) -> None:
    volumes = pod_spec(scenario)["volumes"]
    mounts = agent_container(scenario)["volumeMounts"]
    extra_volumes, extra_mounts = scenario.values["extraVolumes"], scenario.values["extraVolumeMounts"]
    assert volumes[len(volumes) - len(extra_volumes) :] == extra_volumes
    assert mounts[len(mounts) - len(extra_mounts) :] == extra_mounts
    names = [v["name"] for v in volumes]
    assert len(names) == len(set(names))


def test_probes(scenario: harness.Rendered) -> None:
    container = agent_container(scenario)
    for probe_key, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        probe = container[probe_key]
        for setting, value in scenario.values[probe_key].items():
            assert probe[setting] == value
        if http_probes(scenario.values):
            assert probe["httpGet"] == {"path": path, "port": "metrics", "scheme": scheme(scenario.values).upper()}
        else:  # the kubelet has no client certificate and no password
            assert probe["tcpSocket"] == {"port": "metrics"} and "httpGet" not in probe
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
    mounts = chart_mounts(scenario)

    def volume_of(path: str) -> dict[str, Any]:
        for mount, volume in mounts.values():
            if os.path.dirname(path) == mount["mountPath"]:
                return volume
        pytest.fail(f"{path} is not in any mounted volume")

    web = scenario.values["web"]
    config_file = args.settings.web.config_file
    secret = web_config_secret(scenario)
    if not (web["config"] or web["tls"]["enabled"] or web["existingSecret"]["name"]):
        assert config_file is None and secret is None and "web-config" not in mounts and "tls" not in mounts
    elif web["existingSecret"]["name"]:
        assert secret is None
        assert volume_of(config_file)["secret"]["secretName"] == web["existingSecret"]["name"]
        assert os.path.basename(config_file) == web["existingSecret"]["key"]
    else:
        assert volume_of(config_file)["secret"]["secretName"] == secret["metadata"]["name"]
        [(key, text)] = secret["stringData"].items()
        assert os.path.basename(config_file) == key
        # The agent's own parser reads it as the agent will, and every file it names is mounted.
        config = parse_web_config(text, os.path.dirname(config_file))
        tls_files = config.tls.files() if config.tls is not None else ()
        assert bool(tls_files) is (web["tls"]["enabled"] or "tls_server_config" in web["config"])
        for path in tls_files:
            tls_secret = volume_of(path)["secret"]["secretName"]
            assert tls_secret and "{{" not in tls_secret  # rendered through tpl
        if web["tls"]["enabled"]:
            assert {os.path.basename(p) for p in tls_files} == {"tls.crt", "tls.key"} | (
                {"ca.crt"} if web["tls"]["clientAuth"] else set()
            )
        assert set(config.basic_auth_users) == set(web["config"].get("basic_auth_users", {}))
    if scenario.values["annotationsOverrides"]:
        config_map = volume_of(args.annotations_file)["configMap"]["name"]
        rendered = [cm for cm in scenario.kinds("ConfigMap") if cm["metadata"]["name"] == config_map]
        assert len(rendered) == 1
        key = os.path.basename(args.annotations_file)
        assert yaml.safe_load(rendered[0]["data"][key]) == scenario.values["annotationsOverrides"]
    else:
        assert args.annotations_file is None


def test_kubernetes_api_access(scenario: harness.Rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    values = scenario.values
    enabled = values["kubernetesApi"]["enabled"]
    pod = pod_spec(scenario)
    account = pod["serviceAccountName"]
    args = parse_agent_flags(scenario, monkeypatch)
    # Explicit on (not auto): a missing token or permission is an error in the log, not silently CRI alone.
    assert args.settings.discovery.kubernetes == ("on" if enabled else "off")
    if enabled:
        assert args.settings.discovery.node_name == NODE_NAME
    assert pod["automountServiceAccountToken"] is enabled
    accounts = scenario.kinds("ServiceAccount")
    assert len(accounts) == int(values["serviceAccount"]["create"])
    for sa in accounts:  # the pod asks for its token itself; other pods of the account get none
        assert sa["metadata"]["name"] == account and sa["automountServiceAccountToken"] is False
    rbac = enabled and values["rbac"]["create"]
    roles, bindings = scenario.kinds("ClusterRole"), scenario.kinds("ClusterRoleBinding")
    assert len(roles) == len(bindings) == int(rbac)
    for role, binding in zip(roles, bindings):
        assert role["rules"] == API_RULES
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": daemonset(scenario)["metadata"]["namespace"]}
        ]


def test_service_selects_the_agents(scenario: harness.Rendered) -> None:
    service = scenario.one("Service")
    pod_labels = daemonset(scenario)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert daemonset(scenario)["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    assert service["spec"]["ports"][0]["port"] == scenario.values["web"]["port"]


def test_every_object_lands_in_its_namespace(scenario: harness.Rendered) -> None:
    expected = chart_namespace(scenario)
    dashboards_ns = scenario.values["dashboards"]["namespace"] or expected
    own = {
        "ServiceMonitor": monitoring_namespace(scenario, "serviceMonitor"),
        "PodMonitor": monitoring_namespace(scenario, "podMonitor"),
        "PrometheusRule": monitoring_namespace(scenario, "prometheusRule"),
    }
    for doc in scenario.documents:
        if doc["kind"] == "Certificate":
            continue
        if doc["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in doc["metadata"], doc["metadata"]
            continue
        is_dashboard = doc["kind"] == "ConfigMap" and "-dashboard-" in doc["metadata"]["name"]
        want = dashboards_ns if is_dashboard else own.get(doc["kind"], expected)
        assert doc["metadata"]["namespace"] == want, doc["metadata"]


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
        settings = values[values_key]
        for monitor in found[kind]:
            spec = monitor["spec"]
            assert spec["selector"]["matchLabels"].items() <= target_labels.items()
            assert spec["namespaceSelector"]["matchNames"] == [daemonset(scenario)["metadata"]["namespace"]]
            assert spec.get("jobLabel", "") == settings["jobLabel"]
            assert spec.get("sampleLimit", 0) == settings["sampleLimit"]
            [endpoint] = spec[endpoints_key]
            assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
            assert endpoint["scheme"] == scheme(values)
            assert endpoint["honorLabels"] is settings["honorLabels"]
            own = [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"}]
            if not settings["jobLabel"]:  # the job comes from the label instead
                own.insert(0, {"targetLabel": "job", "replacement": "podbw", "action": "replace"})
            assert endpoint["relabelings"] == own + settings["relabelings"]
            assert endpoint.get("metricRelabelings", []) == settings["metricRelabelings"]
            for key in ("interval", "scrapeTimeout"):
                assert endpoint.get(key, "") == settings[key]
            if scheme(values) == "https" and settings["tlsConfig"]:
                assert endpoint["tlsConfig"] == settings["tlsConfig"]
            else:
                assert "tlsConfig" not in endpoint
            assert endpoint.get("basicAuth", {}) == settings["basicAuth"]


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


def expected_rule_groups(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The rule file as the PrometheusRule must carry it for these prometheusRule values."""
    groups = []
    for group in yaml.safe_load(RULES_FILE.read_text())["groups"]:
        rules = []
        for rule in group["rules"]:
            if "alert" in rule:
                if settings["disabled"].get(rule["alert"]):
                    continue
                if settings["additionalRuleLabels"]:
                    rule["labels"] = {**settings["additionalRuleLabels"], **rule.get("labels", {})}
                if settings["runbookUrl"]:
                    anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
                    rule["annotations"]["runbook_url"] = f"{settings['runbookUrl']}#{anchor}"
            rules.append(rule)
        if rules:
            groups.append({**group, "rules": rules})
    return groups


def test_prometheus_rule_is_the_rule_file(scenario: harness.Rendered) -> None:
    settings = scenario.values["prometheusRule"]
    rules = scenario.kinds("PrometheusRule")
    assert len(rules) == int(settings["enabled"])
    if rules:
        assert rules[0]["spec"]["groups"] == expected_rule_groups(settings)


def test_dashboards_are_the_generated_files(scenario: harness.Rendered) -> None:
    settings = scenario.values["dashboards"]
    maps = [cm for cm in scenario.kinds("ConfigMap") if settings["label"] in cm["metadata"]["labels"]]
    sources = sorted((harness.CHART_DIR / "files" / "dashboards").glob("*.json"))
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


def test_notes(scenario: harness.Rendered) -> None:
    notes = scenario.notes
    values = scenario.values
    assert "rollout status daemonset/" in notes
    assert "<no value>" not in notes and "{{" not in notes
    assert 'podbw_shaping_state{state=~"invalid|foreign|error"} == 1' in notes
    if scheme(values) == "https" or not http_probes(values):
        assert "podbw top" not in notes  # it has neither the agent's CA nor a password
    else:
        assert "-- podbw top --once --no-fallback" in notes
    assert (values["prometheusRule"]["runbookUrl"] or "https://github.com/podbw/podbw/blob/main/docs/runbook.md") in notes
    # Limits change live through the API only when the agent watches it.
    assert ("kubectl annotate pod <pod>" in notes) is values["kubernetesApi"]["enabled"]
    if values["agent"]["cleanupOnExit"]:
        assert "cleanupOnExit is on" in notes
    else:
        assert "agent.cleanupOnExit=true" in notes


# ---- specific behaviour ---------------------------------------------------------------------


def test_default_install_has_no_monitoring_objects(defaults: harness.Rendered) -> None:
    kinds = sorted(doc["kind"] for doc in defaults.documents)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "Service", "ServiceAccount"]


def test_default_install_uses_the_kubernetes_api(defaults: harness.Rendered) -> None:
    role, binding = defaults.one("ClusterRole"), defaults.one("ClusterRoleBinding")
    assert role["metadata"]["name"] == binding["metadata"]["name"] == "podbw"
    assert role["rules"] == API_RULES
    assert binding["roleRef"]["name"] == "podbw"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "podbw", "namespace": harness.RELEASE_NAMESPACE}]
    assert defaults.one("ServiceAccount")["metadata"]["name"] == "podbw"
    pod = pod_spec(defaults)
    assert pod["serviceAccountName"] == "podbw" and pod["automountServiceAccountToken"] is True
    assert "--kubernetes=on" in agent_container(defaults)["args"]
    assert "kubectl annotate pod <pod> kubernetes.io/ingress-bandwidth=100M" in defaults.notes
    assert "kubectl describe pod <pod>" in defaults.notes


def test_kubernetes_api_off(rendered_scenarios, render) -> None:
    for off in (scenario_named(rendered_scenarios, "cri-only-values.yaml"), render({"kubernetesApi": {"enabled": False}})):
        assert off.kinds("ClusterRole") == off.kinds("ClusterRoleBinding") == []
        assert off.one("ServiceAccount")["automountServiceAccountToken"] is False
        assert pod_spec(off)["automountServiceAccountToken"] is False
        args = agent_container(off)["args"]
        assert "--kubernetes=off" in args and "--kubernetes=on" not in args
        assert "read when the pod is created" in off.notes and "kubectl annotate" not in off.notes


def test_rbac_create_false_keeps_the_api_source(render) -> None:
    rendered = render({"rbac": {"create": False}})
    assert rendered.kinds("ClusterRole") == rendered.kinds("ClusterRoleBinding") == []
    assert pod_spec(rendered)["automountServiceAccountToken"] is True
    assert "--kubernetes=on" in agent_container(rendered)["args"]
    assert "rbac.create is false: ServiceAccount monitoring/podbw needs" in rendered.notes


def test_rbac_binds_an_existing_service_account(rendered_scenarios, render) -> None:
    rendered = render({"serviceAccount": {"create": False, "name": "node-agents"}, "namespaceOverride": "kube-system"})
    assert rendered.kinds("ServiceAccount") == []
    assert pod_spec(rendered)["serviceAccountName"] == "node-agents"
    assert rendered.one("ClusterRoleBinding")["subjects"] == [
        {"kind": "ServiceAccount", "name": "node-agents", "namespace": "kube-system"}
    ]
    # A parent chart that brings its own account and permissions (ci/subchart-values.yaml).
    subchart = scenario_named(rendered_scenarios, "subchart-values.yaml")
    assert subchart.kinds("ServiceAccount") == subchart.kinds("ClusterRole") == []
    assert pod_spec(subchart)["serviceAccountName"] == "platform-node-agents"
    assert pod_spec(subchart)["automountServiceAccountToken"] is True


def test_default_scenario_schedules_everywhere_as_node_critical(defaults: harness.Rendered) -> None:
    pod = pod_spec(defaults)
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert daemonset(defaults)["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1}
    assert daemonset(defaults)["spec"]["revisionHistoryLimit"] == 10


def test_image_reference(rendered_scenarios) -> None:
    assert agent_container(scenario_named(rendered_scenarios, "default"))["image"] == "podbw:0.1.0"
    pinned = agent_container(scenario_named(rendered_scenarios, "agent-flags-values.yaml"))["image"]
    assert pinned == "registry.example.com/platform/podbw@sha256:" + "0123456789abcdef" * 4
    mirrored = scenario_named(rendered_scenarios, "subchart-values.yaml")
    assert agent_container(mirrored)["image"] == "mirror.example.com/podbw:0.1.0"
    assert pod_spec(mirrored)["imagePullSecrets"] == [{"name": "mirror-credentials"}, {"name": "platform-credentials"}]


def test_disabled_alerts_and_runbook_url(rendered_scenarios) -> None:
    [rule] = scenario_named(rendered_scenarios, "subchart-values.yaml").kinds("PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "PodbwLimitSaturated" not in alerts and "PodbwNodeWithoutAgent" not in alerts
    assert len(alerts) == 10
    assert alerts["PodbwAgentDown"]["annotations"]["runbook_url"] == "https://wiki.example.com/podbw/runbook#podbwagentdown"
    assert alerts["PodbwAgentDown"]["labels"] == {"severity": "critical", "team": "platform-network"}


def test_a_rule_group_with_every_alert_disabled_is_left_out(render) -> None:
    rules = yaml.safe_load(RULES_FILE.read_text())
    agent_alerts = [r["alert"] for g in rules["groups"] if g["name"] == "podbw-agent" for r in g["rules"]]
    rendered = render({"prometheusRule": {"enabled": True, "disabled": {a: True for a in agent_alerts}}})
    [rule] = rendered.kinds("PrometheusRule")
    assert [g["name"] for g in rule["spec"]["groups"]] == ["podbw-pods"]
    every = [r["alert"] for g in rules["groups"] for r in g["rules"]]
    nothing = render({"prometheusRule": {"enabled": True, "disabled": {a: True for a in every}}})
    assert nothing.kinds("PrometheusRule") == []


def test_notes_warn_when_the_operator_crds_are_missing(render) -> None:
    values = {"serviceMonitor": {"enabled": True}}
    assert "does not serve monitoring.coreos.com/v1" in render(values).notes
    served = render(values, api_versions=("monitoring.coreos.com/v1",)).notes
    assert "does not serve" not in served and 'release is named "kube-prometheus-stack"' in served


@pytest.mark.parametrize(
    "values, warned",
    [
        ({"serviceMonitor": {"enabled": True, "jobLabel": "app"}}, 'the label app, which is not set'),
        ({"serviceMonitor": {"enabled": True, "jobLabel": "team"}, "service": {"labels": {"team": "net"}}}, '"net"'),
        ({"serviceMonitor": {"enabled": True, "jobLabel": "app.kubernetes.io/name"}}, None),
        ({"podMonitor": {"enabled": True, "jobLabel": "tier"}, "podLabels": {"tier": "podbw"}}, None),
    ],
)
def test_notes_warn_when_the_job_label_is_not_podbw(render, values: dict, warned: str | None) -> None:
    notes = render(values).notes
    if warned:
        assert warned in notes and 'select job="podbw"' in notes
    else:
        assert "job name comes from" not in notes


def test_helm_numbers_render_as_helm_renders_them(render, monkeypatch: pytest.MonkeyPatch) -> None:
    # Values are float64 in Helm, printed with exponents beyond 1e6 and below 1e-4.
    rendered = render(
        {"agent": {"criTimeoutSeconds": 0.00005, "peakWindowSeconds": 0.25}, "serviceMonitor": {"enabled": True, "sampleLimit": 10000000}}
    )
    args = agent_container(rendered)["args"]
    assert "--cri-timeout=5e-05" in args  # what Helm prints, and podbw reads it back
    assert "--peak-window=0.25" in args
    assert parse_agent_flags(rendered, monkeypatch).cri_timeout == 5e-05
    assert rendered.one("ServiceMonitor")["spec"]["sampleLimit"] == 10000000


@pytest.mark.parametrize(
    "values, where",
    [
        ({"agent": {"egressMode": "tc"}}, "/agent/egressMode"),
        ({"agent": {"logLevel": "verbose"}}, "/agent/logLevel"),
        ({"agent": {"resyncIntervalSeconds": 0}}, "/agent/resyncIntervalSeconds"),
        ({"agent": {"criSocket": "crio.sock"}}, "/agent/criSocket"),
        ({"agent": {"extraArgs": ["-v"]}}, "/agent/extraArgs/0"),
        ({"agent": {"cleanupOnExit": "yes"}}, "/agent/cleanupOnExit"),
        ({"agnet": {}}, ""),
        ({"serviceMonitor": {"enabeld": True}}, "/serviceMonitor"),
        ({"serviceMonitor": {"interval": "15 seconds"}}, "/serviceMonitor/interval"),
        ({"serviceMonitor": {"sampleLimit": -1}}, "/serviceMonitor/sampleLimit"),
        ({"podMonitor": {"namespace": "Not_A_Namespace"}}, "/podMonitor/namespace"),
        ({"web": {"port": 70000}}, "/web/port"),
        ({"web": {"tls": {"enabled": True}}}, "/web/tls/secretName"),
        ({"web": {"config": {"basic_auth_user": {}}}}, "/web/config"),
        ({"web": {"config": {"basic_auth_users": {"prometheus": "plaintext"}}}}, "/web/config/basic_auth_users/prometheus"),
        ({"web": {"existingSecret": {"name": "Not_A_Name"}}}, "/web/existingSecret/name"),
        ({"serviceMonitor": {"basicAuth": {"username": {"name": "s"}}}}, "/serviceMonitor/basicAuth/username"),
        ({"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}, ""),
        ({"annotationsOverrides": {"web-0": {"kubernetes.io/egress-bandwidth": "1M"}}}, "invalid propertyName 'web-0'"),
        ({"updateStrategy": {"maxUnavailable": 0}}, "/updateStrategy/maxUnavailable"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"global": {"imagePullSecrets": [{"secret": "x"}]}}, "/global/imagePullSecrets/0"),
        ({"revisionHistoryLimit": -1}, "/revisionHistoryLimit"),
        ({"kubernetesApi": {"enabled": "auto"}}, "/kubernetesApi/enabled"),
        ({"rbac": {"create": "yes"}}, "/rbac/create"),
        ({"rbac": {"pspEnabled": True}}, "/rbac"),
        ({"extraVolumeMounts": [{"name": "x"}]}, "/extraVolumeMounts/0"),
        ({"prometheusRule": {"disabled": {"PodbwNoSuchAlert": True}}}, "invalid propertyName 'PodbwNoSuchAlert'"),
        ({"prometheusRule": {"runbookUrl": "wiki/podbw"}}, "/prometheusRule/runbookUrl"),
    ],
)
def test_values_that_violate_the_schema_are_rejected(render, values: dict, where: str) -> None:
    # `where` is the JSON pointer helm names; a map key's error it reports at the root, by key.
    with pytest.raises(harness.ChartError) as raised:
        render(values)
    message = str(raised.value)
    assert "values don't meet the specifications of the schema" in message, message
    assert (where if "propertyName" in where else f"- at '{where}'") in message, message


@pytest.mark.parametrize(
    "values, message",
    [
        ({"web": {"tls": {"enabled": True}}}, "web.tls.secretName is required"),
        ({"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}, "not both"),
        ({"web": {"existingSecret": {"name": "mine"}, "config": {"basic_auth_users": {"p": "$2y$10$x"}}}},
         "web.existingSecret.name replaces web.config and web.tls"),
    ],
)
def test_templates_refuse_what_the_schema_refuses(render, values: dict, message: str) -> None:
    # Behind the schema (a `helm template --skip-schema-validation` still fails, clearly).
    with pytest.raises(harness.ChartError, match=message):
        render(values, skip_schema=True)


def test_extra_objects_go_through_tpl(rendered_scenarios) -> None:
    tls = scenario_named(rendered_scenarios, "tls-values.yaml")
    [certificate] = tls.kinds("Certificate")
    assert certificate["metadata"] == {"name": "podbw-tls", "namespace": harness.RELEASE_NAMESPACE}
    assert certificate["spec"]["secretName"] == "podbw-tls"
    assert {"name": "tls", "secret": {"secretName": "podbw-tls", "defaultMode": 0o400}} in pod_spec(tls)["volumes"]


def test_every_ci_scenario_sets_something_of_its_own(rendered_scenarios) -> None:
    # Each values file must change what is rendered, or it tests nothing the default does not.
    default = scenario_named(rendered_scenarios, "default").stream
    for (name, version), rendered in rendered_scenarios.items():
        if name != "default" and version == harness.NEWEST_KUBE_VERSION:
            assert rendered.stream != default, name
