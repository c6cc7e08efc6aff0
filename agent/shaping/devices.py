"""Find a pod's veth pair, proven from the host side.

Everything inside the pod's namespace is the pod's to forge (a pod with NET_ADMIN can make a
veth pair whose ifindex and peer index name another pod's devices), so the pod's side only
suggests where to look: a host veth is the pod's only when the host itself says that veth's peer
lives in the pod's namespace (IFLA_LINK_NETNSID = the host's id for it) at that ifindex.
"""

from __future__ import annotations

from typing import Callable, Iterable

from agent.model.kernel import Link
from agent.model.shaping import PodDevices
from agent.netlink.errors import Gone
from agent.netlink.socket import NetlinkSocket


class PodInterfaceMissing(Gone):
    """The pod has no veth to the host yet (CNI still running) or no longer (being torn down)."""


def leads_into(host_link: Link | None, nsid: int, pod_ifindex: int) -> bool:
    """Whether the host says host_link is a veth whose peer is pod_ifindex in the namespace it
    knows as nsid."""
    return (
        host_link is not None
        and host_link.kind == "veth"
        and host_link.peer_netnsid == nsid
        and host_link.peer_ifindex == pod_ifindex
    )


def host_veths(host: NetlinkSocket) -> list[Link]:
    """Every veth of the host, from one dump."""
    return [link for link in host.links() if link.kind == "veth"]


def find_pod_devices(
    netns_path: str, pod: NetlinkSocket, host: NetlinkSocket, veths: Callable[[], Iterable[Link]] | None = None
) -> PodDevices:
    """The pod's veth pair. The pod's eth0 is tried first (three single gets); when it is not
    a veth the host vouches for, the host's veths (`veths`: a dump) say which lead into the pod."""
    nsid: int | None = None
    hint = pod.link(name="eth0")
    if hint is not None and hint.kind == "veth" and hint.peer_ifindex > 0 and hint.peer_netnsid >= 0:
        host_link = host.link(hint.peer_ifindex)
        if host_link is not None and host_link.kind == "veth":
            # Asked after a host veth was read: reading one that leads into the pod gives the
            # pod's namespace its id in the host, if it had none.
            nsid = host.nsid_of(netns_path)
            if nsid is not None and leads_into(host_link, nsid, hint.ifindex):
                return PodDevices(hint.ifindex, hint.name, host_link.ifindex, host_link.name)
    candidates = list(veths() if veths is not None else host_veths(host))
    if nsid is None:
        nsid = host.nsid_of(netns_path)
    found: list[PodDevices] = []
    for veth in candidates:
        if nsid is None or veth.peer_netnsid != nsid:
            continue
        host_link = host.link(veth.ifindex)
        pod_link = pod.link(veth.peer_ifindex)
        if pod_link is not None and leads_into(host_link, nsid, pod_link.ifindex):
            assert host_link is not None
            found.append(PodDevices(pod_link.ifindex, pod_link.name, host_link.ifindex, host_link.name))
    if not found:
        raise PodInterfaceMissing(f"netns {netns_path}: no veth whose host side leads into it")
    return min(found, key=lambda devices: (devices.pod_ifname != "eth0", devices.pod_ifindex))


def still_valid(netns_path: str, host: NetlinkSocket, devices: PodDevices) -> bool:
    """Whether a pair found before still is the pod's (devices come and go with pods)."""
    link = host.link(devices.host_ifindex)
    if link is None or link.name != devices.host_ifname:
        return False
    nsid = host.nsid_of(netns_path)
    return nsid is not None and leads_into(link, nsid, devices.pod_ifindex)
