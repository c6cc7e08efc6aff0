"""observe(): what the kernel holds for one pod, read with single gets (no dumps)."""

from __future__ import annotations

from typing import Callable

from agent.model.handles import TC_H_INGRESS, TC_H_ROOT
from agent.model.kernel import Filter
from agent.model.shaping import KernelView, PodDevices
from agent.netlink.socket import NetlinkSocket


def observe(
    devices: PodDevices,
    pod: NetlinkSocket,
    host: NetlinkSocket,
    ifb_name: str,
    ingress_filters: Callable[[int], list[Filter]],
) -> KernelView:
    """The kernel view of a pod whose devices are known; `ingress_filters` lists a host device's
    filters (asked only when it has an ingress qdisc)."""
    pod_link = pod.link(devices.pod_ifindex)
    host_ingress = host.qdisc(devices.host_ifindex, TC_H_INGRESS)
    ifb = host.link(name=ifb_name)
    return KernelView(
        devices=devices,
        host_root=host.qdisc(devices.host_ifindex, TC_H_ROOT),
        pod_root=pod.qdisc(devices.pod_ifindex, TC_H_ROOT),
        pod_gso_max_bytes=pod_link.gso_max_size if pod_link is not None else 0,
        host_ingress=host_ingress,
        ingress_filters=tuple(ingress_filters(devices.host_ifindex)) if host_ingress is not None else (),
        ifb=ifb,
        ifb_root=host.qdisc(ifb.ifindex, TC_H_ROOT) if ifb is not None else None,
    )
