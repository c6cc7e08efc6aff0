"""Traffic-control operations in one network namespace.

The shaping layer decides *what* should be in the kernel; this module only reads and writes
qdiscs, filters and ifb devices, translating errors into TcError with context. Writes (and the
rare dumps) go through pyroute2; the lookups every reconcile makes are single raw requests
(link_get, qdisc_get): pyroute2's asyncio core and full message decoding made a 250-pod resync
cost ~1.6 s of CPU, most of it for pods where nothing had changed.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from pyroute2 import IPRoute, protocols
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.tcmsg.common import calc_xmittime

from agent.model.handles import INGRESS_HANDLE, TC_H_INGRESS, TC_H_ROOT
from agent.model.tbf_params import TbfParams
from agent.netlink.link_get import get_link
from agent.netlink.netns import NetnsGone, open_netlink_socket
from agent.netlink.nsid_get import get_nsid
from agent.netlink.qdisc_get import QdiscGetError, get_qdisc

RAW_TIMEOUT_S = 5.0

REDIRECT_FILTER_PRIO = 0x5062
"""Preference of podbw's ifb redirect filter: marks it as podbw's on the shared ingress qdisc."""


class TcError(Exception):
    """A traffic-control operation failed; the message names namespace, device and operation."""


class DeviceGone(TcError):
    """The device (or its namespace) disappeared: the pod is going away."""


@dataclass(frozen=True, slots=True)
class LinkInfo:
    index: int
    name: str
    kind: str
    link_index: int
    """IFLA_LINK: a veth's peer ifindex (in the peer's namespace); 0 when absent."""
    link_netnsid: int
    """IFLA_LINK_NETNSID; -1 when the peer is in this namespace or absent."""
    gso_max_size: int = 0
    """IFLA_GSO_MAX_SIZE: the largest GSO packet the stack builds for this device; 0 when absent."""
    alias: str = ""
    """IFLA_IFALIAS; "" when absent."""
    admin_up: bool = False
    """IFF_UP: the device was set up."""
    oper_state: int = 0
    """IFLA_OPERSTATE (RFC 2863: 6 up, 2 down, 0 unknown, which an ifb that is up reports)."""


@dataclass(frozen=True, slots=True)
class TbfKernelParams:
    rate_bytes_per_s: int
    buffer_ticks: int
    """The bucket as TBF stores it: transmit time of the burst at rate, in psched ticks."""
    limit_bytes: int


@dataclass(frozen=True, slots=True)
class QdiscInfo:
    kind: str
    handle: int
    parent: int
    tbf: TbfKernelParams | None = None


@dataclass(frozen=True, slots=True)
class FilterInfo:
    prio: int
    kind: str
    redirect_ifindex: int
    """Target of a mirred redirect action; 0 when the filter has none."""


def expected_tbf(params: TbfParams) -> TbfKernelParams:
    """What the kernel reports back after podbw applied `params` (for drift detection)."""
    return TbfKernelParams(
        rate_bytes_per_s=params.rate_bytes_per_s,
        buffer_ticks=calc_xmittime(params.rate_bytes_per_s, params.burst_bytes),
        limit_bytes=params.limit_bytes,
    )


PSCHED_TICK_NS = 64
"""The kernel's psched tick (PSCHED_SHIFT 6): the unit of TBF's buffer (the bucket as time)."""


def bucket_bytes(tbf: TbfKernelParams) -> int:
    """The largest packet the TBF lets through: its buffer time at its rate, in whole bytes, as
    the kernel computes it (psched_ns_t2l). Up to ~1 us of rate below the burst asked for: tc
    rounds the buffer down to whole microseconds, then to whole ticks."""
    return tbf.buffer_ticks * PSCHED_TICK_NS * tbf.rate_bytes_per_s // 1_000_000_000


def bucket_shrinks(current: TbfKernelParams, params: TbfParams) -> bool:
    """True when applying `params` over `current` lets through smaller packets than before.

    TBF keeps its queue across a change, and a queued packet larger than the new bucket can
    never gather enough tokens: it blocks the queue for good (seen here: 100M -> 20M left two
    ~27 KB GSO packets at the head and the pod's traffic at 0 until the end of the run). Such a
    change has to start from an empty queue. Compared exactly, with no tolerance: a bucket a few
    bytes smaller through the microsecond rounding (e.g. 1G -> 2G, both 256 KiB) costs one
    needless queue flush, while a missed shrink costs a device wedged until the next change."""
    return bucket_bytes(expected_tbf(params)) < bucket_bytes(current)


class NetnsTc:
    """Traffic-control handle bound to one namespace (None: the agent's own, i.e. the host's).

    Use it from the thread that created it (pyroute2's rule for adopted sockets); closing it
    from another thread is fine.
    """

    def __init__(self, netns_path: str | None) -> None:
        self.netns_path = netns_path
        self._where = netns_path or "host"
        self._ipr_handle: IPRoute | None = None
        self._raw = self._open_socket()
        self._raw.settimeout(RAW_TIMEOUT_S)

    def _open_socket(self):
        try:
            # Opened in the namespace by a setns()ed thread: no fork (which would be unsafe
            # next to gRPC's threads) and no namespace created when the pin vanished, unlike
            # IPRoute(netns=...).
            return open_netlink_socket(self.netns_path)
        except NetnsGone as err:
            raise DeviceGone(f"netns {self.netns_path}: gone") from err
        except OSError as err:
            raise TcError(f"netns {self.netns_path}: cannot open netlink: {err}") from err

    @property
    def _ipr(self) -> IPRoute:
        """pyroute2, opened on the first write or dump: most reconciles only look."""
        if self._ipr_handle is None:
            sock = self._open_socket() if self.netns_path else None
            try:
                # pyroute2 binds a handle on an adopted socket to the creating thread.
                self._ipr_handle = IPRoute(use_socket=sock) if sock is not None else IPRoute()
            except Exception:
                if sock is not None:
                    sock.close()
                raise
        return self._ipr_handle

    def close(self) -> None:
        self._raw.close()
        if self._ipr_handle is not None:
            self._ipr_handle.close()

    def __enter__(self) -> "NetnsTc":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NetlinkError as err:
            if err.code in (errno.ENODEV, errno.ENXIO):
                raise DeviceGone(f"{self._where}: {what}: device gone") from err
            raise TcError(f"{self._where}: {what}: {os_strerror(err.code)}") from err
        except (OSError, ValueError, RuntimeError) as err:
            raise TcError(f"{self._where}: {what}: {err}") from err

    # ---- links ----------------------------------------------------------------------------
    def links(self) -> list[LinkInfo]:
        """Every link of the namespace (a full dump: use in pod namespaces, not the host's)."""
        return [_link_info(msg) for msg in self._call("list links", self._ipr.get_links)]

    def link_by_index(self, index: int) -> LinkInfo | None:
        return self._link_get(f"get link {index}", index=index)

    def link_by_name(self, name: str) -> LinkInfo | None:
        return self._link_get(f"get link {name}", ifname=name)

    def _link_get(self, what: str, index: int = 0, ifname: str = "") -> LinkInfo | None:
        # One RTM_GETLINK for one device: a full dump costs ~1 ms per link on a busy host.
        try:
            raw = get_link(self._raw, index, ifname)
        except OSError as err:  # a refusal (GetError), a timeout or a closed socket
            raise TcError(f"{self._where}: {what}: {err}") from err
        if raw is None:
            return None
        return LinkInfo(
            raw.index, raw.name, raw.kind, raw.link_index, raw.link_netnsid, raw.gso_max_size, raw.alias, raw.admin_up, raw.oper_state
        )

    def nsid_of(self, netns_path: str) -> int | None:
        """The id this namespace gives the namespace pinned at netns_path (None: none yet)."""
        try:
            return get_nsid(self._raw, netns_path)
        except FileNotFoundError as err:
            raise DeviceGone(f"{self._where}: netns {netns_path} is gone") from err
        except OSError as err:
            raise TcError(f"{self._where}: get nsid of {netns_path}: {err}") from err

    def add_ifb(self, name: str, alias: str = "") -> int:
        """Create ifb `name`, up, with `alias` as its ifalias (the kernel ignores one given
        at creation, so it is set together with the state)."""
        self._call(f"create ifb {name}", self._ipr.link, "add", ifname=name, kind="ifb")
        link = self.link_by_name(name)
        if link is None:
            raise DeviceGone(f"{self._where}: ifb {name} vanished after creation")
        self.set_up(link.index, name, alias)
        return link.index

    def set_up(self, index: int, name: str, alias: str = "") -> None:
        """Set the device up (and give it `alias`, when one is given)."""
        extra = {"ifalias": alias} if alias else {}
        self._call(f"set {name} up", self._ipr.link, "set", index=index, state="up", **extra)

    def set_gso_max_size(self, index: int, size: int, device: str) -> None:
        self._call(f"set gso_max_size {size} on {device}", self._ipr.link, "set", index=index, gso_max_size=size)

    def delete_link(self, index: int, name: str) -> None:
        try:
            self._call(f"delete {name}", self._ipr.link, "del", index=index)
        except DeviceGone:
            pass  # already gone is what we wanted

    def first_ipv4(self, index: int) -> str:
        """The first IPv4 address on a device ("" when none), for display only."""
        for msg in self._call(f"list addresses of ifindex {index}", self._ipr.get_addr, family=2, index=index):
            address = msg.get("IFA_ADDRESS")
            if address:
                return str(address)
        return ""

    # ---- qdiscs ---------------------------------------------------------------------------
    def root_qdisc(self, index: int) -> QdiscInfo | None:
        return self._qdisc_get(index, TC_H_ROOT)

    def ingress_qdisc(self, index: int) -> QdiscInfo | None:
        return self._qdisc_get(index, TC_H_INGRESS)

    def _qdisc_get(self, index: int, parent: int) -> QdiscInfo | None:
        try:
            raw = get_qdisc(self._raw, index, parent)
        except QdiscGetError as err:
            if err.errno in (errno.ENODEV, errno.ENXIO):
                raise DeviceGone(f"{self._where}: get qdisc of ifindex {index}: device gone") from err
            raise TcError(f"{self._where}: get qdisc of ifindex {index}: {err}") from err
        except OSError as err:  # timeout or a closed socket
            raise TcError(f"{self._where}: get qdisc of ifindex {index}: {err}") from err
        if raw is None:
            return None
        tbf = None
        if raw.kind == "tbf":
            tbf = TbfKernelParams(raw.tbf_rate_bytes_per_s, raw.tbf_buffer_ticks, raw.tbf_limit_bytes)
        return QdiscInfo(kind=raw.kind, handle=raw.handle, parent=raw.parent, tbf=tbf)

    def replace_tbf(self, index: int, handle: int, params: TbfParams, device: str) -> None:
        self._call(
            f"replace tbf on {device}",
            self._ipr.tc,
            "replace",
            "tbf",
            index,
            handle,
            rate=params.rate_bytes_per_s,
            burst=params.burst_bytes,
            limit=params.limit_bytes,
        )

    def delete_root(self, index: int, handle: int, device: str) -> None:
        try:
            self._call(f"delete root qdisc of {device}", self._ipr.tc, "del", index=index, handle=handle, parent=TC_H_ROOT)
        except DeviceGone:
            pass

    # ---- ingress redirect (egress mode ifb) -------------------------------------------------
    def ingress_filters(self, index: int) -> list[FilterInfo]:
        result = []
        for msg in self._call(f"list ingress filters of ifindex {index}", self._ipr.get_filters, index, parent=INGRESS_HANDLE):
            options = msg.get("TCA_OPTIONS")
            if options is None or options.get("TCA_U32_DIVISOR") is not None:
                continue  # the per-prio header and u32's hash-table node are not filters
            prio = (msg["info"] >> 16) & 0xFFFF
            redirect = 0
            actions = options.get("TCA_U32_ACT") if msg.get("TCA_KIND") == "u32" else None
            if actions is not None:
                for _, action in actions["attrs"]:
                    mirred = action.get_nested("TCA_ACT_OPTIONS", "TCA_MIRRED_PARMS") if hasattr(action, "get_nested") else None
                    if mirred is not None:
                        redirect = mirred["ifindex"]
            result.append(FilterInfo(prio=prio, kind=msg.get("TCA_KIND") or "", redirect_ifindex=redirect))
        return result

    def add_ingress_redirect(self, index: int, ifb_index: int, device: str) -> None:
        if self.ingress_qdisc(index) is None:
            self._call(f"add ingress qdisc on {device}", self._ipr.tc, "add", "ingress", index, INGRESS_HANDLE)
        self._call(
            f"add redirect filter on {device}",
            self._ipr.tc,
            "add-filter",
            "u32",
            index,
            parent=INGRESS_HANDLE,
            prio=REDIRECT_FILTER_PRIO,
            protocol=protocols.ETH_P_ALL,
            target=0x1,
            keys=["0x0/0x0+0"],  # u32 match-all: this kernel has no matchall classifier
            action=dict(kind="mirred", direction="egress", action="redirect", ifindex=ifb_index),
        )

    def delete_ingress(self, index: int, device: str) -> None:
        try:
            self._call(f"delete ingress qdisc of {device}", self._ipr.tc, "del", "ingress", index, INGRESS_HANDLE)
        except DeviceGone:
            pass
        except TcError as err:
            if "No such file" not in str(err) and "Invalid argument" not in str(err):
                raise


def _link_info(msg) -> LinkInfo:
    linkinfo = msg.get("IFLA_LINKINFO")
    kind = linkinfo.get("IFLA_INFO_KIND") if linkinfo is not None else None
    netnsid = msg.get("IFLA_LINK_NETNSID")
    return LinkInfo(
        index=msg["index"],
        name=msg.get("IFLA_IFNAME") or "",
        kind=kind or "",
        link_index=msg.get("IFLA_LINK") or 0,
        link_netnsid=-1 if netnsid is None else int(netnsid),
        gso_max_size=msg.get("IFLA_GSO_MAX_SIZE") or 0,
    )


def os_strerror(code: int) -> str:
    import os

    try:
        return os.strerror(code)
    except (ValueError, TypeError):
        return f"netlink error {code}"

