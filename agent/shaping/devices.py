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
    """The pod's veth pair. The pod's eth0 is tried first (three single gets); when it is not
    a veth the host vouches for, `host_veths` (a host dump) says which veths lead into the pod."""
    netns_path = pod_tc.netns_path or ""
    nsid: int | None = None
    hint = pod_tc.link_by_name("eth0")
    if hint is not None and hint.kind == "veth" and hint.link_index > 0 and hint.link_netnsid >= 0:
        host_link = host_tc.link_by_index(hint.link_index)
        if host_link is not None and host_link.kind == "veth":
            # Asked after a host veth was read: reading one that leads into the pod gives the
            # pod's namespace its id in the host, if it had none.
            nsid = host_tc.nsid_of(netns_path)
            if nsid is not None and leads_into(host_link, nsid, hint.index):
                return PodDevices(hint.index, hint.name, host_link.index, host_link.name)
    veths = list(host_veths())
    if nsid is None:
        nsid = host_tc.nsid_of(netns_path)
    found: list[PodDevices] = []
    for veth in veths:
        if nsid is None or veth.peer_netnsid != nsid:
            continue
        host_link = host_tc.link_by_index(veth.ifindex)
        pod_link = pod_tc.link_by_index(veth.peer_ifindex)
        if pod_link is not None and leads_into(host_link, nsid, pod_link.index):
            assert host_link is not None
            found.append(PodDevices(pod_link.index, pod_link.name, host_link.index, host_link.name))
    if not found:
        raise PodInterfaceMissing(f"netns {netns_path}: no veth whose host side leads into it")
    return min(found, key=lambda devices: (devices.pod_ifname != "eth0", devices.pod_ifindex))
