"""Traffic-control writes in one namespace, through pyroute2: TBF replace and delete, ifb devices,
the ingress redirect, GSO size; and the two rare reads pyroute2 decodes for podbw (a device's
ingress filters, its first IPv4 address). Errors come back as agent.netlink.errors.
"""

from __future__ import annotations

import errno

from pyroute2 import IPRoute, protocols
from pyroute2.netlink.exceptions import NetlinkError as Pyroute2Error

from agent.model.handles import INGRESS_HANDLE, REDIRECT_FILTER_PRIO, TC_H_ROOT
from agent.model.kernel import Filter
from agent.model.tbf_params import TbfParams
from agent.netlink.errors import Gone, NetlinkError, error_for
from agent.netlink.netns import open_netlink_socket


class TcWriter:
    """pyroute2 bound to one namespace (None: the agent's own). Use it from the thread that made
    it (pyroute2's rule for an adopted socket); closing it from another thread is fine."""

    def __init__(self, netns_path: str | None) -> None:
        self.netns_path = netns_path
        self._where = netns_path or "host"
        # Opened in the namespace by a setns()ed thread: no fork (unsafe next to gRPC's threads)
        # and no namespace created when the pin vanished, unlike IPRoute(netns=...).
        sock = open_netlink_socket(netns_path) if netns_path else None
        try:
            self._ipr = IPRoute(use_socket=sock) if sock is not None else IPRoute()
        except Exception:
            if sock is not None:
                sock.close()
            raise

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> TcWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Pyroute2Error as err:
            raise error_for(err.code, f"{self._where}: {what}") from None
        except (OSError, ValueError, RuntimeError) as err:
            raise NetlinkError(f"{self._where}: {what}: {err}") from err

    # ---- qdiscs --------------------------------------------------------------------------

    def replace_tbf(self, ifindex: int, handle: int, params: TbfParams, device: str) -> None:
        self._call(
            f"replace tbf on {device}", self._ipr.tc, "replace", "tbf", ifindex, handle,
            rate=params.rate_bytes_per_s, burst=params.burst_bytes, limit=params.limit_bytes,
        )

    def delete_root(self, ifindex: int, handle: int, device: str) -> None:
        """Delete a root qdisc; one already gone is what was wanted."""
        try:
            self._call(f"delete root qdisc of {device}", self._ipr.tc, "del", index=ifindex, handle=handle, parent=TC_H_ROOT)
        except Gone:
            pass

    # ---- devices -------------------------------------------------------------------------

    def add_ifb(self, name: str) -> None:
        self._call(f"create ifb {name}", self._ipr.link, "add", ifname=name, kind="ifb")

    def set_up(self, ifindex: int, name: str, alias: str = "") -> None:
        """Set a device up, with `alias` as its ifalias (the kernel ignores one given at creation)."""
        extra = {"ifalias": alias} if alias else {}
        self._call(f"set {name} up", self._ipr.link, "set", index=ifindex, state="up", **extra)

    def set_gso_max_size(self, ifindex: int, size_bytes: int, device: str) -> None:
        self._call(f"set gso_max_size {size_bytes} on {device}", self._ipr.link, "set", index=ifindex, gso_max_size=size_bytes)

    def delete_link(self, ifindex: int, name: str) -> None:
        try:
            self._call(f"delete {name}", self._ipr.link, "del", index=ifindex)
        except Gone:
            pass  # already gone is what was wanted

    # ---- the ingress redirect to an ifb (egress mode ifb) --------------------------------

    def ingress_filters(self, ifindex: int) -> list[Filter]:
        found = []
        for msg in self._call(f"list ingress filters of ifindex {ifindex}", self._ipr.get_filters, ifindex, parent=INGRESS_HANDLE):
            options = msg.get("TCA_OPTIONS")
            if options is None or options.get("TCA_U32_DIVISOR") is not None:
                continue  # the per-prio header and u32's hash-table node are not filters
            redirect = 0
            actions = options.get("TCA_U32_ACT") if msg.get("TCA_KIND") == "u32" else None
            for _, action in (actions["attrs"] if actions is not None else ()):
                mirred = action.get_nested("TCA_ACT_OPTIONS", "TCA_MIRRED_PARMS") if hasattr(action, "get_nested") else None
                if mirred is not None:
                    redirect = mirred["ifindex"]
            found.append(Filter(prio=(msg["info"] >> 16) & 0xFFFF, kind=msg.get("TCA_KIND") or "", redirect_ifindex=redirect))
        return found

    def add_ingress_redirect(self, ifindex: int, ifb_ifindex: int, device: str) -> None:
        """An ingress qdisc on the device, with a u32 match-all filter redirecting to the ifb."""
        self._call(f"add ingress qdisc on {device}", self._ipr.tc, "add", "ingress", ifindex, INGRESS_HANDLE)
        self._call(
            f"add redirect filter on {device}", self._ipr.tc, "add-filter", "u32", ifindex,
            parent=INGRESS_HANDLE, prio=REDIRECT_FILTER_PRIO, protocol=protocols.ETH_P_ALL, target=0x1,
            keys=["0x0/0x0+0"],  # u32 match-all: this kernel has no matchall classifier
            action=dict(kind="mirred", direction="egress", action="redirect", ifindex=ifb_ifindex),
        )

    def delete_ingress(self, ifindex: int, device: str) -> None:
        """Delete the ingress qdisc (and its filters); one already gone is what was wanted."""
        try:
            self._call(f"delete ingress qdisc of {device}", self._ipr.tc, "del", "ingress", ifindex, INGRESS_HANDLE)
        except NetlinkError as err:
            if not isinstance(err, Gone) and err.errno not in (errno.ENOENT, errno.EINVAL):  # none there
                raise

    # ---- display -------------------------------------------------------------------------

    def first_ipv4(self, ifindex: int) -> str:
        """The first IPv4 address of a device ("" when none), for display only."""
        for msg in self._call(f"list addresses of ifindex {ifindex}", self._ipr.get_addr, family=2, index=ifindex):
            address = msg.get("IFA_ADDRESS")
            if address:
                return str(address)
        return ""
