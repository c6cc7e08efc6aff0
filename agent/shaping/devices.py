"""Find a pod's interfaces: eth0 inside its namespace and the host-side veth peer."""

from __future__ import annotations

from dataclasses import dataclass

from agent.netlink.tc import NetnsTc, TcError


@dataclass(frozen=True, slots=True)
class PodDevices:
    pod_ifindex: int
    pod_ifname: str
    host_ifindex: int
    host_ifname: str


class PodInterfaceMissing(TcError):
    """The pod has no veth yet (CNI still running) or no longer (being torn down)."""


def find_pod_devices(pod_tc: NetnsTc, host_tc: NetnsTc) -> PodDevices:
    links = pod_tc.links()
    candidates = [link for link in links if link.kind == "veth" and link.link_index > 0]
    candidates.sort(key=lambda link: (link.name != "eth0", link.index))
    if not candidates:
        raise PodInterfaceMissing(f"netns {pod_tc.netns_path}: no veth interface")
    pod_link = candidates[0]
    host_link = host_tc.link_by_index(pod_link.link_index)
    # The peer index is only meaningful in the peer's namespace: confirm it points back at us,
    # so a pod whose peer lives elsewhere can never make podbw shape an unrelated host device.
    if host_link is None or host_link.kind != "veth" or host_link.link_index != pod_link.index:
        raise PodInterfaceMissing(
            f"netns {pod_tc.netns_path}: {pod_link.name}'s peer (ifindex {pod_link.link_index}) "
            "is not a veth in the host namespace"
        )
    return PodDevices(pod_link.index, pod_link.name, host_link.index, host_link.name)
