"""Reconciler: for each pod, observe what the kernel holds, plan the difference from what its
annotations ask, and apply it. After an agent restart with unchanged annotations the plan is
empty and nothing is written. Observe-only (a viewer, or an agent waiting for the node lock) is
observe and plan without apply.

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
from agent.model.handles import TC_H_ROOT
from agent.model.health import HealthRecorder
from agent.model.log_fields import pod_fields
from agent.model.ownership import IFB_NAME_RE, Owner, classify_root, ifb_name
from agent.model.pod import Pod
from agent.model.pod_events import (
    FOREIGN_QDISC,
    INVALID_ANNOTATION,
    LIMIT_APPLIED,
    LIMIT_CHANGED,
    NORMAL,
    SHAPING_FAILED,
    WARNING,
    PodEvent,
)
from agent.model.problems import ProblemLog, cause_key
from agent.model.shaping import (
    AddRedirect,
    CreateIfb,
    DeleteIfb,
    DeleteIngress,
    DeleteRoot,
    Intent,
    Op,
    Plan,
    PodDevices,
    ReplaceTbf,
    SetGso,
    SetUp,
)
from agent.model.status import DirectionStatus, PodShapingStatus
from agent.model.tbf import without_limit_floor
from agent.model.tbf_params import TbfParams
from agent.model.valuetext import quote_value
from agent.netlink.errors import Gone, NetlinkError
from agent.netlink.socket import NetlinkSocket
from agent.netlink.tc import TcWriter
from agent.shaping.apply import Writers, apply
from agent.shaping.devices import find_pod_devices, still_valid
from agent.shaping.observe import observe
from agent.shaping.plan import plan
from agent.shaping.settings import EGRESS_MODE_IFB, ShapingSettings

log = logging.getLogger(__name__)

NOT_APPLIED = "not applied (no agent is shaping)"


class Reconciler:
    def __init__(
        self,
        settings: ShapingSettings,
        health: HealthRecorder,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[PodEvent], None] = lambda event: None,
    ) -> None:
        """`on_event` hears of every pod Event (it must not block: see EventRecorder)."""
        self._settings = settings
        self._on_event = on_event
        self._health = health
        self._clock = clock
        self._host_reader: NetlinkSocket | None = None
        self._host_writer: TcWriter | None = None
        self._devices: dict[str, PodDevices] = {}
        self._problems = ProblemLog()
        """Per sandbox id, the problems its last reconcile found (already logged and counted)."""
        self._seen_at: dict[str, float] = {}
        """sandbox id -> when discovery saw it, until its first limit lands (reconcile latency)."""
        self._statuses: dict[str, PodShapingStatus] = {}
        self._unowned_ifbs: set[str] = set()
        """ifbs reported by the last orphan scan as named like podbw's without an owner."""
        self._writes_allowed = settings.enabled
        """False: observe only (a viewer, or an agent waiting for the node lock)."""

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
        annotations = pod.annotations  # in force: the registry resolved them (agent.discovery.resolver)
        intent = self._intent(pod, annotations)
        for want in intent.directions.values():
            if want.state is ShapingState.INVALID:
                # Keyed by the whole value: the error text shows only the first 40 characters.
                value = annotations.get(want.error_key, "")
                problem = f"invalid:{want.error_key}:{value}:{want.error}"
                self._report_once(pod, problem, lambda w=want, v=value: self._report_invalid(pod, w, v))
        status, written = self._shape(pod, intent)
        for direction, current in status.directions.items():
            if current.state is ShapingState.FOREIGN:
                self._report_once(pod, f"foreign:{direction.value}:{current.reason}",
                                  lambda d=direction, r=current.reason: self._report_foreign(pod, d, r))
        self._problems.end(pod.sandbox_id)
        self._announce_limits(pod, self._statuses.get(pod.sandbox_id), status, written)
        self._publish(pod.sandbox_id, status)
        self._record_latency(pod.sandbox_id, status)
        return status

    def forget(self, pod: Pod) -> None:
        """The pod is gone: remove what podbw made for it on the host (its namespace is gone)."""
        devices = self._devices.pop(pod.sandbox_id, None)
        if self._writes_allowed:
            try:
                host, writer = self._host()
                ifb = host.link(name=ifb_name(pod.sandbox_id))
                if ifb is not None:
                    writer.delete_link(ifb.ifindex, ifb.name)
                    self._health.shaping_operation("remove", "ok")
                if devices is not None:
                    link = host.link(devices.host_ifindex)
                    root = host.qdisc(devices.host_ifindex, TC_H_ROOT) if link and link.name == devices.host_ifname else None
                    if root is not None and classify_root(root.kind, root.handle) is Owner.PODBW:
                        writer.delete_root(devices.host_ifindex, root.handle, devices.host_ifname)
                        self._health.shaping_operation("remove", "ok")
            except NetlinkError as err:
                log.error("cleanup after removal failed", extra=pod_fields(pod, cause=str(err)))
                self._health.shaping_operation("remove", "error")
        self._problems.forget(pod.sandbox_id)
        self._seen_at.pop(pod.sandbox_id, None)
        if pod.sandbox_id in self._statuses:
            statuses = dict(self._statuses)
            del statuses[pod.sandbox_id]
            self._statuses = statuses

    def remove_limits(self, pod: Pod) -> None:
        """Take every podbw qdisc of the pod out of the kernel (the agent's --cleanup-on-exit)."""
        unlimited = {d: DesiredDirection(d, None) for d in Direction}
        self._shape(pod, self._intent(pod, {}, unlimited))
        self.forget(pod)

    def collect_orphans(self, known_sandbox_ids: set[str]) -> None:
        """Delete this agent's podbw ifbs whose pod is unknown (e.g. removed while the agent was
        down). Another agent's (a different ifb_owner alias) are left alone; ones named as podbw
        names its ifbs but with no alias at all (an agent killed while making one, or someone
        else's) are reported, never deleted on a guess."""
        expected = {ifb_name(sandbox_id) for sandbox_id in known_sandbox_ids}
        unowned: set[str] = set()
        try:
            host, writer = self._host()
            for link in host.links():
                if link.kind != "ifb" or not IFB_NAME_RE.fullmatch(link.name) or link.name in expected:
                    continue
                found = host.link(link.ifindex)  # the dump's alias may be a minute old
                if found is None or found.name != link.name:
                    continue
                if found.alias == self._settings.ifb_owner:
                    log.info("removing orphaned ifb %s", link.name)
                    writer.delete_link(link.ifindex, link.name)
                    self._health.shaping_operation("remove", "ok")
                elif not found.alias:
                    unowned.add(link.name)
        except NetlinkError as err:
            log.error("orphan ifb cleanup failed: %s", err)
            return
        for name in sorted(unowned - self._unowned_ifbs):
            log.warning(
                "ifb %s is named like podbw's but has no owner alias and belongs to no known pod; "
                "left in place (delete it with `ip link del %s` if nothing uses it)", name, name,
            )
        self._unowned_ifbs = unowned
        self._health.set_unowned_ifbs(len(unowned))

    def close(self) -> None:
        reader, writer = self._host_reader, self._host_writer
        self._host_reader = self._host_writer = None
        if reader is not None:
            reader.close()
        if writer is not None:
            writer.close()

    # ---- observe, plan, apply -------------------------------------------------------------
    def _intent(
        self, pod: Pod, annotations: Mapping[str, str], desired: dict[Direction, DesiredDirection] | None = None
    ) -> Intent:
        if desired is None:
            desired = desired_shaping(annotations)
        want_egress = desired[Direction.EGRESS]
        if self._settings.egress_mode != EGRESS_MODE_IFB and want_egress.params and EGRESS_LATENCY not in annotations:
            # The pod's own TCP sits behind this TBF and meets back-pressure, not losses: the
            # 8-frame floor kept for remote senders would only add delay (see without_limit_floor).
            desired[Direction.EGRESS] = replace(want_egress, params=without_limit_floor(want_egress.params))
        return Intent(
            directions=desired,
            egress_mode=self._settings.egress_mode,
            take_over_foreign=self._settings.take_over_foreign,
            ifb_name=ifb_name(pod.sandbox_id),
            ifb_owner=self._settings.ifb_owner,
        )

    def _shape(self, pod: Pod, intent: Intent) -> tuple[PodShapingStatus, frozenset[Direction]]:
        """The pod's status after this pass, and the directions whose qdiscs it wrote."""
        devices = self._devices.get(pod.sandbox_id)
        written: set[Direction] = set()

        def done(op: Op, err: NetlinkError | None) -> None:
            self._done(pod, op, err)
            if err is None and op.direction is not None:
                written.add(op.direction)

        try:
            host, host_writer = self._host()
            # Opening a pod's socket costs ~1 ms; keeping 250 open costs memory and file
            # descriptors, and reconciles are rare (events, resyncs): one per reconcile.
            with NetlinkSocket(pod.netns_path) as pod_reader:
                if devices is None or not still_valid(pod.netns_path, host, devices):
                    devices = self._devices[pod.sandbox_id] = find_pod_devices(pod.netns_path, pod_reader, host)
                view = observe(devices, pod_reader, host, intent.ifb_name, host_writer.ingress_filters)
                steps = plan(intent, view)
                statuses = dict(steps.statuses)
                if not self._writes_allowed:
                    statuses = self._observed(intent, steps)
                elif steps.ops:
                    writers = Writers(host_writer, host, lambda: TcWriter(pod.netns_path))
                    try:
                        failures = apply(steps.ops, writers, done)
                    finally:
                        writers.close()
                    for direction, err in failures.items():
                        if direction is None:
                            # Only the GSO cap (a goodput aid) is missing; the limits are in place.
                            self._report_once(pod, f"gso:{err}", lambda e=err: log.warning(
                                "GSO cap not set", extra=pod_fields(pod, cause=str(e))))
                        else:
                            statuses[direction] = self._failed(intent.directions[direction], str(err))
                            self._report_once(pod, f"error:{err}", lambda d=direction, e=err: self._report_failure(pod, d, e))
        except Gone as err:
            self._devices.pop(pod.sandbox_id, None)
            return self._error_status(pod, intent, f"pod interface gone: {err}"), frozenset(written)
        except NetlinkError as err:
            self._devices.pop(pod.sandbox_id, None)
            self._report_once(pod, f"error:{err}", lambda: self._report_failure(pod, None, err))
            return self._error_status(pod, intent, str(err)), frozenset(written)
        return PodShapingStatus(
            sandbox_id=pod.sandbox_id,
            host_interface=devices.host_ifname,
            pod_ifindex=devices.pod_ifindex,
            directions=statuses,
            host_ifindex=devices.host_ifindex,
        ), frozenset(written)

    @staticmethod
    def _observed(intent: Intent, steps: Plan) -> dict[Direction, DirectionStatus]:
        """Observe-only: directions the kernel does not hold as wanted are not applied; the view
        shows the truth, not the wish."""
        statuses = dict(steps.statuses)
        for direction in steps.pending():
            want = intent.directions[direction]
            if want.params is not None and statuses[direction].state is ShapingState.APPLIED:
                statuses[direction] = replace(statuses[direction], state=ShapingState.ERROR, reason=NOT_APPLIED)
        return statuses

    def _done(self, pod: Pod, op: Op, err: NetlinkError | None) -> None:
        if op.label is not None:
            self._health.shaping_operation(op.label, "error" if err is not None else "ok")
        if err is None:
            # An ifb found down swallowed the pod's egress until now: worth a warning.
            level = logging.WARNING if isinstance(op, SetUp) else logging.DEBUG if isinstance(op, SetGso) else logging.INFO
            log.log(level, describe(op), extra=pod_fields(pod, op.direction))

    def _host(self) -> tuple[NetlinkSocket, TcWriter]:
        if self._host_reader is None or self._host_reader.closed:
            self._host_reader = NetlinkSocket(None)
        if self._host_writer is None:
            self._host_writer = TcWriter(None)
        return self._host_reader, self._host_writer

    # ---- statuses --------------------------------------------------------------------------
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

    @staticmethod
    def _failed(want: DesiredDirection, reason: str) -> DirectionStatus:
        if want.params is None:
            return DirectionStatus(want.state, None, "", False, want.error)
        return DirectionStatus(ShapingState.ERROR, want.params, "", False, reason)

    def _error_status(self, pod: Pod, intent: Intent, reason: str) -> PodShapingStatus:
        old = self._statuses.get(pod.sandbox_id)
        return PodShapingStatus(
            sandbox_id=pod.sandbox_id,
            host_interface=old.host_interface if old else "",
            pod_ifindex=old.pod_ifindex if old else 0,
            directions={d: self._failed(want, reason) for d, want in intent.directions.items()},
            host_ifindex=old.host_ifindex if old else 0,
        )

    def _report_once(self, pod: Pod, problem: str, report: Callable[[], None]) -> None:
        """Log and count a problem when it appears, not again on every resync while it lasts."""
        self._problems.report(pod.sandbox_id, cause_key(problem), report)

    # ---- reports: a log line, and an Event where `kubectl describe pod` shows it ----------
    def _report_invalid(self, pod: Pod, want: DesiredDirection, value: str) -> None:
        fields = pod_fields(pod, want.direction, cause=want.error)
        log.error("annotation invalid; direction left unshaped", extra={**fields, "annotation": want.error_key})
        self._health.annotation_error(want.error_key)
        self._event(pod, INVALID_ANNOTATION, WARNING,
                    f"{want.error_key}={quote_value(value)} is invalid: {want.error}; "
                    f"{want.direction.value} is left unlimited")

    def _report_foreign(self, pod: Pod, direction: Direction, reason: str) -> None:
        log.warning("not podbw's: left alone", extra=pod_fields(pod, direction, cause=reason))
        self._event(pod, FOREIGN_QDISC, WARNING,
                    f"{direction.value} limit not applied: {reason}; podbw leaves it alone unless the agent "
                    "runs with --take-over-foreign")

    def _report_failure(self, pod: Pod, direction: Direction | None, err: Exception) -> None:
        log.error("shaping failed", extra=pod_fields(pod, direction, cause=str(err)))
        where = f"{direction.value} " if direction is not None else ""
        self._event(pod, SHAPING_FAILED, WARNING, f"{where}limit not applied: {err}; podbw retries at every resync")

    def _announce_limits(
        self, pod: Pod, before: PodShapingStatus | None, after: PodShapingStatus, written: frozenset[Direction]
    ) -> None:
        """BandwidthLimitApplied when this pass put a direction's limit in the kernel, Changed
        when it changed it there: with the numbers the kernel holds. A limit adopted as it was
        (a restart) was announced by the agent that wrote it."""
        for direction, now in after.directions.items():
            if now.state is not ShapingState.APPLIED or now.params is None or direction not in written:
                continue
            was = before.directions.get(direction) if before is not None else None
            if was is not None and was.state is ShapingState.APPLIED and was.params == now.params:
                continue
            changed = was is not None and was.state is ShapingState.APPLIED and was.params is not None
            note = f"{direction.value} limited to {_limit_text(now.params)} on {now.device}"
            if changed:
                note += f" (was {_limit_text(was.params)})"  # type: ignore[union-attr, arg-type]
            self._event(pod, LIMIT_CHANGED if changed else LIMIT_APPLIED, NORMAL, note)

    def _event(self, pod: Pod, reason: str, type_: str, note: str) -> None:
        if self._writes_allowed and pod.uid:  # a viewer, or an agent on standby, tells nobody
            self._on_event(PodEvent(pod.namespace, pod.name, pod.uid, reason, type_, note))


def describe(op: Op) -> str:
    """One log line's message for an operation done."""
    match op:
        case ReplaceTbf(device=device, params=params, label=label):
            return f"limit {describe_params(params)} on {device.name} ({label})"
        case DeleteRoot(device=device):
            return f"limit removed from {device.name}"
        case CreateIfb(name=name):
            return f"egress ifb {name} created"
        case SetUp(device=device):
            return f"egress ifb {device.name} was down or had no owner: set up"
        case DeleteIfb(device=device):
            return f"egress ifb {device.name} removed"
        case AddRedirect(host=host, ifb=ifb):
            return f"ingress of {host.name} redirected to {ifb.name}"
        case DeleteIngress(host=host):
            return f"ingress qdisc of {host.name} removed"
        case SetGso(device=device, size_bytes=size_bytes):
            return f"gso_max_size {size_bytes} on {device.name}"
    return repr(op)


def _limit_text(params: TbfParams) -> str:
    return (
        f"{_bits_text(params.rate_bytes_per_s * 8)} (rate {params.rate_bytes_per_s} bytes/s, "
        f"burst {params.burst_bytes} bytes, queue limit {params.limit_bytes} bytes)"
    )


def _bits_text(bits_per_s: int) -> str:
    for unit, scale in (("Gbit/s", 10**9), ("Mbit/s", 10**6), ("kbit/s", 10**3)):
        if bits_per_s >= scale:
            return f"{bits_per_s / scale:g} {unit}"
    return f"{bits_per_s} bit/s"


def describe_params(params: TbfParams) -> str:
    return f"rate {params.rate_bytes_per_s * 8} bit/s burst {params.burst_bytes} B limit {params.limit_bytes} B"
