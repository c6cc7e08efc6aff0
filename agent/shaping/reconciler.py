"""Reconciler: make the kernel's qdiscs for each pod equal the desired TBF, changing only the
difference. Safe to run any number of times; after an agent restart with unchanged annotations
it reads the kernel, finds podbw's qdiscs as desired, and writes nothing.

Not thread-safe: the service calls it from one worker thread. `statuses()` may be read from any
thread (it returns an immutable published mapping).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Callable, Mapping

from agent.model.annotations import EGRESS_LATENCY, DesiredDirection, desired_shaping
from agent.model.direction import Direction, ShapingState
from agent.model.handles import PODBW_ROOT_HANDLE, format_handle
from agent.model.health import HealthRecorder
from agent.model.log_fields import pod_fields
from agent.model.overrides import merge_annotations
from agent.model.ownership import IFB_NAME_RE, Owner, classify_root, ifb_name
from agent.model.pod import Pod
from agent.model.problems import ProblemLog, cause_key
from agent.model.status import DirectionStatus, PodShapingStatus
from agent.model.tbf import GSO_LEGACY_MAX_BYTES, gso_max_bytes, without_limit_floor
from agent.model.tbf_params import TbfParams
from agent.model.valuetext import quote_value
from agent.netlink.errors import NetlinkError
from agent.netlink.stats_socket import StatsSocket
from agent.netlink.tc import REDIRECT_FILTER_PRIO, DeviceGone, NetnsTc, TcError, bucket_shrinks, expected_tbf
from agent.shaping.devices import PodDevices, find_pod_devices, leads_into
from agent.shaping.settings import EGRESS_MODE_IFB, ShapingSettings

log = logging.getLogger(__name__)

Overrides = Callable[[], Mapping[str, Mapping[str, str]]]


class Reconciler:
    def __init__(
        self,
        settings: ShapingSettings,
        health: HealthRecorder,
        overrides: Overrides = lambda: {},
        tc_factory: Callable[[str | None], NetnsTc] = NetnsTc,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._health = health
        self._overrides = overrides
        self._tc_factory = tc_factory
        self._clock = clock
        self._host: NetnsTc | None = None
        self._pod_tc: dict[str, NetnsTc] = {}
        self._devices: dict[str, PodDevices] = {}
        self._problems = ProblemLog()
        """Per sandbox id, the problems its last reconcile found (already logged and counted)."""
        self._seen_at: dict[str, float] = {}
        """sandbox id -> when discovery saw it, until its first limit lands (reconcile latency)."""
        self._statuses: dict[str, PodShapingStatus] = {}
        self._unowned_ifbs: set[str] = set()
        self._writes_allowed = settings.enabled
        """False: observe only (a viewer, or an agent waiting for the node lock)."""
        """ifbs reported by the last orphan scan as named like podbw's without an owner."""

    # ---- public ---------------------------------------------------------------------------
    def allow_writes(self, allowed: bool) -> None:
        """Start (or stop) changing the kernel; reconciles meanwhile only observe."""
        self._writes_allowed = allowed

    def statuses(self) -> Mapping[str, PodShapingStatus]:
        return self._statuses

    def reconcile(self, pod: Pod, seen_at_monotonic_s: float | None = None) -> PodShapingStatus:
        if seen_at_monotonic_s is not None and pod.sandbox_id not in self._statuses:
            self._seen_at.setdefault(pod.sandbox_id, seen_at_monotonic_s)
        self._problems.begin(pod.sandbox_id)
        annotations = merge_annotations(pod.annotations, self._overrides().get(pod.key))
        desired = desired_shaping(annotations)
        want_egress = desired[Direction.EGRESS]
        if self._settings.egress_mode != EGRESS_MODE_IFB and want_egress.params and EGRESS_LATENCY not in annotations:
            # The pod's own TCP sits behind this TBF and meets back-pressure, not losses: the
            # 8-frame floor kept for remote senders would only add delay (see without_limit_floor).
            desired[Direction.EGRESS] = replace(want_egress, params=without_limit_floor(want_egress.params))
        for want in desired.values():
            if want.state is ShapingState.INVALID:
                # Keyed by the whole value: the error text shows only the first 40 characters.
                problem = f"invalid:{want.error_key}:{annotations.get(want.error_key)}:{want.error}"
                self._report_once(pod, problem, lambda w=want: self._log_invalid(pod, w))
        try:
            status = self._apply(pod, desired)
        except ObserveOnly:
            status = self._observed_status(pod, desired)
        except DeviceGone as err:
            status = self._error_status(pod, desired, f"pod interface gone: {err}")
            self._drop_pod_tc(pod.sandbox_id)
        except TcError as err:
            status = self._error_status(pod, desired, str(err))
            self._report_once(pod, f"error:{err}", lambda: log.error("pod %s: shaping failed: %s", pod.display, err))
            self._drop_pod_tc(pod.sandbox_id)
        # Opening a pod's netlink handle costs ~1 ms; keeping 250 of them costs ~16 MB and
        # 1,250 file descriptors. Reconciles are rare (events, resyncs): open per reconcile.
        self._close_pod_tc(pod.sandbox_id)
        self._problems.end(pod.sandbox_id)
        self._publish(pod.sandbox_id, status)
        self._record_latency(pod.sandbox_id, status)
        return status

    def forget(self, pod: Pod) -> None:
        """The pod is gone: remove what podbw made for it on the host (its namespace is gone)."""
        devices = self._devices.pop(pod.sandbox_id, None)
        try:
            if not self._writes_allowed:
                raise ObserveOnly("forget")  # a viewer only drops its own state
            host = self._host_tc()
            name = ifb_name(pod.sandbox_id)
            ifb = host.link_by_name(name)
            if ifb is not None:
                host.delete_link(ifb.index, name)
                self._health.shaping_operation("remove", "ok")
            if devices is not None:
                link = host.link_by_index(devices.host_ifindex)
                if link is not None and link.name == devices.host_ifname:
                    root = host.root_qdisc(link.index)
                    if root is not None and classify_root(root.kind, root.handle) is Owner.PODBW:
                        host.delete_root(link.index, root.handle, link.name)
                        self._health.shaping_operation("remove", "ok")
        except ObserveOnly:
            pass
        except TcError as err:
            log.error("pod %s: cleanup after removal failed: %s", pod.display, err)
            self._health.shaping_operation("remove", "error")
        self._drop_pod_tc(pod.sandbox_id)
        self._problems.forget(pod.sandbox_id)
        self._seen_at.pop(pod.sandbox_id, None)
        if pod.sandbox_id in self._statuses:
            statuses = dict(self._statuses)
            del statuses[pod.sandbox_id]
            self._statuses = statuses

    def remove_limits(self, pod: Pod) -> None:
        """Take every podbw qdisc of the pod out of the kernel (the agent's --cleanup-on-exit)."""
        unlimited = {d: DesiredDirection(d, None) for d in Direction}
        try:
            self._apply(pod, unlimited)
        except TcError as err:
            log.error("pod %s: removing limits failed: %s", pod.display, err)
        self.forget(pod)

    def collect_orphans(self, known_sandbox_ids: set[str]) -> None:
        """Delete this agent's podbw ifbs whose pod is unknown (e.g. removed while the agent was
        down). Another agent's (a different ifb_owner alias) are left alone; ones named as podbw
        names its ifbs but with no alias at all (an agent killed while making one, or someone
        else's) are reported, never deleted on a guess."""
        expected = {ifb_name(sandbox_id) for sandbox_id in known_sandbox_ids}
        unowned: set[str] = set()
        try:
            host = self._host_tc()
            for link in self._host_links():
                if link.kind != "ifb" or not IFB_NAME_RE.fullmatch(link.name) or link.name in expected:
                    continue
                found = host.link_by_index(link.ifindex)
                if found is None or found.name != link.name:
                    continue
                if found.alias == self._settings.ifb_owner:
                    log.info("removing orphaned ifb %s", link.name)
                    host.delete_link(link.ifindex, link.name)
                    self._health.shaping_operation("remove", "ok")
                elif not found.alias:
                    unowned.add(link.name)
        except (TcError, NetlinkError, OSError) as err:
            log.error("orphan ifb cleanup failed: %s", err)
            return
        for name in sorted(unowned - self._unowned_ifbs):
            log.warning(
                "ifb %s is named like podbw's but has no owner alias and belongs to no known pod; "
                "left in place (delete it with `ip link del %s` if nothing uses it)", name, name,
            )
        self._unowned_ifbs = unowned
        self._health.set_unowned_ifbs(len(unowned))

    @staticmethod
    def _host_links():
        # The raw reader: a full host dump decoded by pyroute2 costs ~1 ms per link.
        with StatsSocket(None) as sock:
            return sock.links()

    def close(self) -> None:
        for sandbox_id in list(self._pod_tc):
            self._drop_pod_tc(sandbox_id)
        if self._host is not None:
            self._host.close()
            self._host = None

    # ---- applying -------------------------------------------------------------------------
    def _apply(self, pod: Pod, desired: dict[Direction, DesiredDirection]) -> PodShapingStatus:
        host = self._host_tc()
        pod_tc = self._pod_tc_for(pod)
        devices = self._devices.get(pod.sandbox_id)
        if devices is None or not self._still_valid(host, pod, devices):
            devices = find_pod_devices(pod_tc, host)
            self._devices[pod.sandbox_id] = devices

        ingress = self._ensure_root_tbf(
            pod, host, devices.host_ifindex, devices.host_ifname, False, desired[Direction.INGRESS]
        )
        want_egress = desired[Direction.EGRESS]
        if self._settings.egress_mode == EGRESS_MODE_IFB:
            self._ensure_root_tbf(pod, pod_tc, devices.pod_ifindex, devices.pod_ifname, True, _UNLIMITED_EGRESS)
            egress = self._ensure_ifb(pod, host, devices, want_egress)
        else:
            self._remove_ifb(pod, host, devices)
            egress = self._ensure_root_tbf(pod, pod_tc, devices.pod_ifindex, devices.pod_ifname, True, want_egress)
        in_pod_egress = self._settings.egress_mode != EGRESS_MODE_IFB and egress.state is ShapingState.APPLIED
        self._ensure_gso(pod, pod_tc, devices, egress.params if in_pod_egress else None)
        return PodShapingStatus(
            sandbox_id=pod.sandbox_id,
            host_interface=devices.host_ifname,
            host_ifindex=devices.host_ifindex,
            pod_ifindex=devices.pod_ifindex,
            directions={Direction.INGRESS: ingress, Direction.EGRESS: egress},
        )

    def _ensure_root_tbf(
        self, pod: Pod, tc: NetnsTc, index: int, device: str, in_pod: bool, want: DesiredDirection
    ) -> DirectionStatus:
        root = tc.root_qdisc(index)
        owner = classify_root(root.kind if root else None, root.handle if root else 0)
        if want.params is None:
            if owner is Owner.PODBW and root is not None:
                self._op("remove", lambda: tc.delete_root(index, root.handle, device))
                log.info("pod %s: %s limit removed from %s", pod.display, want.direction.value, device)
            state = want.state
            return DirectionStatus(state, None, "", in_pod, want.error)
        if owner is Owner.FOREIGN and not self._settings.take_over_foreign:
            assert root is not None
            reason = f"root qdisc {root.kind} {format_handle(root.handle)} on {device} is not podbw's"
            self._report_once(pod, f"foreign:{want.direction.value}:{reason}", lambda: log.warning("pod %s: %s: %s; left alone", pod.display, want.direction.value, reason))
            return DirectionStatus(ShapingState.FOREIGN, want.params, device, in_pod, reason)
        if owner is Owner.PODBW and root is not None and root.tbf == expected_tbf(want.params):
            return DirectionStatus(ShapingState.APPLIED, want.params, device, in_pod)
        op = {Owner.PODBW: "update", Owner.DEFAULT: "apply", Owner.FOREIGN: "takeover"}[owner]
        if owner is Owner.PODBW and root is not None and root.tbf is not None and bucket_shrinks(root.tbf, want.params):
            # A smaller bucket must start from an empty queue (see bucket_shrinks): a new TBF
            # drops the few packets queued (TCP resends them) instead of wedging the device, and
            # its counters start again (a counter reset, as Prometheus and the sampler expect).
            self._op(op, lambda: self._recreate_tbf(tc, index, root.handle, want.params, device))
        else:
            self._op(op, lambda: tc.replace_tbf(index, PODBW_ROOT_HANDLE, want.params, device))
        log.info(
            "pod %s: %s limit %s on %s (%s)", pod.display, want.direction.value, describe(want.params), device, op
        )
        return DirectionStatus(ShapingState.APPLIED, want.params, device, in_pod)

    @staticmethod
    def _recreate_tbf(tc: NetnsTc, index: int, handle: int, params: TbfParams, device: str) -> None:
        tc.delete_root(index, handle, device)
        tc.replace_tbf(index, PODBW_ROOT_HANDLE, params, device)

    def _ensure_gso(self, pod: Pod, pod_tc: NetnsTc, devices: PodDevices, egress: TbfParams | None) -> None:
        """Egress mode `pod`: keep the pod's GSO packets no larger than its egress bucket (see
        gso_max_bytes), so the pod's TCP meets back-pressure from its own qdisc instead of
        losses. Otherwise (no egress limit, or mode `ifb`, which changes nothing in the pod)
        give back the kernel's default if podbw lowered it."""
        if not self._writes_allowed:
            return
        link = pod_tc.link_by_index(devices.pod_ifindex)
        if link is None or link.gso_max_size <= 0:
            return
        want = gso_max_bytes(egress) if egress is not None else None
        if want is None:
            if link.gso_max_size >= GSO_LEGACY_MAX_BYTES:
                return  # never lower what an admin raised (BIG TCP), only undo podbw's cap
            want = GSO_LEGACY_MAX_BYTES
        if link.gso_max_size == want:
            return
        try:
            pod_tc.set_gso_max_size(devices.pod_ifindex, want, devices.pod_ifname)
        except DeviceGone:
            raise
        except TcError as err:
            # The limit itself is in place; only the GSO cap (a goodput aid) is missing.
            self._report_once(pod, f"gso:{err}", lambda e=err: log.warning("pod %s: %s", pod.display, e))

    def _ensure_ifb(self, pod: Pod, host: NetnsTc, devices: PodDevices, want: DesiredDirection) -> DirectionStatus:
        if want.params is None:
            self._remove_ifb(pod, host, devices)
            return DirectionStatus(want.state, None, "", False, want.error)
        ingress = host.ingress_qdisc(devices.host_ifindex)
        filters = host.ingress_filters(devices.host_ifindex) if ingress is not None else []
        foreign = [f for f in filters if f.prio != REDIRECT_FILTER_PRIO]
        if (ingress is not None and ingress.kind != "ingress") or foreign:
            if not self._settings.take_over_foreign:
                reason = f"ingress qdisc on {devices.host_ifname} has filters that are not podbw's"
                self._report_once(pod, f"foreign:egress:{reason}", lambda: log.warning("pod %s: egress: %s; left alone", pod.display, reason))
                return DirectionStatus(ShapingState.FOREIGN, want.params, "", False, reason)
            self._op("takeover", lambda: host.delete_ingress(devices.host_ifindex, devices.host_ifname))
            ingress, filters = None, []
        name = ifb_name(pod.sandbox_id)
        owner = self._settings.ifb_owner
        ifb = host.link_by_name(name)
        if ifb is None:
            index = self._op("apply", lambda: host.add_ifb(name, owner))
        else:
            if ifb.alias not in ("", owner):
                reason = f"ifb {name} carries another agent's alias {quote_value(ifb.alias)}"
                self._report_once(pod, f"foreign:egress:{reason}", lambda: log.warning("pod %s: egress: %s; left alone", pod.display, reason))
                return DirectionStatus(ShapingState.FOREIGN, want.params, name, False, reason)
            if not ifb.admin_up or ifb.alias != owner:
                # Set down by someone, or left half-made by an agent killed between creating it
                # and setting it up: while down, it swallows all of the pod's egress.
                self._op("update", lambda: host.set_up(ifb.index, name, owner))
                log.warning("pod %s: egress ifb %s was %s; set up", pod.display, name, "down" if not ifb.admin_up else "without owner")
            index = ifb.index
        ours = [f for f in filters if f.prio == REDIRECT_FILTER_PRIO]
        if not (len(ours) == 1 and ours[0].redirect_ifindex == index):
            if ingress is not None:
                self._op("update", lambda: host.delete_ingress(devices.host_ifindex, devices.host_ifname))
            self._op("apply", lambda: host.add_ingress_redirect(devices.host_ifindex, index, devices.host_ifname))
        return self._ensure_root_tbf(pod, host, index, name, False, want)

    def _remove_ifb(self, pod: Pod, host: NetnsTc, devices: PodDevices) -> None:
        filters = []
        if host.ingress_qdisc(devices.host_ifindex) is not None:
            filters = host.ingress_filters(devices.host_ifindex)
            if filters and all(f.prio == REDIRECT_FILTER_PRIO for f in filters):
                self._op("remove", lambda: host.delete_ingress(devices.host_ifindex, devices.host_ifname))
        name = ifb_name(pod.sandbox_id)
        ifb = host.link_by_name(name)
        if ifb is not None:
            self._op("remove", lambda: host.delete_link(ifb.index, name))
            log.info("pod %s: egress ifb %s removed", pod.display, name)

    # ---- helpers --------------------------------------------------------------------------
    def _op(self, op: str, fn):
        if not self._writes_allowed:
            raise ObserveOnly(op)
        try:
            result = fn()
        except TcError:
            self._health.shaping_operation(op, "error")
            raise
        self._health.shaping_operation(op, "ok")
        return result

    def _host_tc(self) -> NetnsTc:
        if self._host is None:
            self._host = self._tc_factory(None)
        return self._host

    def _pod_tc_for(self, pod: Pod) -> NetnsTc:
        tc = self._pod_tc.get(pod.sandbox_id)
        if tc is None or tc.netns_path != pod.netns_path:
            if tc is not None:
                tc.close()
            tc = self._tc_factory(pod.netns_path)
            self._pod_tc[pod.sandbox_id] = tc
        return tc

    def _drop_pod_tc(self, sandbox_id: str) -> None:
        self._close_pod_tc(sandbox_id)
        self._devices.pop(sandbox_id, None)

    def _close_pod_tc(self, sandbox_id: str) -> None:
        tc = self._pod_tc.pop(sandbox_id, None)
        if tc is not None:
            tc.close()

    @staticmethod
    def _still_valid(host: NetnsTc, pod: Pod, devices: PodDevices) -> bool:
        link = host.link_by_index(devices.host_ifindex)
        if link is None or link.name != devices.host_ifname:
            return False
        nsid = host.nsid_of(pod.netns_path)
        return nsid is not None and leads_into(link, nsid, devices.pod_ifindex)

    def _publish(self, sandbox_id: str, status: PodShapingStatus) -> None:
        if self._statuses.get(sandbox_id) != status:
            statuses = dict(self._statuses)
            statuses[sandbox_id] = status
            self._statuses = statuses  # readers on other threads see old or new, never half

    def _record_latency(self, sandbox_id: str, status: PodShapingStatus) -> None:
        if sandbox_id not in self._seen_at:
            return
        states = [d.state for d in status.directions.values()]
        if ShapingState.APPLIED in states:
            self._health.reconcile_latency(self._clock() - self._seen_at.pop(sandbox_id))
        elif ShapingState.ERROR not in states:
            self._seen_at.pop(sandbox_id)  # nothing to apply: no latency to report

    def _observed_status(self, pod: Pod, desired: dict[Direction, DesiredDirection]) -> PodShapingStatus:
        """Observe-only: the kernel differs from the desired state and nobody may write.

        Directions whose qdisc already matches stay APPLIED; the others are reported as ERROR
        "not applied" so a viewer without the agent shows the truth instead of the wish.
        """
        host = self._host_tc()
        devices = self._devices[pod.sandbox_id]
        if self._settings.egress_mode == EGRESS_MODE_IFB:
            egress_where = (host, *self._ifb_index_name(host, pod), False)
        else:
            egress_where = (self._pod_tc_for(pod), devices.pod_ifindex, devices.pod_ifname, True)
        where = {
            Direction.INGRESS: (host, devices.host_ifindex, devices.host_ifname, False),
            Direction.EGRESS: egress_where,
        }
        directions = {}
        for direction, want in desired.items():
            tc, index, device, in_pod = where[direction]
            if want.params is None:
                directions[direction] = DirectionStatus(want.state, None, "", in_pod, want.error)
                continue
            root = tc.root_qdisc(index) if index else None
            owner = classify_root(root.kind if root else None, root.handle if root else 0)
            if owner is Owner.PODBW and root is not None and root.tbf == expected_tbf(want.params):
                directions[direction] = DirectionStatus(ShapingState.APPLIED, want.params, device, in_pod)
            elif owner is Owner.FOREIGN and root is not None:
                reason = f"root qdisc {root.kind} {format_handle(root.handle)} on {device} is not podbw's"
                directions[direction] = DirectionStatus(ShapingState.FOREIGN, want.params, device, in_pod, reason)
            else:
                directions[direction] = DirectionStatus(
                    ShapingState.ERROR, want.params, device, in_pod, "not applied (no agent is shaping)"
                )
        return PodShapingStatus(
            pod.sandbox_id, devices.host_ifname, devices.pod_ifindex, directions, host_ifindex=devices.host_ifindex
        )

    @staticmethod
    def _ifb_index_name(host: NetnsTc, pod: Pod) -> tuple[int, str]:
        """The pod's ifb, if it exists and is up (index 0 otherwise: nothing passes it)."""
        name = ifb_name(pod.sandbox_id)
        link = host.link_by_name(name)
        return (link.index if link and link.admin_up else 0), name

    def _error_status(self, pod: Pod, desired: dict[Direction, DesiredDirection], reason: str) -> PodShapingStatus:
        old = self._statuses.get(pod.sandbox_id)
        directions = {}
        for direction, want in desired.items():
            if want.params is None:
                directions[direction] = DirectionStatus(want.state, None, "", False, want.error)
            else:
                directions[direction] = DirectionStatus(ShapingState.ERROR, want.params, "", False, reason)
        return PodShapingStatus(
            sandbox_id=pod.sandbox_id,
            host_interface=old.host_interface if old else "",
            host_ifindex=old.host_ifindex if old else 0,
            pod_ifindex=old.pod_ifindex if old else 0,
            directions=directions,
        )

    def _report_once(self, pod: Pod, problem: str, report: Callable[[], None]) -> None:
        """Log and count a problem when it appears, not again on every resync while it lasts."""
        self._problems.report(pod.sandbox_id, cause_key(problem), report)

    def _log_invalid(self, pod: Pod, want: DesiredDirection) -> None:
        fields = pod_fields(pod, want.direction, cause=want.error)
        log.error("annotation invalid; direction left unshaped", extra={**fields, "annotation": want.error_key})
        self._health.annotation_error(want.error_key)


_UNLIMITED_EGRESS = DesiredDirection(Direction.EGRESS, None)


class ObserveOnly(Exception):
    """Raised instead of a kernel write when shaping is disabled (a viewer, not the agent)."""


def describe(params: TbfParams) -> str:
    return (
        f"rate {params.rate_bytes_per_s * 8} bit/s burst {params.burst_bytes} B "
        f"limit {params.limit_bytes} B"
    )
