#!/usr/bin/env python3
"""What a Kubernetes API client costs the agent: import RSS and CPU, and RSS after listing the
node's pods, for each candidate library, each in a fresh interpreter (issue 13).

Each candidate gets its own virtualenv (made once under --venvs with `pip install NAME`), so the
shared .venv holds only the one chosen. This process serves a stand-in API on loopback (stdlib
HTTP: discovery, a PodList of --pods kubelet-like pods of ~5 KB each with managedFields and
status, a NamespaceList) and a kubeconfig pointing at it. Every run is a fresh interpreter that
records VmRSS and process CPU before the import, after it, and after building a client from the
kubeconfig and listing the pods with `fieldSelector=spec.nodeName=N` into the library's own
objects. Runs go round-robin over the candidates (--runs each) so machine noise spreads evenly.

    .venv/bin/python bench/kube_clients.py [--runs 5] [--pods 250] [--output bench/results/kube_clients.md]

Needs no root and no lab; --venvs defaults to /var/tmp/podbw-kube-clients.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

NODE = "node-a"
ROOT = Path(__file__).resolve().parents[1]

MEASURE = r"""
import json, os, sys, time

def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

KUBECONFIG, SELECTOR, NODE, AGENT_PATHS = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
if AGENT_PATHS:
    # After the candidate's own packages: podbw's imports come first, the candidate's cost is what it adds.
    sys.path.extend(AGENT_PATHS.split(os.pathsep))
    import agent.cli.main, agent.service.agent
out = {"start_rss_mib": rss_mib()}
cpu0, wall0 = time.process_time(), time.perf_counter()
%(import)s
out["import_cpu_ms"] = (time.process_time() - cpu0) * 1000
out["import_wall_ms"] = (time.perf_counter() - wall0) * 1000
out["import_rss_mib"] = rss_mib()
out["modules"] = len(sys.modules)
cpu1 = time.process_time()
%(list)s
out["list_cpu_ms"] = (time.process_time() - cpu1) * 1000
out["list_rss_mib"] = rss_mib()
out["pods"] = n
print(json.dumps(out))
"""

CANDIDATES: dict[str, dict[str, str]] = {
    "kubernetes": {
        "pip": "kubernetes",
        "import": "from kubernetes import client, config, watch",
        "list": (
            "config.load_kube_config(config_file=KUBECONFIG)\n"
            "v1 = client.CoreV1Api()\n"
            "n = len(v1.list_pod_for_all_namespaces(field_selector=SELECTOR).items)"
        ),
    },
    "kubernetes-asyncio": {
        "pip": "kubernetes-asyncio",
        "import": "import asyncio\nfrom kubernetes_asyncio import client, config, watch",
        "list": (
            "async def main():\n"
            "    await config.load_kube_config(config_file=KUBECONFIG)\n"
            "    async with client.ApiClient() as api:\n"
            "        return len((await client.CoreV1Api(api).list_pod_for_all_namespaces(field_selector=SELECTOR)).items)\n"
            "n = asyncio.run(main())"
        ),
    },
    "lightkube": {
        "pip": "lightkube",
        "import": "from lightkube import Client, KubeConfig\nfrom lightkube.resources.core_v1 import Namespace, Pod",
        "list": (
            "c = Client(config=KubeConfig.from_file(KUBECONFIG))\n"
            "n = len(list(c.list(Pod, namespace='*', fields={'spec.nodeName': NODE})))"
        ),
    },
    "kr8s": {
        "pip": "kr8s",
        "import": "import kr8s\nfrom kr8s.objects import Pod",
        "list": (
            "api = kr8s.api(kubeconfig=KUBECONFIG)\n"
            "n = len(list(api.get('pods', namespace=kr8s.ALL, field_selector=SELECTOR)))"
        ),
    },
    "stdlib (reference)": {
        "pip": "",
        "import": "import http.client, ssl",
        "list": (
            "import urllib.parse\n"
            "server = [l.split()[-1] for l in open(KUBECONFIG) if 'server:' in l][0]\n"
            "u = urllib.parse.urlsplit(server)\n"
            "conn = http.client.HTTPConnection(u.hostname, u.port)\n"
            "conn.request('GET', '/api/v1/pods?fieldSelector=' + urllib.parse.quote(SELECTOR))\n"
            "n = len(json.loads(conn.getresponse().read())['items'])"
        ),
    },
}


def pod(index: int) -> dict:
    """A pod as the API returns it for a Deployment's replica: ~5 KB with managedFields."""
    name = f"web-{index:04d}-7d9f8c6b5d-x{index:04x}"
    namespace = f"ns-{index % 10}"
    uid = f"{index:08x}-1111-4222-8333-444455556666"
    container = {
        "name": "app",
        "image": "registry.example/shop/web:1.27.3",
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "env": [{"name": f"VAR_{i}", "value": f"value-{i}"} for i in range(6)],
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 5,
                           "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "volumeMounts": [{"name": "kube-api-access-abcde", "readOnly": True,
                          "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }
    now = "2026-12-01T10:00:00Z"
    return {
        "metadata": {
            "name": name, "generateName": name[:-5], "namespace": namespace, "uid": uid,
            "resourceVersion": str(1000 + index), "creationTimestamp": now,
            "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5d", "tier": "frontend"},
            "annotations": {
                "kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "20M",
                "kubectl.kubernetes.io/restartedAt": now, "prometheus.io/scrape": "true",
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8c6b5d",
                                 "uid": "rs-uid-0001", "controller": True, "blockOwnerDeletion": True}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": now,
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {
                     ".": {}, "f:app": {}, "f:pod-template-hash": {}, "f:tier": {}}, "f:ownerReferences": {
                     ".": {}, 'k:{"uid":"rs-uid-0001"}': {}}}, "f:spec": {"f:containers": {
                     'k:{"name":"app"}': {".": {}, "f:env": {}, "f:image": {}, "f:name": {}, "f:ports": {},
                                          "f:resources": {}, "f:readinessProbe": {}}}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": now,
                 "fieldsType": "FieldsV1", "subresource": "status", "fieldsV1": {"f:status": {
                     "f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {},
                     "f:podIP": {}, "f:podIPs": {}, "f:startTime": {}}}},
            ],
        },
        "spec": {
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                    "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}],
            "containers": [container],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "nodeName": NODE,
            "securityContext": {}, "schedulerName": "default-scheduler", "priority": 0,
            "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 300},
            ],
        },
        "status": {
            "phase": "Running", "hostIP": "192.0.2.10", "hostIPs": [{"ip": "192.0.2.10"}],
            "podIP": f"10.85.{index // 250}.{index % 250 + 2}", "podIPs": [{"ip": f"10.85.{index // 250}.{index % 250 + 2}"}],
            "startTime": now, "qosClass": "Burstable",
            "conditions": [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                           for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                     "PodScheduled")],
            "containerStatuses": [{"name": "app", "state": {"running": {"startedAt": now}}, "lastState": {},
                                   "ready": True, "restartCount": 0, "image": container["image"],
                                   "imageID": "registry.example/shop/web@sha256:" + "ab" * 32,
                                   "containerID": "cri-o://" + f"{index:064x}", "started": True}],
        },
    }


class StandIn(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    pods: list[dict] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        path = url.path.rstrip("/") or "/"  # kr8s asks for `/version/`
        if path == "/version":
            body: dict = {"major": "1", "minor": "35", "gitVersion": "v1.35.0", "platform": "linux/amd64"}
        elif path == "/api":
            body = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        elif path == "/apis":
            body = {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        elif path == "/api/v1":
            body = {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"],
                 "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
                {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
                 "shortNames": ["ns"], "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
            ]}
        elif path == "/api/v1/pods":
            selector = query.get("fieldSelector", [""])[0]
            items = [p for p in self.pods if selector in ("", f"spec.nodeName={p['spec']['nodeName']}")]
            body = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "99999"}, "items": items}
        elif path == "/api/v1/namespaces":
            body = {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": "99999"},
                    "items": [{"metadata": {"name": f"ns-{i}", "uid": f"ns-uid-{i}", "resourceVersion": str(i)}}
                              for i in range(10)]}
        else:
            self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                             "code": 404, "message": f"{url.path} not found"})
            return
        self._send(200, body)

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def kubeconfig(server: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\ncurrent-context: bench\n"
        f"clusters:\n- name: bench\n  cluster:\n    server: {server}\n"
        "users:\n- name: bench\n  user:\n    token: bench-token\n"
        "contexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\n    namespace: default\n"
    )


def python_of(name: str, venvs: Path) -> str:
    spec = CANDIDATES[name]
    if not spec["pip"]:
        return sys.executable
    venv = venvs / spec["pip"]
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", spec["pip"]], check=True)
    return str(python)


def version_of(python: str, name: str) -> str:
    pip = CANDIDATES[name]["pip"]
    if not pip:
        return platform.python_version()
    out = subprocess.run([python, "-m", "pip", "show", pip], capture_output=True, text=True, check=True).stdout
    return next(line.split()[-1] for line in out.splitlines() if line.startswith("Version:"))


def run_once(python: str, name: str, kubeconfig_path: str, agent_paths: str) -> dict:
    spec = CANDIDATES[name]
    code = MEASURE % {"import": spec["import"], "list": spec["list"]}
    result = subprocess.run(
        [python, "-c", code, kubeconfig_path, f"spec.nodeName={NODE}", NODE, agent_paths],
        capture_output=True, text=True, timeout=120, cwd="/", env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"{name}: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def summary(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pods", type=int, default=250)
    parser.add_argument("--venvs", type=Path, default=Path("/var/tmp/podbw-kube-clients"))
    parser.add_argument("--only", action="append", choices=list(CANDIDATES), help="measure only these")
    parser.add_argument(
        "--on-top-of-agent", action="store_true",
        help="import what `podbw run` imports first (from this interpreter's packages), then the candidate",
    )
    parser.add_argument("--output", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args()

    names = args.only or list(CANDIDATES)
    agent_paths = ""
    if args.on_top_of_agent:
        import site

        agent_paths = os.pathsep.join([str(ROOT), *site.getsitepackages()])
    args.venvs.mkdir(parents=True, exist_ok=True)
    pythons = {name: python_of(name, args.venvs) for name in names}
    StandIn.pods = [pod(i) for i in range(args.pods)]
    pod_bytes = len(json.dumps(StandIn.pods[0]))
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    results: dict[str, list[dict]] = {name: [] for name in names}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "kubeconfig")
            with open(path, "w") as handle:
                handle.write(kubeconfig(f"http://127.0.0.1:{server.server_address[1]}"))
            for _ in range(args.runs):
                for name in names:
                    results[name].append(run_once(pythons[name], name, path, agent_paths))
    finally:
        server.shutdown()
        server.server_close()

    lines = [
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python {platform.python_version()}, "
        f"{args.runs} fresh interpreters each (median (min-max)); {args.pods} pods of {pod_bytes} bytes of JSON"
        + ("; after `podbw run`'s own imports." if args.on_top_of_agent else "."),
        "",
        "| library (version) | interpreter RSS | RSS after import | import CPU | modules | "
        f"RSS after listing {args.pods} pods | list CPU (client + list) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in names:
        runs = results[name]
        assert all(r["pods"] == args.pods for r in runs), f"{name} listed {[r['pods'] for r in runs]} pods"
        lines.append(
            f"| {name} ({version_of(pythons[name], name)}) "
            f"| {summary([r['start_rss_mib'] for r in runs])} MiB "
            f"| {summary([r['import_rss_mib'] for r in runs])} MiB "
            f"| {summary([r['import_cpu_ms'] for r in runs], 0)} ms "
            f"| {int(statistics.median([r['modules'] for r in runs]))} "
            f"| {summary([r['list_rss_mib'] for r in runs])} MiB "
            f"| {summary([r['list_cpu_ms'] for r in runs], 0)} ms |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
