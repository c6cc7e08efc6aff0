"""plan(): the one function that decides what to write. Pure: a kernel view and an intent in, the
operations and the resulting states out. The shape of the CNI bandwidth plugin's check: the
desired qdiscs are computed and compared with what the kernel holds."""

from __future__ import annotations

from agent.model.annotations import DesiredDirection
from agent.model.direction import Direction, ShapingState
from agent.model.handles import REDIRECT_FILTER_PRIO, format_handle
from agent.model.kernel import Qdisc
from agent.model.ownership import Owner, classify_root
from agent.model.shaping import (
    AddRedirect,
    CreateIfb,
    DeleteIfb,
    DeleteIngress,
    DeleteRoot,
    Device,
    Intent,
    KernelView,
    Op,
    Plan,
    ReplaceTbf,
    SetGso,
    SetUp,
    Side,
)
from agent.model.status import DirectionStatus
from agent.model.tbf import GSO_LEGACY_MAX_BYTES, bucket_shrinks, expected_tbf, gso_max_bytes
from agent.model.tbf_params import TbfParams
from agent.shaping.settings import EGRESS_MODE_IFB

_LABELS = {Owner.PODBW: "update", Owner.DEFAULT: "apply", Owner.FOREIGN: "takeover"}


def plan(intent: Intent, view: KernelView) -> Plan:
    devices = view.devices
    host = Device(Side.HOST, devices.host_ifname, devices.host_ifindex)
    pod = Device(Side.POD, devices.pod_ifname, devices.pod_ifindex)
    ops: list[Op] = []
    ingress = _root_tbf(intent, intent.directions[Direction.INGRESS], view.host_root, host, ops)
    want_egress = intent.directions[Direction.EGRESS]
    if intent.egress_mode == EGRESS_MODE_IFB:
        _root_tbf(intent, DesiredDirection(Direction.EGRESS, None), view.pod_root, pod, ops)
        egress = _ifb(intent, want_egress, view, host, ops)
        in_pod_limit = None
    else:
        _remove_ifb(view, host, ops)
        egress = _root_tbf(intent, want_egress, view.pod_root, pod, ops)
        in_pod_limit = egress.params if egress.state is ShapingState.APPLIED else None
    _gso(in_pod_limit, view.pod_gso_max_bytes, pod, ops)
    return Plan(tuple(ops), {Direction.INGRESS: ingress, Direction.EGRESS: egress})


def _root_tbf(intent: Intent, want: DesiredDirection, root: Qdisc | None, device: Device, ops: list[Op]) -> DirectionStatus:
    """podbw's TBF as the root of `device`, as `want` says."""
    in_pod = device.side is Side.POD
    owner = classify_root(root.kind if root else None, root.handle if root else 0)
    if want.params is None:
        if owner is Owner.PODBW and root is not None:
            ops.append(DeleteRoot(device, root.handle, want.direction))
        return DirectionStatus(want.state, None, "", in_pod, want.error)
    if owner is Owner.FOREIGN and not intent.take_over_foreign:
        assert root is not None
        reason = f"root qdisc {root.kind} {format_handle(root.handle)} on {device.name} is not podbw's"
        return DirectionStatus(ShapingState.FOREIGN, want.params, device.name, in_pod, reason)
    applied = DirectionStatus(ShapingState.APPLIED, want.params, device.name, in_pod)
    if owner is Owner.PODBW and root is not None and root.tbf == expected_tbf(want.params):
        return applied
    shrinks = owner is Owner.PODBW and root is not None and root.tbf is not None and bucket_shrinks(root.tbf, want.params)
    ops.append(ReplaceTbf(device, want.params, _LABELS[owner], want.direction, root.handle if shrinks and root else None))
    return applied


def _ifb(intent: Intent, want: DesiredDirection, view: KernelView, host: Device, ops: list[Op]) -> DirectionStatus:
    """Egress mode ifb: the host veth's ingress redirected to the pod's ifb, TBF on the ifb."""
    if want.params is None:
        _remove_ifb(view, host, ops)
        return DirectionStatus(want.state, None, "", False, want.error)
    ingress, filters = view.host_ingress, view.ingress_filters
    if (ingress is not None and ingress.kind != "ingress") or any(f.prio != REDIRECT_FILTER_PRIO for f in filters):
        if not intent.take_over_foreign:
            reason = f"ingress qdisc on {host.name} has filters that are not podbw's"
            return DirectionStatus(ShapingState.FOREIGN, want.params, "", False, reason)
        ops.append(DeleteIngress(host, label="takeover"))
        ingress, filters = None, ()
    ifb = view.ifb
    if ifb is not None and ifb.alias not in ("", intent.ifb_owner):
        reason = f"ifb {ifb.name} carries another agent's alias"
        return DirectionStatus(ShapingState.FOREIGN, want.params, ifb.name, False, reason)
    if ifb is None:
        ops.append(CreateIfb(intent.ifb_name, intent.ifb_owner))
        target = Device(Side.HOST, intent.ifb_name)
    else:
        target = Device(Side.HOST, ifb.name, ifb.ifindex)
        if not ifb.admin_up or ifb.alias != intent.ifb_owner:
            ops.append(SetUp(target, intent.ifb_owner))
    ours = [f for f in filters if f.prio == REDIRECT_FILTER_PRIO]
    if not (ifb is not None and len(ours) == 1 and ours[0].redirect_ifindex == ifb.ifindex):
        if ingress is not None:
            ops.append(DeleteIngress(host, label="update"))
        ops.append(AddRedirect(host, target))
    return _root_tbf(intent, want, view.ifb_root if ifb is not None else None, target, ops)


def _remove_ifb(view: KernelView, host: Device, ops: list[Op]) -> None:
    """Take away what egress mode ifb left: podbw's redirect and the pod's ifb."""
    if view.host_ingress is not None and view.ingress_filters and all(
        f.prio == REDIRECT_FILTER_PRIO for f in view.ingress_filters
    ):
        ops.append(DeleteIngress(host))
    if view.ifb is not None:
        ops.append(DeleteIfb(Device(Side.HOST, view.ifb.name, view.ifb.ifindex)))


def _gso(egress_limit: TbfParams | None, current_bytes: int, pod: Device, ops: list[Op]) -> None:
    """Egress mode pod: keep the pod's GSO packets no larger than its egress bucket, so its TCP
    meets back-pressure instead of losses; otherwise give back the kernel's default if podbw
    lowered it (never lowering what an admin raised, as for BIG TCP)."""
    if current_bytes <= 0:
        return
    want = gso_max_bytes(egress_limit) if egress_limit is not None else None
    if want is None:
        if current_bytes >= GSO_LEGACY_MAX_BYTES:
            return
        want = GSO_LEGACY_MAX_BYTES
    if current_bytes != want:
        ops.append(SetGso(pod, want))

