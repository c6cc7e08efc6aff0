"""The lab node simulator against the real kernel and the real CNI plugins."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import uuid

import pytest

from agent.lab import links, netns
from agent.lab.cni import ifb_name
from agent.lab.config import LAB_ROOT
from agent.lab.node import LabNode
from agent.lab.ping import ping_argv
from agent.lab.spec import PodSpec
from agent.lab.state import LabPod, write_pending

pytestmark = pytest.mark.root

HAVE_CRI_SERVER = importlib.util.find_spec("agent.lab.cri_server") is not None
STATE_KEYS = {"name", "bridge", "subnet", "socket", "netns_dir", "pod_events", "cni_bandwidth", "runtime", "pods"}
POD_KEYS = {
    "sandbox_id", "uid", "namespace", "name", "attempt", "netns_path", "host_network", "ip",
    "host_veth", "annotations", "labels", "created_at_ns",
}


def _process_runs(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _host_netns_inode() -> int:
    return os.stat(netns.host_netns_source()).st_ino


def _pinned_inode(path: str) -> int:
    inode = netns.netns_inode(path)
    assert inode is not None, f"{path} is not a mounted namespace"
    return inode


def _ping(node: LabNode, src: LabPod, dst: LabPod) -> None:
    result = node.exec_in_pod(src, ping_argv(dst.ip), timeout=5)
    assert result.returncode == 0, f"{src.key} -> {dst.key} ({dst.ip}): {result.stdout}{result.stderr}"


def _assert_gone(node: LabNode, pods: list[LabPod]) -> None:
    cfg = node.config
    for pod in pods:
        assert not os.path.exists(pod.netns_path), pod.netns_path
        assert not pod.host_veth or not links.link_exists(pod.host_veth), pod.host_veth
        assert not links.link_exists(ifb_name(cfg.network_name, pod.sandbox_id))
    assert not links.link_exists(cfg.bridge)
    assert not os.path.exists(cfg.ipam_dir)
    assert not os.path.exists(cfg.state_dir)
    assert not os.path.exists(cfg.socket)
    assert not any(m.startswith(cfg.state_dir) for m in netns.mount_points())


def test_up_wires_pods_like_crio_and_down_removes_everything(lab_factory) -> None:
    node = lab_factory()
    cfg = node.config
    specs = [PodSpec(f"web-{i}", namespace="shop", annotations={"a": str(i)}, labels={"app": "web"}) for i in range(4)]
    specs.append(PodSpec("hostnet", namespace="kube-system", host_network=True))
    created = node.up(specs, start_cri=False)
    api_pid = node.api_server_pid()
    assert api_pid is not None

    pods = node.pods()
    assert [p.key for p in pods] == [s.key for s in specs] == [p.key for p in created]
    net_pods = [p for p in pods if not p.host_network]
    host_pod = next(p for p in pods if p.host_network)

    inodes = set()
    for pod in pods:
        assert re.fullmatch(r"[0-9a-f]{64}", pod.sandbox_id)
        assert str(uuid.UUID(pod.uid)) == pod.uid
        assert os.path.dirname(pod.netns_path) == cfg.netns_dir
        uuid.UUID(os.path.basename(pod.netns_path))  # named as pinns names it
        inodes.add(_pinned_inode(pod.netns_path))
    assert len(inodes) == len(pods), "every pod has its own namespace"

    # hostNetwork: pinned to the host namespace, no CNI.
    assert _pinned_inode(host_pod.netns_path) == _host_netns_inode()
    assert host_pod.ip == "" and host_pod.host_veth == ""

    for pod in net_pods:
        assert pod.ip.startswith(cfg.subnet.split(".0.0/")[0] + ".")
        assert links.link_master(pod.host_veth) == cfg.bridge
    for src, dst in zip(net_pods, net_pods[1:] + net_pods[:1]):
        _ping(node, src, dst)

    with open(cfg.state_file, encoding="utf-8") as f:
        state = json.load(f)
    assert set(state) == STATE_KEYS
    assert (state["name"], state["bridge"], state["subnet"]) == (cfg.name, cfg.bridge, cfg.subnet)
    assert (state["socket"], state["netns_dir"], state["pod_events"], state["cni_bandwidth"], state["runtime"]) == (
        cfg.socket, cfg.netns_dir, True, False, "crio"
    )
    assert all(set(p) == POD_KEYS for p in state["pods"])
    assert [p["sandbox_id"] for p in state["pods"]] == [p.sandbox_id for p in pods]
    assert state["pods"][1]["annotations"] == {"a": "1"}
    assert state["pods"][1]["labels"]["app"] == "web"

    # add, then delete by namespace/name and by sandbox id
    extra = node.add(PodSpec("extra", namespace="shop"))
    _ping(node, extra, net_pods[0])
    node.delete("shop/extra")
    node.delete(net_pods[0].sandbox_id)
    assert [p.key for p in node.pods()] == [p.key for p in pods[1:]]
    for gone in (extra, net_pods[0]):
        assert not os.path.exists(gone.netns_path)
        assert not links.link_exists(gone.host_veth)
    assert len(os.listdir(cfg.netns_dir)) == len(pods) - 1

    node.down()
    _assert_gone(node, pods + [extra])
    assert not _process_runs(api_pid)
    assert links.link_exists("lo")  # sanity: the checks above can see links at all
    node.down()  # a second down is a no-op


def test_down_after_a_crash_finds_half_made_pods_and_pod_processes(lab_factory) -> None:
    node = lab_factory()
    cfg = node.config
    (pod,) = node.up([PodSpec("p")], start_cri=False)
    # A process left running in the pod (it would keep the namespace and veth alive).
    stray = subprocess.Popen(
        ["nsenter", f"--net={pod.netns_path}", "sleep", "60"], start_new_session=True
    )
    # An `add` that died after pinning, before the state file: only the pending journal knows.
    half = LabPod(sandbox_id="ab" * 32, uid=str(uuid.uuid4()), namespace="lab", name="half",
                  netns_path=os.path.join(cfg.netns_dir, str(uuid.uuid4())))
    write_pending(cfg, half)
    netns.create_pin_file(half.netns_path)
    netns.pin_new_netns(half.netns_path)

    api_pid = node.api_server_pid()
    LabNode(cfg).down()  # a fresh node object, as a later `podbw lab down` would be
    assert stray.wait(timeout=5) != 0
    assert api_pid is not None and not _process_runs(api_pid)
    _assert_gone(node, [pod, half])


def test_cni_bandwidth_plugin_shapes_annotated_pods(lab_factory) -> None:
    node = lab_factory()
    cfg = node.config
    limited, plain = node.up(
        [
            PodSpec("limited", annotations={
                "kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "5M",
            }),
            PodSpec("plain"),
        ],
        cni_bandwidth=True, start_cri=False,
    )
    veth_qdiscs = subprocess.run(["tc", "qdisc", "show", "dev", limited.host_veth], capture_output=True, text=True, check=True).stdout
    assert re.search(r"qdisc tbf \S+ root .*rate 10Mbit", veth_qdiscs), veth_qdiscs
    assert "qdisc ingress ffff:" in veth_qdiscs
    ifb = ifb_name(cfg.network_name, limited.sandbox_id)
    ifb_qdiscs = subprocess.run(["tc", "qdisc", "show", "dev", ifb], capture_output=True, text=True, check=True).stdout
    assert re.search(r"qdisc tbf \S+ root .*rate 5Mbit", ifb_qdiscs), ifb_qdiscs
    plain_qdiscs = subprocess.run(["tc", "qdisc", "show", "dev", plain.host_veth], capture_output=True, text=True, check=True).stdout
    assert "tbf" not in plain_qdiscs
    assert not links.link_exists(ifb_name(cfg.network_name, plain.sandbox_id))
    _ping(node, plain, limited)

    node.down()
    assert not links.link_exists(ifb)
    _assert_gone(node, [limited, plain])


@pytest.mark.skipif(not HAVE_CRI_SERVER, reason="agent.lab.cri_server not written yet")
def test_cri_server_serves_the_lab_and_restarts(lab_factory) -> None:
    import grpc

    from agent.cri import runtime_pb2 as pb

    node = lab_factory()
    cfg = node.config
    node.up([PodSpec("a"), PodSpec("b")], pod_events=False)
    assert os.path.exists(cfg.socket)
    first_pid = node.cri_server_pid()
    assert first_pid is not None

    def listed() -> set[str]:
        with grpc.insecure_channel(f"unix://{cfg.socket}") as channel:
            call = channel.unary_unary(
                "/runtime.v1.RuntimeService/ListPodSandbox",
                request_serializer=pb.ListPodSandboxRequest.SerializeToString,
                response_deserializer=pb.ListPodSandboxResponse.FromString,
            )
            return {item.id for item in call(pb.ListPodSandboxRequest(), timeout=5).items}

    assert listed() == {p.sandbox_id for p in node.pods()}
    node.restart_cri_server()
    assert node.cri_server_pid() not in (None, first_pid)
    added = node.add(PodSpec("c"))
    assert added.sandbox_id in listed()
    node.stop_cri_server()
    assert not os.path.exists(cfg.socket) and node.cri_server_pid() is None


@pytest.mark.skipif(not HAVE_CRI_SERVER, reason="agent.lab.cri_server not written yet")
def test_containerd_mode_pins_like_containerd_and_answers_as_containerd(lab_factory) -> None:
    import grpc

    from agent.cri import runtime_pb2 as pb

    node = lab_factory()
    cfg = node.config
    web, hostnet = node.up([PodSpec("web", "shop"), PodSpec("agent", "kube-system", host_network=True)],
                           pod_events=False, runtime="containerd")
    assert re.fullmatch(r"cni-[0-9a-f-]{36}", os.path.basename(web.netns_path))
    uuid.UUID(os.path.basename(web.netns_path).removeprefix("cni-"))
    assert os.path.dirname(web.netns_path) == cfg.netns_dir and _pinned_inode(web.netns_path) != _host_netns_inode()
    assert hostnet.netns_path == "" and os.listdir(cfg.netns_dir) == [os.path.basename(web.netns_path)]
    assert node.state().runtime == "containerd"

    with grpc.insecure_channel(f"unix://{cfg.socket}") as channel:
        version = channel.unary_unary(
            "/runtime.v1.RuntimeService/Version",
            request_serializer=pb.VersionRequest.SerializeToString,
            response_deserializer=pb.VersionResponse.FromString,
        )(pb.VersionRequest(), timeout=5)
        status = channel.unary_unary(
            "/runtime.v1.RuntimeService/PodSandboxStatus",
            request_serializer=pb.PodSandboxStatusRequest.SerializeToString,
            response_deserializer=pb.PodSandboxStatusResponse.FromString,
        )
        infos = {pod.key: json.loads(status(pb.PodSandboxStatusRequest(pod_sandbox_id=pod.sandbox_id, verbose=True),
                                            timeout=5).info["info"]) for pod in (web, hostnet)}
    assert version.runtime_name == "containerd"
    assert infos["shop/web"]["netNamespaceClosed"] is False
    assert infos["shop/web"]["sandboxMetadata"]["Metadata"]["NetNSPath"] == web.netns_path
    assert infos["kube-system/agent"]["sandboxMetadata"]["Metadata"]["NetNSPath"] == ""

    node.delete("kube-system/agent")  # no pin to remove
    node.down()
    _assert_gone(node, [web, hostnet])


def test_cli_up_status_add_delete_down(lab_factory) -> None:
    cfg = lab_factory().config  # reserved name; the fixture downs it even if the CLI fails

    def podbw(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent", "lab", *args], capture_output=True, text=True, timeout=60)

    up = podbw("up", "--pods", "3", "--name", cfg.name, "--netns-dir", cfg.netns_dir)
    assert up.returncode == 0, up.stderr
    assert f"kubectl --kubeconfig {cfg.kubeconfig}" in up.stdout
    api_pid = LabNode.attach(cfg.name).api_server_pid()
    assert api_pid is not None and os.path.exists(cfg.kubeconfig)
    status = podbw("status", "--name", cfg.name)
    assert status.returncode == 0, status.stderr
    for i in range(3):
        assert f"lab/pod-{i}" in status.stdout
    assert re.search(rf"Kubernetes API https://127\.0\.0\.1:\d+ \(pid {api_pid}\), node {cfg.node_name}", status.stdout), status.stdout
    added = podbw("add", "shop/x", "--annotation", "kubernetes.io/egress-bandwidth=1M", "--name", cfg.name)
    assert added.returncode == 0, added.stderr
    pods = LabNode.attach(cfg.name).pods()
    assert pods[-1].key == "shop/x" and pods[-1].annotations == {"kubernetes.io/egress-bandwidth": "1M"}
    assert podbw("delete", "lab/pod-0", "--name", cfg.name).returncode == 0

    missing = podbw("delete", "lab/nope", "--name", cfg.name)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [f"podbw lab delete: no pod 'lab/nope' in lab '{cfg.name}'"]
    bad_name = podbw("status", "--name", "Bad_Name")
    assert bad_name.returncode == 1 and "Traceback" not in bad_name.stderr

    assert podbw("down", "--name", cfg.name).returncode == 0
    assert not os.path.exists(os.path.join(LAB_ROOT, cfg.name))
    assert not links.link_exists(cfg.bridge)
    assert not _process_runs(api_pid), "down stops the Kubernetes API stand-in"
