#!/usr/bin/env python3
"""Cost of one statistics pass: struct-parsed raw netlink (NetlinkSocketPool) vs pyroute2.

Creates N namespaces of its own (unique prefix), each with a veth to a temporary bridge and a
TBF on both ends, then times full passes (links + qdiscs of every namespace + the host one):
  (a) agent.netlink.NetlinkSocketPool (raw socket per namespace, hand-written parsing)
  (b) pyroute2 IPRoute(netns=path, flags=0) per namespace, get_links() + get_qdiscs(), with the
      same fields extracted, sockets kept open.
Everything created is removed in a finally. Needs root.

    .venv/bin/python bench/netlink_parse.py [--namespaces 50] [--passes 20]
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyroute2 import IPRoute  # noqa: E402

from agent.netlink.socket import NetlinkSocketPool  # noqa: E402

NETNS_DIR = "/var/run/netns"
TBF = ["tbf", "rate", "10mbit", "burst", "32k", "latency", "5ms"]


def sh(*args: str, check: bool = True) -> None:
    subprocess.run(args, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class BenchNode:
    """N pod-like namespaces wired to one bridge; all names carry a random tag."""

    def __init__(self, count: int) -> None:
        self.tag = secrets.token_hex(2)
        self.bridge = f"pbbr{self.tag}"
        self.names = [f"podbwbench-{self.tag}-{i:02d}" for i in range(count)]
        self.host_veths = [f"pbv{self.tag}{i:02d}" for i in range(count)]

    @property
    def paths(self) -> list[str]:
        return [os.path.join(NETNS_DIR, n) for n in self.names]

    def up(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "link", "set", self.bridge, "up")
        for i, (ns, hv) in enumerate(zip(self.names, self.host_veths)):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", hv, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", hv, "master", self.bridge, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "addr", "add", f"10.251.{i // 200}.{i % 200 + 2}/16", "dev", "eth0")
            sh("tc", "qdisc", "add", "dev", hv, "root", "handle", "5062:", *TBF)
            sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root",
               "handle", "5062:", *TBF)

    def down(self) -> None:
        for ns in self.names:
            sh("ip", "netns", "del", ns, check=False)
        for hv in self.host_veths:
            sh("ip", "link", "del", hv, check=False)
        sh("ip", "link", "del", self.bridge, check=False)


def time_passes(run_pass: Callable[[], int], passes: int) -> tuple[float, float, int]:
    """(wall ms per pass, CPU ms per pass, records per pass), after two warm-up passes."""
    run_pass()
    records = run_pass()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(passes):
        run_pass()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return wall * 1000 / passes, cpu * 1000 / passes, records


def pool_pass(pool: NetlinkSocketPool, paths: list[str | None]) -> int:
    n = 0
    for path in paths:
        sock = pool.get(path)
        n += len(sock.links()) + len(sock.qdiscs())
    return n


def pyroute2_pass(iprs: list[IPRoute]) -> int:
    """Extract the same fields the raw reader returns, as a pyroute2-based sampler would."""
    n = 0
    for ipr in iprs:
        for msg in ipr.get_links():
            st = msg.get_attr("IFLA_STATS64") or {}
            info = msg.get_attr("IFLA_LINKINFO")
            _ = (msg["index"], msg.get_attr("IFLA_IFNAME"), msg.get_attr("IFLA_LINK"),
                 msg.get_attr("IFLA_LINK_NETNSID"), info.get_attr("IFLA_INFO_KIND") if info else "",
                 st.get("rx_bytes"), st.get("tx_bytes"), st.get("rx_packets"),
                 st.get("tx_packets"), st.get("rx_errors"), st.get("tx_errors"),
                 st.get("rx_dropped"), st.get("tx_dropped"))
            n += 1
        for msg in ipr.get_qdiscs():
            st2 = msg.get_attr("TCA_STATS2")
            basic = st2.get_attr("TCA_STATS_BASIC") if st2 else None
            queue = st2.get_attr("TCA_STATS_QUEUE") if st2 else None
            _ = (msg["index"], msg["handle"], msg["parent"], msg.get_attr("TCA_KIND"),
                 basic and basic["bytes"], basic and basic["packets"],
                 queue and queue["drops"], queue and queue["backlog"], queue and queue["qlen"])
            n += 1
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--passes", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2

    node = BenchNode(args.namespaces)
    pool = NetlinkSocketPool()
    iprs: list[IPRoute] = []
    try:
        t0 = time.perf_counter()
        node.up()
        print(f"setup: {args.namespaces} namespaces in {time.perf_counter() - t0:.1f} s "
              f"(tag {node.tag})")
        paths: list[str | None] = [None, *node.paths]

        t0 = time.perf_counter()
        for p in paths:
            pool.get(p)
        open_a = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        iprs = [IPRoute()] + [IPRoute(netns=p, flags=0) for p in node.paths]
        open_b = (time.perf_counter() - t0) * 1000

        wall_a, cpu_a, rec_a = time_passes(lambda: pool_pass(pool, paths), args.passes)
        wall_b, cpu_b, rec_b = time_passes(lambda: pyroute2_pass(iprs), args.passes)

        print(f"namespaces: {len(paths)} (incl. host), records per pass: raw {rec_a}, "
              f"pyroute2 {rec_b}; {args.passes} passes each")
        print(f"{'method':<34}{'wall ms/pass':>14}{'CPU ms/pass':>14}{'open all ms':>14}")
        print(f"{'(a) NetlinkSocketPool (struct)':<34}{wall_a:>14.2f}{cpu_a:>14.2f}{open_a:>14.1f}")
        print(f"{'(b) pyroute2 IPRoute per netns':<34}{wall_b:>14.2f}{cpu_b:>14.2f}{open_b:>14.1f}")
        print(f"ratio b/a: wall {wall_b / wall_a:.1f}x, CPU {cpu_b / cpu_a:.1f}x")
        return 0
    finally:
        pool.close_all()
        for ipr in iprs:
            ipr.close()
        node.down()


if __name__ == "__main__":
    sys.exit(main())
