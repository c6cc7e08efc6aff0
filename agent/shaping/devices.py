"""Find a pod's interfaces: its veth to the host, proven from the host side, and the peer in the pod.

Everything inside the pod's namespace is the pod's to forge (a pod with NET_ADMIN can make a
veth pair whose ifindex and peer index name another pod's devices), so the pod's side only
suggests where to look: a host veth is the pod's only when the host itself says that veth's peer
lives in the pod's namespace (IFLA_LINK_NETNSID = the host's id for it) at that ifindex.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from agent.netlink.stats_socket import StatsSocket
from agent.netlink.tc import LinkInfo, NetnsTc, TcError


@dataclass(frozen=True, slots=True)
class PodDevices:
    pod_ifindex: int
    pod_ifname: str
    host_ifindex: int
    host_ifname: str


@dataclass(frozen=True, slots=True)
class HostVeth:
    """A host veth as the host's own dump reports it."""

    ifindex: int
    name: str
    peer_ifindex: int
    peer_netnsid: int


class PodInterfaceMissing(TcError):
    """The pod has no veth to the host yet (CNI still running) or no longer (being torn down)."""


def leads_into(host_link: LinkInfo | None, nsid: int, pod_ifindex: int) -> bool:
    """Whether the host says host_link is a veth whose peer is pod_ifindex in the namespace it
    knows as nsid."""
    return (
        host_link is not None
        and host_link.kind == "veth"
        and host_link.link_netnsid == nsid
        and host_link.link_index == pod_ifindex
    )


def host_veths() -> list[HostVeth]:
    """Every veth of the host, from one dump by the raw reader (pyroute2 decodes ~1 ms a link)."""
    with StatsSocket(None) as sock:
        return [
            HostVeth(link.ifindex, link.name, link.link_ifindex, link.link_netnsid)
            for link in sock.links()
            if link.kind == "veth"
        ]


def find_pod_devices(
    pod_tc: NetnsTc, host_tc: NetnsTc, host_veths: Callable[[], Iterable[HostVeth]] = host_veths
) -> PodDevices:
    """The pod's veth pair; `host_veths` lists the host's veths (a dump, only used when the pod's
    own hint does not check out)."""
    netns_path = pod_tc.netns_path or ""
    pod_links = {link.index: link for link in pod_tc.links()}
    hints = sorted(
        (link for link in pod_links.values() if link.kind == "veth" and link.link_index > 0 and link.link_netnsid >= 0),
        key=lambda link: (link.name != "eth0", link.index),
    )
    nsid: int | None = None
    for hint in hints:
        host_link = host_tc.link_by_index(hint.link_index)
        if host_link is None or host_link.kind != "veth":
            continue
        if nsid is None:
            # Asked after a host veth was read: reading one that leads into the pod gives the
            # pod's namespace its id in the host, if it had none.
            nsid = host_tc.nsid_of(netns_path)
            if nsid is None:
                break
        if leads_into(host_link, nsid, hint.index):
            return PodDevices(hint.index, hint.name, host_link.index, host_link.name)
    if nsid is None:
        nsid = host_tc.nsid_of(netns_path)
    if nsid is not None:
        # The hint was wrong or forged: look from the host for veths whose peer is in this pod.
        peers = sorted(
            (veth for veth in host_veths() if veth.peer_netnsid == nsid and veth.peer_ifindex in pod_links),
            key=lambda veth: (pod_links[veth.peer_ifindex].name != "eth0", veth.peer_ifindex),
        )
        for veth in peers:
            host_link = host_tc.link_by_index(veth.ifindex)
            if leads_into(host_link, nsid, veth.peer_ifindex):
                assert host_link is not None
                pod_link = pod_links[veth.peer_ifindex]
                return PodDevices(pod_link.index, pod_link.name, host_link.index, host_link.name)
    raise PodInterfaceMissing(f"netns {netns_path}: no veth whose host side leads into it")
