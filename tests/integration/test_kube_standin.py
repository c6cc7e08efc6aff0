"""The lab's Kubernetes API stand-in against real kubectl 1.35 and raw HTTPS: what the agent's
API source and `kubectl annotate` / `describe pod` rely on, with every kubectl command free of
warnings on stderr."""

from __future__ import annotations

import datetime
import json
import re
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from agent.lab.errors import LabError
from agent.lab.kube_process import ApiServerSettings
from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from tests.integration.helpers import wait_for
from tests.integration.kube_http import KubeHttp, WatchReader
from tests.integration.kubectl import Kubectl, table

pytestmark = pytest.mark.root

EGRESS = "kubernetes.io/egress-bandwidth"
PODS = [
    PodSpec("web", "shop", annotations={EGRESS: "10M"}, labels={"app": "web"}),
    PodSpec("api", "shop", labels={"app": "api"}),
    PodSpec("agent", "kube-system", host_network=True),
]


@pytest.fixture
def lab(lab_factory) -> LabNode:
    node = lab_factory()
    node.api_settings = ApiServerSettings(bookmark_interval_s=1.0, log_level="debug")
    node.up(PODS, pod_events=False)
    return node


@pytest.fixture
def watches() -> Iterator[list[WatchReader]]:
    opened: list[WatchReader] = []
    yield opened
    for reader in opened:
        reader.close()


def _micro_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_kubectl_get_annotate_and_describe(lab: LabNode, tmp_path: Path) -> None:
    k = Kubectl(lab, tmp_path / "kcache")
    api = KubeHttp(lab.kubeconfig)
    pods = {p.key: p for p in lab.pods()}

    rows = table(k("get", "pods", "-A", "-o", "wide"))
    assert sorted((r["NAMESPACE"], r["NAME"]) for r in rows) == [("kube-system", "agent"), ("shop", "api"), ("shop", "web")]
    for row in rows:
        assert (row["READY"], row["STATUS"], row["NODE"]) == ("1/1", "Running", lab.node_name)
        lab_pod = pods[f"{row['NAMESPACE']}/{row['NAME']}"]
        assert row["IP"] == (lab_pod.ip or api.get(f"/api/v1/namespaces/kube-system/pods/agent")["status"]["hostIP"])

    def annotations(ref: str = "shop/web") -> dict[str, str]:
        namespace, name = ref.split("/")
        return api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")["metadata"].get("annotations", {})

    def rv(ref: str = "shop/web") -> int:
        namespace, name = ref.split("/")
        return int(api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")["metadata"]["resourceVersion"])

    # add a new key, then kubectl's own --overwrite check, then overwrite, then remove
    assert k("-n", "shop", "annotate", "pod", "web", "podbw.io/egress-burst=64k") == "pod/web annotated\n"
    assert annotations() == {EGRESS: "10M", "podbw.io/egress-burst": "64k"}
    refused = k.run("-n", "shop", "annotate", "pod", "web", f"{EGRESS}=50M")
    assert refused.returncode == 1
    assert refused.stderr == f"error: --overwrite is false but found the following declared annotation(s): '{EGRESS}' already has a value (10M)\n"
    before = rv()
    k("-n", "shop", "annotate", "pod", "web", f"{EGRESS}=50M", "--overwrite")
    assert annotations()[EGRESS] == "50M" and rv() > before
    k("-n", "shop", "annotate", "pod", "web", f"{EGRESS}-", "podbw.io/egress-burst-")
    assert annotations() == {}
    stale = k.run("-n", "shop", "annotate", "pod", "api", "x=y", "--resource-version=1")
    assert stale.returncode == 1 and "the object has been modified" in stale.stderr
    # the CRI side keeps the values at creation
    assert next(p for p in lab.pods() if p.key == "shop/web").annotations == {EGRESS: "10M"}

    k("annotate", "namespace", "shop", "podbw.io/default-egress-bandwidth=20M")
    assert api.get("/api/v1/namespaces/shop")["metadata"]["annotations"] == {"podbw.io/default-egress-bandwidth": "20M"}
    assert "shop" in k("get", "namespaces")

    web = api.get("/api/v1/namespaces/shop/pods/web")
    event = {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.podbw-test", "namespace": "shop"},
        "eventTime": _micro_now(), "reportingController": "podbw.io/agent", "reportingInstance": lab.node_name,
        "action": "Shape", "reason": "InvalidBandwidthAnnotation", "type": "Warning",
        "note": f"{EGRESS}=10Mbps: unknown suffix",
        "regarding": {"kind": "Pod", "apiVersion": "v1", "namespace": "shop", "name": "web", "uid": web["metadata"]["uid"]},
    }
    status, created = api.request("POST", "/apis/events.k8s.io/v1/namespaces/shop/events", event)
    assert status == 201, created
    described = k("-n", "shop", "describe", "pod", "web")
    events_part = described.split("\nEvents:\n", 1)[1].splitlines()
    assert events_part[0].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert re.fullmatch(rf"\s+Warning\s+InvalidBandwidthAnnotation\s+\d+s\s+podbw\.io/agent\s+{EGRESS}=10Mbps: unknown suffix",
                        events_part[2]), events_part
    assert re.search(rf"^Node:\s+{lab.node_name}/", described, re.M)
    assert re.search(r"^Events:\s+<none>$", k("-n", "shop", "describe", "pod", "api"), re.M)
    (row,) = table(k("-n", "shop", "get", "events"))
    assert (row["TYPE"], row["REASON"], row["OBJECT"]) == ("Warning", "InvalidBandwidthAnnotation", "pod/web")
    assert k("get", "events.events.k8s.io", "-A", "-o", "name") == "event.events.k8s.io/web.podbw-test\n"


def test_list_watch_bookmarks_and_410_over_raw_https(lab: LabNode, tmp_path: Path, watches: list[WatchReader]) -> None:
    k = Kubectl(lab, tmp_path / "kcache")
    api = KubeHttp(lab.kubeconfig)
    node = lab.node_name

    listed = api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{node}")
    assert sorted(p["metadata"]["name"] for p in listed["items"]) == ["agent", "api", "web"]
    assert {p["metadata"]["uid"] for p in listed["items"]} == {p.uid for p in lab.pods()}, "the CRI stand-in's UIDs"
    assert api.get("/api/v1/pods?fieldSelector=spec.nodeName%3Dsome-other-node")["items"] == []
    status, body = api.request("GET", "/api/v1/pods?fieldSelector=spec.nodeNam%3Dx")
    assert (status, body["reason"], body["message"]) == (400, "BadRequest", "field label not supported: spec.nodeNam")

    list_rv = listed["metadata"]["resourceVersion"]
    watch = api.watch(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{node}&watch=1&resourceVersion={list_rv}"
                      "&allowWatchBookmarks=true&timeoutSeconds=60")
    watches.append(watch)
    assert watch.status == 200
    k("-n", "shop", "annotate", "pod", "api", f"{EGRESS}=5M")
    modified, before = watch.wait_for(lambda e: e["type"] == "MODIFIED")
    assert all(e["type"] == "BOOKMARK" for e in before)
    assert modified["object"]["metadata"]["name"] == "api" and modified["object"]["metadata"]["annotations"] == {EGRESS: "5M"}
    assert int(modified["object"]["metadata"]["resourceVersion"]) > int(list_rv)

    lab.add(PodSpec("late", "jobs"))
    added, _ = watch.wait_for(lambda e: e["type"] == "ADDED")
    assert added["object"]["metadata"]["namespace"] == "jobs" and added["object"]["spec"]["nodeName"] == node
    lab.delete("shop/web")
    deleted, _ = watch.wait_for(lambda e: e["type"] == "DELETED")
    assert deleted["object"]["metadata"]["name"] == "web"
    bookmark, _ = watch.wait_for(lambda e: e["type"] == "BOOKMARK", timeout_s=5)
    assert bookmark["object"]["kind"] == "Pod" and set(bookmark["object"]["metadata"]) == {"resourceVersion"}
    assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= int(deleted["object"]["metadata"]["resourceVersion"])

    # compaction: every RV handed out so far is too old, for a new watch; the open one goes on
    compacted_rv = lab.compact_api_history()
    stale = api.watch(f"/api/v1/pods?watch=1&resourceVersion={list_rv}")
    watches.append(stale)
    error = stale.next_event()
    assert stale.status == 200 and error["type"] == "ERROR"
    assert (error["object"]["code"], error["object"]["reason"]) == (410, "Expired")
    assert error["object"]["message"].startswith(f"too old resource version: {list_rv} (")
    assert stale.next_event() is None, "the stream ends after the error"
    relisted = api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{node}")
    assert int(relisted["metadata"]["resourceVersion"]) >= compacted_rv
    fresh = api.watch(f"/api/v1/pods?watch=1&resourceVersion={relisted['metadata']['resourceVersion']}&timeoutSeconds=30")
    watches.append(fresh)
    k("-n", "shop", "annotate", "pod", "api", f"{EGRESS}=6M", "--overwrite")
    assert fresh.wait_for(lambda e: e["type"] != "BOOKMARK")[0]["type"] == "MODIFIED"
    assert watch.wait_for(lambda e: e["type"] == "MODIFIED")[0]["object"]["metadata"]["annotations"] == {EGRESS: "6M"}

    # the failure-injection close ends open streams cleanly
    lab.close_api_watches()
    assert _ends(watch) and _ends(fresh)
    counts = lab.api_request_counts()
    assert counts["list pods"] == 3 and counts["watch pods"] == 3 and counts["patch pods"] == 2


def _ends(watch: WatchReader, timeout_s: float = 5.0) -> bool:
    while True:
        event = watch.next_event(timeout_s)
        if event is None:
            return True
        assert event["type"] in ("BOOKMARK", "MODIFIED", "ADDED", "DELETED"), event


def test_restart_keeps_port_credentials_and_annotations_but_not_old_rvs(lab: LabNode, tmp_path: Path, watches: list[WatchReader]) -> None:
    k = Kubectl(lab, tmp_path / "kcache")
    api = KubeHttp(lab.kubeconfig)
    k("-n", "shop", "annotate", "pod", "web", f"{EGRESS}=70M", "--overwrite")
    k("annotate", "namespace", "shop", "podbw.io/default-ingress-bandwidth=5M")
    old_rv = api.get("/api/v1/pods")["metadata"]["resourceVersion"]
    url, pid = lab.api_server_url(), lab.api_server_pid()
    k("-n", "shop", "annotate", "pod", "api", "touched=yes")  # one more write, so old_rv is behind the restart's RV

    lab.restart_api_server()
    assert lab.api_server_url() == url and lab.api_server_pid() not in (None, pid)
    after = KubeHttp(lab.kubeconfig)
    assert after.token == api.token and after.ca_pem == api.ca_pem
    assert api.get("/api/v1/namespaces/shop/pods/web")["metadata"]["annotations"] == {EGRESS: "70M"}
    assert api.get("/api/v1/namespaces/shop")["metadata"]["annotations"] == {"podbw.io/default-ingress-bandwidth": "5M"}
    listed = api.get("/api/v1/pods")
    assert int(listed["metadata"]["resourceVersion"]) > int(old_rv), "RVs go on after a restart"

    stale = api.watch(f"/api/v1/pods?watch=1&resourceVersion={old_rv}")
    watches.append(stale)
    error = stale.next_event()
    assert error["type"] == "ERROR" and error["object"]["code"] == 410
    current = api.watch(f"/api/v1/pods?watch=1&resourceVersion={listed['metadata']['resourceVersion']}&timeoutSeconds=30")
    watches.append(current)
    lab.delete("shop/api")
    assert current.wait_for(lambda e: e["type"] == "DELETED")[0]["object"]["metadata"]["name"] == "api"

    lab.stop_api_server()
    assert lab.api_server_pid() is None
    with pytest.raises(LabError, match="is not running"):
        lab.compact_api_history()
    assert k.run("get", "pods", "-A", "--request-timeout=3s").returncode != 0
    lab.start_api_server()
    assert sorted(r["NAME"] for r in table(k("get", "pods", "-A"))) == ["agent", "web"]


def test_token_and_tls_are_required(lab: LabNode) -> None:
    api = KubeHttp(lab.kubeconfig)
    for token in (None, "wrong-token"):
        status, body = api.request("GET", "/api/v1/pods", token=token)
        assert (status, body["reason"]) == (401, "Unauthorized")
    assert api.request("GET", "/version")[0] == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        api.connection(context=ssl.create_default_context()).request("GET", "/version")
    other_ca = ssl.create_default_context()
    other_ca.check_hostname = True
    assert other_ca.verify_mode == ssl.CERT_REQUIRED
    status, body = api.request("GET", "/api/v1/namespaces")
    assert status == 200 and {n["metadata"]["name"] for n in body["items"]} == {"default", "kube-system", "shop"}


def test_kubectl_commands_need_no_openapi_and_log_each_request(lab: LabNode, tmp_path: Path) -> None:
    k = Kubectl(lab, tmp_path / "kcache")
    k("-n", "shop", "annotate", "pod", "web", "a=b")
    k("-n", "shop", "describe", "pod", "web")
    k("get", "pods", "-A", "-o", "wide")
    counts = lab.api_request_counts()
    assert counts["patch pods"] == 1 and counts["list events"] == 1
    log = Path(lab.config.kube_log_file).read_text()
    assert "/openapi/" not in log, "kubectl asked for OpenAPI: the stand-in does not serve it"
    assert "PATCH /api/v1/namespaces/shop/pods/web" in log, "requests are logged at debug level"
    store_file = Path(lab.config.kube_dir, "store.json")

    def saved_annotation() -> str | None:
        if not store_file.exists():
            return None
        objects = json.loads(store_file.read_text())["objects"]
        web = next(o["object"] for o in objects if o["resource"] == "pods" and o["object"]["metadata"]["name"] == "web")
        return web["metadata"].get("annotations", {}).get("a")

    wait_for(saved_annotation, timeout_s=3, what="the annotation saved in store.json")  # within a second


def test_malformed_connections_never_break_the_server(lab: LabNode) -> None:
    api = KubeHttp(lab.kubeconfig)
    with socket.create_connection((api.host, api.port), timeout=5) as plain:  # HTTP to the TLS port
        plain.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            reply = plain.recv(100)
        except ConnectionResetError:
            reply = b""
        assert not reply.startswith(b"HTTP/")

    def raw(request: bytes) -> bytes:
        """The whole response to request, sent with Connection: close over verified TLS."""
        with socket.create_connection((api.host, api.port), timeout=5) as sock:
            with api.context.wrap_socket(sock, server_hostname=api.host) as tls:
                tls.sendall(request)
                data = b""
                while chunk := tls.recv(4096):
                    data += chunk
                return data

    head = f"Host: x\r\nConnection: close\r\nAuthorization: Bearer {api.token}\r\n".encode()
    nonsense = raw(b"NONSENSE\r\n\r\n")
    assert nonsense.startswith(b"HTTP/1.1 400") and b'"kind":"Status"' in nonsense
    bad_length = raw(b"POST /api/v1/namespaces/shop/events HTTP/1.1\r\n" + head + b"Content-Length: many\r\n\r\n")
    assert bad_length.startswith(b"HTTP/1.1 400") and b'"reason":"BadRequest"' in bad_length
    huge = raw(b"POST /api/v1/namespaces/shop/events HTTP/1.1\r\n" + head + b"Content-Length: 999999999\r\n\r\n")
    assert huge.startswith(b"HTTP/1.1 413") and b'"reason":"RequestEntityTooLarge"' in huge
    body = json.dumps({"metadata": {"annotations": {"chunked": "yes"}}}).encode()
    chunked = raw(b"PATCH /api/v1/namespaces/shop/pods/web HTTP/1.1\r\n" + head
                  + b"Content-Type: application/merge-patch+json\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 200"), chunked[:200]
    with socket.create_connection((api.host, api.port), timeout=5) as sock:  # hang up mid-handshake
        sock.sendall(b"\x16\x03\x01\x00")
    status, counts = api.request("GET", "/podbw-lab/requests")
    assert status == 200 and counts["error 400"] == 2 and counts["error 413"] == 1
    assert api.get("/api/v1/namespaces/shop/pods/web")["metadata"]["annotations"]["chunked"] == "yes"
