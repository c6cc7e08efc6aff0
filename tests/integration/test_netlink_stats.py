"""NetlinkSocket against real namespaces, checked against iproute2's own view of the counters.

A "pod" namespace and a "node" namespace (standing in for the host) joined by a veth, with TBF
on both ends and an ingress qdisc on the node side. IPv6 is off and neighbours are permanent so
that no background traffic (DAD, MLD, ARP probes) moves a counter between two reads.
"""

from __future__ import annotations

import gc
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Iterator

import pytest

from agent.model.handles import TC_H_INGRESS, TC_H_ROOT
from agent.netlink.errors import Gone
from agent.netlink.netns import is_netns, netns_inode, open_netlink_socket, run_in_netns
from agent.netlink.socket import NetlinkSocket, NetlinkSocketPool

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

NETNS_DIR = "/var/run/netns"
TBF = ["tbf", "rate", "10mbit", "burst", "32k", "latency", "5ms"]
PODBW_HANDLE = 0x50620000
POD_IP, NODE_IP = "192.168.251.1", "192.168.251.2"
UDP_PORT = 5062
DATAGRAMS = 300


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def sh_quiet(*args: str) -> None:
    subprocess.run(args, check=False, capture_output=True)


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def add_netns(name: str) -> None:
    sh("ip", "netns", "add", name)
    sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
       "net.ipv6.conf.default.disable_ipv6=1")
    sh("ip", "-n", name, "link", "set", "lo", "up")


def link_json(ns: str, dev: str) -> dict:
    return json.loads(sh("ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev))[0]


@dataclass
class Pair:
    pod_ns: str
    node_ns: str
    node_veth: str  # the pod-side device is eth0

    @property
    def pod_path(self) -> str:
        return netns_path(self.pod_ns)

    @property
    def node_path(self) -> str:
        return netns_path(self.node_ns)


@pytest.fixture
def pair() -> Iterator[Pair]:
    tag = secrets.token_hex(3)
    p = Pair(f"podbwt-{tag}-pod", f"podbwt-{tag}-node", f"pbt{tag}n")
    try:
        add_netns(p.pod_ns)
        add_netns(p.node_ns)
        sh("ip", "-n", p.node_ns, "link", "add", p.node_veth, "type", "veth",
           "peer", "name", "eth0", "netns", p.pod_ns)
        sh("ip", "-n", p.pod_ns, "addr", "add", f"{POD_IP}/30", "dev", "eth0")
        sh("ip", "-n", p.node_ns, "addr", "add", f"{NODE_IP}/30", "dev", p.node_veth)
        sh("ip", "-n", p.pod_ns, "link", "set", "eth0", "up")
        sh("ip", "-n", p.node_ns, "link", "set", p.node_veth, "up")
        pod_mac = link_json(p.pod_ns, "eth0")["address"]
        node_mac = link_json(p.node_ns, p.node_veth)["address"]
        sh("ip", "-n", p.pod_ns, "neigh", "replace", NODE_IP, "lladdr", node_mac,
           "dev", "eth0", "nud", "permanent")
        sh("ip", "-n", p.node_ns, "neigh", "replace", POD_IP, "lladdr", pod_mac,
           "dev", p.node_veth, "nud", "permanent")
        sh("ip", "netns", "exec", p.node_ns, "tc", "qdisc", "add", "dev", p.node_veth, "root",
           "handle", "5062:", *TBF)
        sh("ip", "netns", "exec", p.node_ns, "tc", "qdisc", "add", "dev", p.node_veth, "ingress")
        sh("ip", "netns", "exec", p.pod_ns, "tc", "qdisc", "add", "dev", "eth0", "root",
           "handle", "5062:", *TBF)
        yield p
    finally:
        sh_quiet("ip", "-n", p.node_ns, "link", "del", p.node_veth)
        sh_quiet("ip", "netns", "del", p.pod_ns)
        sh_quiet("ip", "netns", "del", p.node_ns)


@pytest.fixture
def spare_netns() -> Iterator[str]:
    """An extra namespace the test may delete itself."""
    name = f"podbwt-{secrets.token_hex(3)}-x"
    try:
        add_netns(name)
        yield name
    finally:
        sh_quiet("ip", "netns", "del", name)


def udp_socket(path: str, bind_ip: str) -> socket.socket:
    sock = run_in_netns(path, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sock.bind((bind_ip, UDP_PORT))
    return sock


def send_traffic(p: Pair) -> None:
    """DATAGRAMS UDP datagrams each way; more than TBF's 32k burst, so some wait in the queue."""
    pod = udp_socket(p.pod_path, POD_IP)
    node = udp_socket(p.node_path, NODE_IP)
    try:
        payload = b"x" * 200
        for _ in range(DATAGRAMS):
            pod.sendto(payload, (NODE_IP, UDP_PORT))
            node.sendto(payload, (POD_IP, UDP_PORT))
    finally:
        pod.close()
        node.close()


def wait_for_empty_queues(*socks: NetlinkSocket) -> None:
    deadline = time.monotonic() + 5
    while any(q.backlog_packets for s in socks for q in s.qdiscs()):
        assert time.monotonic() < deadline, "TBF queues did not drain"
        time.sleep(0.02)


def assert_links_match_iproute2(stats: NetlinkSocket, ns: str) -> None:
    ours = {link.name: link for link in stats.links()}
    theirs = {j["ifname"]: j for j in json.loads(sh("ip", "-n", ns, "-s", "-j", "link", "show"))}
    assert ours.keys() == theirs.keys()
    for name, link in ours.items():
        j = theirs[name]
        s64 = j["stats64"]
        assert link.ifindex == j["ifindex"], name
        assert (link.rx_bytes, link.rx_packets, link.rx_errors, link.rx_dropped) == (
            s64["rx"]["bytes"], s64["rx"]["packets"], s64["rx"]["errors"], s64["rx"]["dropped"]
        ), name
        assert (link.tx_bytes, link.tx_packets, link.tx_errors, link.tx_dropped) == (
            s64["tx"]["bytes"], s64["tx"]["packets"], s64["tx"]["errors"], s64["tx"]["dropped"]
        ), name


def tc_handle(text: str) -> int:
    major, _, minor = text.partition(":")
    return (int(major or "0", 16) << 16) | int(minor or "0", 16)


def assert_qdiscs_match_tc(stats: NetlinkSocket, ns: str) -> None:
    names = {link.ifindex: link.name for link in stats.links()}
    ours = {(names[q.ifindex], q.handle): q for q in stats.qdiscs()}
    theirs = json.loads(sh("ip", "netns", "exec", ns, "tc", "-s", "-j", "qdisc", "show"))
    assert ours.keys() == {(j["dev"], tc_handle(j["handle"])) for j in theirs}
    for j in theirs:
        q = ours[(j["dev"], tc_handle(j["handle"]))]
        assert q.kind == j["kind"]
        assert q.parent == (0xFFFFFFFF if j.get("root") else tc_handle(j["parent"]))
        assert (q.bytes, q.packets, q.drops, q.overlimits, q.requeues) == (
            j["bytes"], j["packets"], j["drops"], j["overlimits"], j["requeues"]
        ), j
        assert (q.backlog_bytes, q.backlog_packets) == (j["backlog"], j["qlen"]), j


# -- counters ---------------------------------------------------------------------------------


def test_counters_equal_iproute2_after_traffic(pair: Pair) -> None:
    with NetlinkSocket(pair.pod_path) as pod, NetlinkSocket(pair.node_path) as node:
        send_traffic(pair)
        wait_for_empty_queues(pod, node)

        assert_links_match_iproute2(pod, pair.pod_ns)
        assert_links_match_iproute2(node, pair.node_ns)
        assert_qdiscs_match_tc(pod, pair.pod_ns)
        assert_qdiscs_match_tc(node, pair.node_ns)

        eth0 = next(link for link in pod.links() if link.name == "eth0")
        assert eth0.kind == "veth"
        assert eth0.tx_packets >= DATAGRAMS * 0.5 and eth0.rx_packets > 0
        kinds = {(q.ifindex, q.kind, q.handle) for q in node.qdiscs()}
        node_ifindex = next(x.ifindex for x in node.links() if x.name == pair.node_veth)
        assert (node_ifindex, "tbf", PODBW_HANDLE) in kinds
        assert (node_ifindex, "ingress", 0xFFFF0000) in kinds
        tbf = next(q for q in node.qdiscs() if q.kind == "tbf")
        assert tbf.packets > 0 and tbf.bytes > tbf.packets * 200


def test_pod_eth0_points_at_its_host_side_peer(pair: Pair) -> None:
    with NetlinkSocket(pair.pod_path) as pod, NetlinkSocket(pair.node_path) as node:
        eth0 = next(link for link in pod.links() if link.name == "eth0")
        peer = next(link for link in node.links() if link.name == pair.node_veth)
    assert eth0.peer_ifindex == peer.ifindex
    assert eth0.peer_netnsid >= 0
    assert eth0.peer_netnsid == link_json(pair.pod_ns, "eth0")["link_netnsid"]
    assert peer.peer_ifindex == eth0.ifindex


def test_single_gets_match_iproute2(pair: Pair) -> None:
    with NetlinkSocket(pair.pod_path) as pod, NetlinkSocket(pair.node_path) as node:
        eth0 = pod.link(name="eth0")
        assert eth0 is not None and pod.link(eth0.ifindex) == eth0
        details = json.loads(sh("ip", "-n", pair.pod_ns, "-d", "-j", "link", "show", "dev", "eth0"))[0]
        assert (eth0.kind, eth0.admin_up, eth0.gso_max_size) == ("veth", True, details["gso_max_size"])
        assert eth0.rx_bytes == 0, "single gets skip the statistics"
        peer = node.link(eth0.peer_ifindex)
        assert peer is not None and peer.name == pair.node_veth
        # The node's id for the pod's namespace is what its veth names as the peer's.
        assert node.nsid_of(pair.pod_path) == peer.peer_netnsid >= 0
        assert pod.link(name="nosuch0") is None
        sh("ip", "-n", pair.node_ns, "link", "set", pair.node_veth, "alias", "podbw test")
        assert node.link(name=pair.node_veth).alias == "podbw test"
        root = node.qdisc(peer.ifindex, TC_H_ROOT)
        assert root is not None and root.kind == "tbf" and root.handle == PODBW_HANDLE
        assert root.tbf is not None and root.tbf.rate_bytes_per_s == 10_000_000 // 8
        assert node.qdisc(peer.ifindex, TC_H_INGRESS).kind == "ingress"
        assert pod.qdisc(1, TC_H_INGRESS) is None  # nothing there: an answer, not an error


def test_own_namespace_reader_sees_loopback() -> None:
    with NetlinkSocket(None) as own:
        links = own.links()
        own.qdiscs()
    assert any(link.name == "lo" for link in links)


# -- namespaces that go away ------------------------------------------------------------------


def test_deleted_namespace_raises_netns_gone_and_releases_it(pair: Pair, spare_netns: str) -> None:
    # A veth from the doomed namespace to the node one shows whether the namespace still lives.
    probe = f"pbp{secrets.token_hex(3)}"
    sh("ip", "-n", pair.node_ns, "link", "add", probe, "type", "veth",
       "peer", "name", "eth0", "netns", spare_netns)
    path = netns_path(spare_netns)
    stats = NetlinkSocket(path)
    try:
        assert [link.name for link in stats.links()] == ["lo", "eth0"]
        sh("ip", "netns", "del", spare_netns)
        # Our socket alone keeps the namespace (and so the veth pair) alive...
        with NetlinkSocket(pair.node_path) as node:
            assert probe in {link.name for link in node.links()}
        with pytest.raises(Gone):
            stats.links()
        with pytest.raises(Gone):
            stats.qdiscs()
        assert stats.closed
        # ...and Gone closed it, so the kernel now tears the namespace down.
        with NetlinkSocket(pair.node_path) as node:
            deadline = time.monotonic() + 5
            while probe in {link.name for link in node.links()}:
                assert time.monotonic() < deadline, "namespace was not released"
                time.sleep(0.02)
    finally:
        stats.close()
        sh_quiet("ip", "-n", pair.node_ns, "link", "del", probe)


def test_missing_or_empty_pin_is_netns_gone(tmp_path) -> None:
    empty = tmp_path / "pin"
    empty.touch()  # what pinns leaves before the bind mount
    for path in (str(empty), str(tmp_path / "missing")):
        assert not is_netns(path)
        with pytest.raises(Gone):
            NetlinkSocket(path)
    with pytest.raises(Gone):
        NetlinkSocketPool().get(str(empty))


# -- the pool -----------------------------------------------------------------------------------


def test_pool_reuses_sockets_and_retain_closes_the_rest(pair: Pair) -> None:
    with NetlinkSocketPool() as pool:
        pod, node, own = pool.get(pair.pod_path), pool.get(pair.node_path), pool.get(None)
        assert pool.get(pair.pod_path) is pod
        assert pool.get(None) is own
        pool.retain([pair.pod_path])
        assert node.closed and not pod.closed and not own.closed
        assert pool.get(pair.pod_path) is pod
        assert pool.get(pair.node_path) is not node  # reopened on demand
        assert any(link.name == "eth0" for link in pool.get(pair.pod_path).links())
        pool.forget(pair.pod_path)
        assert pod.closed
    assert own.closed


def test_pool_is_safe_to_share_between_threads(pair: Pair) -> None:
    results: list[int] = []
    sockets: set[int] = set()
    errors: list[BaseException] = []
    with NetlinkSocketPool() as pool:

        def worker() -> None:
            try:
                for _ in range(20):
                    sock = pool.get(pair.pod_path)
                    sockets.add(id(sock))
                    results.append(len(sock.links()))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors and results == [2] * 80
    assert len(sockets) == 1, "one socket per namespace, whichever thread asks"


# -- run_in_netns and pyroute2 ----------------------------------------------------------------


def test_run_in_netns_leaves_the_calling_thread_alone(pair: Pair) -> None:
    before = os.stat("/proc/thread-self/ns/net").st_ino
    inside = run_in_netns(pair.pod_path, lambda: os.stat("/proc/thread-self/ns/net").st_ino)
    assert inside == netns_inode(pair.pod_path) != before
    assert os.stat("/proc/thread-self/ns/net").st_ino == before


def test_pyroute2_with_a_socket_opened_in_the_namespace(pair: Pair) -> None:
    """The way shaping code should drive pyroute2 0.9.7 in a pod namespace: no fork, no
    namespace creation; build and use the IPRoute in one thread."""
    from pyroute2 import IPRoute

    sock = open_netlink_socket(pair.pod_path)
    try:
        ipr = IPRoute(use_socket=sock)
        try:
            names = {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            assert names == {"lo", "eth0"}
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            ipr.tc("replace", "tbf", eth0, handle=PODBW_HANDLE, rate=250_000, burst=20_000,
                   latency=10_000)
        finally:
            ipr.close()
        assert sock.fileno() == -1  # IPRoute.close() closes a use_socket too
    finally:
        sock.close()
    out = json.loads(sh("ip", "netns", "exec", pair.pod_ns, "tc", "-j", "qdisc", "show",
                        "dev", "eth0"))
    assert out[0]["kind"] == "tbf" and out[0]["options"]["rate"] == 250_000


def test_pyroute2_iproute_built_in_run_in_netns_does_not_follow_the_namespace(pair: Pair) -> None:
    """pyroute2 0.9.7 keeps IPRoute's socket per thread: an IPRoute constructed inside
    run_in_netns and used from another thread opens a fresh socket in *that* thread's
    namespace. Here the using thread sits in the node namespace, so the node's links show up
    instead of the pod's. If this starts failing, pyroute2 changed and
    `run_in_netns(path, IPRoute)` became usable."""
    from pyroute2 import IPRoute

    def build_in_pod_use_from_node() -> set[str]:
        ipr = run_in_netns(pair.pod_path, IPRoute)
        try:
            return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        finally:
            ipr.close()

    unraisable_hook = sys.unraisablehook
    with warnings.catch_warnings():
        # The event loop IPRoute left in the helper thread's locals dies unclosed with it. Its
        # __del__ may also raise: the cycle's collector can finalize its self-pipe socket
        # first, and whether it does depends on the heap, i.e. on what ran before.
        warnings.simplefilter("ignore", ResourceWarning)
        sys.unraisablehook = lambda unraisable: None
        try:
            seen = run_in_netns(pair.node_path, build_in_pod_use_from_node)
            gc.collect()  # the leaked loop sits in a reference cycle: collect it while ignored
        finally:
            sys.unraisablehook = unraisable_hook
    assert seen == {"lo", pair.node_veth}
