"""`podbw pods`: discover once and print the node's pods with their interfaces and annotations."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from dataclasses import asdict, dataclass

from typing import TYPE_CHECKING

from agent.cli.flags import add_discovery_flags, add_flag, build_settings
from agent.cli.parser import CommandParser
from agent.discovery.settings import DiscoverySettings
from agent.model.value_parsers import one_of

if TYPE_CHECKING:
    from agent.model.pod import Pod


@dataclass(frozen=True)
class PodRow:
    namespace: str
    name: str
    uid: str
    sandbox_id: str
    netns: str
    host_interface: str
    ip: str
    ingress_bandwidth: str
    egress_bandwidth: str
    source: str


def register(sub: argparse._SubParsersAction) -> None:
    parser: CommandParser = sub.add_parser("pods", help="list the pods discovered on this node")
    add_discovery_flags(parser)
    add_flag(parser, "--output", "table", "output format", one_of("table", "json"), metavar="table|json")
    parser.make_settings = lambda args: build_settings(DiscoverySettings, args)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that `podbw --help` and the other commands start fast.
    from agent.discovery.discovery import Discovery
    from agent.discovery.registry import PodRegistry
    from agent.model.health import HealthRecorder

    if logging.getLogger().level > logging.DEBUG:
        # One-shot: the failure is printed once below; the agent's log line would repeat it.
        logging.getLogger("agent.discovery").setLevel(logging.CRITICAL)
    registry = PodRegistry()
    # A viewer: showing the pins without CRI changes nothing.
    settings: DiscoverySettings = dataclasses.replace(args.settings, netns_fallback=True)
    discovery = Discovery(registry, settings, HealthRecorder())
    discovery.resync()
    ready, reason = discovery.ready()
    if not ready:
        print(f"podbw pods: {reason}", file=sys.stderr)
        return 1
    if discovery.mode == "netns" and settings.cri_endpoint:
        print(
            f"podbw pods: {settings.cri_endpoint} does not exist; listing the namespaces pinned in "
            f"{settings.netns_dir} (no CRI metadata or annotations)",
            file=sys.stderr,
        )
    rows = [describe(pod) for pod in sorted(registry.pods(), key=lambda p: (p.namespace, p.name))]
    if args.output == "json":
        json.dump([asdict(row) for row in rows], sys.stdout, indent=2)
        print()
    else:
        print_table(rows)
    return 0


def describe(pod: Pod) -> PodRow:
    from agent.model.annotations import EGRESS_BANDWIDTH, INGRESS_BANDWIDTH
    from agent.netlink.errors import NetlinkError
    from agent.netlink.socket import NetlinkSocket
    from agent.netlink.tc import TcWriter
    from agent.shaping.devices import find_pod_devices

    host_interface, ip = "", pod.ip
    try:
        with NetlinkSocket(None) as host, NetlinkSocket(pod.netns_path) as pod_reader:
            devices = find_pod_devices(pod.netns_path, pod_reader, host)
        host_interface = devices.host_ifname
        if not ip:
            with TcWriter(pod.netns_path) as pod_tc:
                ip = pod_tc.first_ipv4(devices.pod_ifindex)
    except NetlinkError:
        pass  # shown as empty: the pod is being created or torn down
    return PodRow(
        namespace=pod.namespace,
        name=pod.name,
        uid=pod.uid,
        sandbox_id=pod.sandbox_id,
        netns=pod.netns_path,
        host_interface=host_interface,
        ip=ip,
        ingress_bandwidth=pod.annotations.get(INGRESS_BANDWIDTH, ""),
        egress_bandwidth=pod.annotations.get(EGRESS_BANDWIDTH, ""),
        source=pod.source,
    )


def print_table(rows: list[PodRow]) -> None:
    header = ("POD", "UID", "NETNS", "HOST VETH", "IP", "INGRESS", "EGRESS")
    lines = [header] + [
        (
            f"{row.namespace}/{row.name}" if row.namespace else row.name,
            row.uid or "-",
            row.netns,
            row.host_interface or "-",
            row.ip or "-",
            row.ingress_bandwidth or "-",
            row.egress_bandwidth or "-",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
