"""What the kernel reports of a network device and a qdisc: one record each, whatever the path
(a dump, a single get, RTM_GETSTATS) that read it."""

from __future__ import annotations

from typing import NamedTuple

from agent.model.tbf import TbfKernelParams


class Link(NamedTuple):
    """One network device, as seen from its own namespace. A NamedTuple: the sampler makes one
    per changed interface every second, for hundreds of pods."""

    ifindex: int
    name: str
    kind: str = ""
    """IFLA_INFO_KIND: "veth", "ifb", "bridge"... ("" when the kernel names none)."""
    peer_ifindex: int = 0
    """IFLA_LINK: a veth's peer, an ifindex in the peer's namespace (0 when absent)."""
    peer_netnsid: int = -1
    """IFLA_LINK_NETNSID: the id this namespace gives the peer's namespace (-1: same one, or none)."""
    admin_up: bool = False
    """IFF_UP: someone set the device up."""
    oper_state: int = 0
    """IFLA_OPERSTATE (RFC 2863: 6 up, 2 down; 0 unknown, which an ifb that is up reports)."""
    gso_max_size: int = 0
    """IFLA_GSO_MAX_SIZE: the largest GSO packet the stack builds for it (0 when absent)."""
    alias: str = ""
    """IFLA_IFALIAS ("" when none)."""
    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_dropped: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_dropped: int = 0


class Qdisc(NamedTuple):
    """One qdisc with its TCA_STATS2 counters, and TBF's parameters when it is one."""

    ifindex: int
    handle: int
    parent: int
    kind: str
    bytes: int = 0
    packets: int = 0
    drops: int = 0
    overlimits: int = 0
    requeues: int = 0
    backlog_bytes: int = 0
    backlog_packets: int = 0
    tbf: TbfKernelParams | None = None


class Filter(NamedTuple):
    """A filter on an ingress qdisc, as far as podbw's ifb redirect needs to know it."""

    prio: int
    kind: str
    redirect_ifindex: int
    """Target of a mirred redirect action (0 when the filter has none)."""
