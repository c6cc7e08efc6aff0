"""The lab's pure parts: naming, spec files, annotation → CNI bandwidth, CNI result parsing."""

from __future__ import annotations

import pytest

from agent.lab.bandwidth import DEFAULT_BURST_BITS, parse_bits, runtime_bandwidth
from agent.lab.cni import conflist, ifb_name, parse_result
from agent.lab.config import LabConfig
from agent.lab.errors import LabError
from agent.lab.spec import PodSpec, generic_pods, parse_spec
from agent.lab.state import LabPod, LabState


def test_default_lab_is_crio_default_network() -> None:
    cfg = LabConfig.for_name()
    assert (cfg.bridge, cfg.subnet, cfg.network_name) == ("cni0", "10.85.0.0/16", "crio")
    assert (cfg.socket, cfg.state_dir, cfg.netns_dir) == ("/run/podbw-lab/crio.sock", "/run/podbw-lab/default", "/var/run/netns")
    assert cfg.ipam_dir == "/run/podbw-lab/default/ipam"


def test_named_labs_derive_distinct_names() -> None:
    a, b = LabConfig.for_name("demo"), LabConfig.for_name("t1", netns_dir="/run/podbw-lab/t1/netns")
    assert a.bridge.startswith("pbw") and len(a.bridge) == 11 and a.bridge != b.bridge
    assert a.network_name == "podbw-demo" and a.socket == "/run/podbw-lab/demo/crio.sock"
    second_octet = int(a.subnet.split(".")[1])
    assert 86 <= second_octet < 236 and a.subnet.endswith(".0.0/16")
    assert b.netns_dir_is_private and not a.netns_dir_is_private
    assert LabConfig.for_name("demo") == a  # stable across processes


@pytest.mark.parametrize("name", ["", "Demo", "a_b", "x" * 21, "../etc"])
def test_bad_lab_names_are_rejected(name: str) -> None:
    with pytest.raises(LabError):
        LabConfig.for_name(name)


def test_spec_expands_counts_and_stringifies_values() -> None:
    specs = parse_spec({"pods": [
        {"name": "web", "namespace": "shop", "count": 2, "annotations": {"kubernetes.io/egress-bandwidth": "10M", "n": 5}},
        {"name": "node-agent", "hostNetwork": True, "labels": {"on": True}},
    ]})
    assert [s.key for s in specs] == ["shop/web-0", "shop/web-1", "default/node-agent"]
    assert specs[0].annotations == {"kubernetes.io/egress-bandwidth": "10M", "n": "5"}
    assert specs[2].host_network and specs[2].labels == {"on": "true"}
    assert generic_pods(2) == [PodSpec("pod-0", "lab"), PodSpec("pod-1", "lab")]


@pytest.mark.parametrize("data", [
    {"pods": [{"namespace": "x"}]},
    {"pods": [{"name": "a", "count": -1}]},
    {"pods": [{"name": "a", "hostNetwork": "yes"}]},
    {"pods": [{"name": "a", "colour": "red"}]},
    {"pods": [{"name": "a"}, {"name": "a"}]},
    {"pods": [{"name": "A/b"}]},
    ["not", "a", "mapping"],
])
def test_bad_specs_are_rejected(data: object) -> None:
    with pytest.raises(LabError):
        parse_spec(data)


@pytest.mark.parametrize("text,bits", [("1000", 1000), ("10M", 10_000_000), ("1.5G", 1_500_000_000), ("1Ki", 1024), ("2k", 2000)])
def test_parse_bits(text: str, bits: int) -> None:
    assert parse_bits(text) == bits


@pytest.mark.parametrize("text", ["", "10Mbps", "K", "-1", "0", "1 M", "10m"])
def test_parse_bits_rejects(text: str) -> None:
    assert parse_bits(text) is None


def test_runtime_bandwidth_from_annotations() -> None:
    assert runtime_bandwidth({}) is None
    assert runtime_bandwidth({"kubernetes.io/ingress-bandwidth": "bogus"}) is None
    entry = runtime_bandwidth({
        "kubernetes.io/ingress-bandwidth": "10M",
        "kubernetes.io/egress-bandwidth": "1G",
        "podbw.io/egress-burst": "1G",
    })
    assert entry == {"ingressRate": 10_000_000, "ingressBurst": DEFAULT_BURST_BITS, "egressRate": 10**9, "egressBurst": 10**9}
    assert DEFAULT_BURST_BITS // 8 < 2**32 - 1  # what plugin v1.1.1 accepts


def test_ifb_name_matches_the_bandwidth_plugin() -> None:
    # Measured: plugin v1.1.1 made this ifb for network "podbw-exp", container "abc123".
    assert ifb_name("podbw-exp", "abc123") == "bwpb0e218ce040b"


def test_conflist_and_result_parsing() -> None:
    cfg = LabConfig.for_name("demo")
    plain, shaped = conflist(cfg, False), conflist(cfg, True)
    assert [p["type"] for p in plain["plugins"]] == ["bridge"]
    assert [p["type"] for p in shaped["plugins"]] == ["bridge", "bandwidth"]
    bridge = plain["plugins"][0]
    assert bridge["bridge"] == cfg.bridge and bridge["ipMasq"] is False and bridge["ipam"]["dataDir"] == cfg.ipam_dir
    result = {
        "interfaces": [{"name": cfg.bridge}, {"name": "veth1234abcd"}, {"name": "eth0", "sandbox": "/var/run/netns/x"}],
        "ips": [{"interface": 2, "address": "10.99.0.5/16", "gateway": "10.99.0.1"}],
    }
    parsed = parse_result(result, cfg.bridge)
    assert (parsed.ip, parsed.host_veth) == ("10.99.0.5", "veth1234abcd")


def test_state_round_trip_keeps_the_schema() -> None:
    state = LabState.new(LabConfig.for_name("demo"), pod_events=False, cni_bandwidth=True)
    state.pods.append(LabPod("a" * 64, "u", "ns", "p", "/var/run/netns/x", annotations={"k": "v"}))
    data = state.to_dict()
    assert list(data) == ["name", "bridge", "subnet", "socket", "netns_dir", "pod_events", "cni_bandwidth",
                          "runtime", "pods"]
    assert data["runtime"] == "crio"
    assert list(data["pods"][0]) == [
        "sandbox_id", "uid", "namespace", "name", "attempt", "netns_path", "host_network", "ip",
        "host_veth", "annotations", "labels", "created_at_ns",
    ]
    assert LabState.from_dict(data) == state
    assert state.find("ns/p") is state.pods[0] and state.find("a" * 8) is state.pods[0]
    with pytest.raises(LabError):
        state.find("ns/q")


def test_state_records_the_runtime_and_refuses_an_unknown_one() -> None:
    state = LabState.new(LabConfig.for_name("demo"), pod_events=True, cni_bandwidth=False, runtime="containerd")
    assert LabState.from_dict(state.to_dict()).runtime == "containerd"
    written_before_runtimes = {k: v for k, v in state.to_dict().items() if k != "runtime"}
    assert LabState.from_dict(written_before_runtimes).runtime == "crio"
    with pytest.raises(LabError, match="unknown runtime 'docker'"):
        LabState.from_dict({**state.to_dict(), "runtime": "docker"})
    with pytest.raises(LabError, match="unknown runtime 'docker'"):
        LabState.new(LabConfig.for_name("demo"), pod_events=True, cni_bandwidth=False, runtime="docker")
