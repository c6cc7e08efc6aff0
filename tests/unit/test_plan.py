"""plan(): what to write for every kernel state the issue names, table-driven. Pure: no kernel."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.model.annotations import DesiredDirection
from agent.model.direction import Direction, ShapingState
from agent.model.handles import INGRESS_HANDLE, PODBW_ROOT_HANDLE, REDIRECT_FILTER_PRIO, TC_H_INGRESS, TC_H_ROOT
from agent.model.kernel import Filter, Link, Qdisc
from agent.model.shaping import (
    AddRedirect,
    CreateIfb,
    DeleteIfb,
    DeleteIngress,
    DeleteRoot,
    Device,
    Intent,
    KernelView,
    PodDevices,
    ReplaceTbf,
    SetGso,
    SetUp,
    Side,
)
from agent.model.tbf import GSO_LEGACY_MAX_BYTES, expected_tbf, gso_max_bytes, tbf_params
from agent.shaping.plan import plan

IN, OUT = Direction.INGRESS, Direction.EGRESS
DEVICES = PodDevices(pod_ifindex=2, pod_ifname="eth0", host_ifindex=14, host_ifname="veth14")
HOST = Device(Side.HOST, "veth14", 14)
POD = Device(Side.POD, "eth0", 2)
IFB_NAME = "podbw0123456789"
OWNER = "podbw cri=unix:///x netns=/var/run/netns"
IFB = Link(40, IFB_NAME, kind="ifb", admin_up=True, oper_state=0, alias=OWNER)
IFB_DEVICE = Device(Side.HOST, IFB_NAME, 40)
NEW_IFB = Device(Side.HOST, IFB_NAME)

P10 = tbf_params(10_000_000)
P20 = tbf_params(20_000_000)
P100 = tbf_params(100_000_000)


def tbf(params, ifindex: int = 14, handle: int = PODBW_ROOT_HANDLE) -> Qdisc:
    return Qdisc(ifindex, handle, TC_H_ROOT, "tbf", tbf=expected_tbf(params))


def foreign(ifindex: int = 14) -> Qdisc:
    return Qdisc(ifindex, 0x10000, TC_H_ROOT, "htb")


INGRESS_QDISC = Qdisc(14, INGRESS_HANDLE, TC_H_INGRESS, "ingress")
OUR_FILTER = Filter(REDIRECT_FILTER_PRIO, "u32", redirect_ifindex=40)


def intent(ingress=None, egress=None, mode: str = "pod", take_over: bool = False, invalid: bool = False) -> Intent:
    def want(d, params):
        if invalid:
            return DesiredDirection(d, None, "kubernetes.io/ingress-bandwidth", "invalid quantity")
        return DesiredDirection(d, params)

    return Intent({IN: want(IN, ingress), OUT: DesiredDirection(OUT, egress)}, mode, take_over, IFB_NAME, OWNER)


def view(**kwargs) -> KernelView:
    return KernelView(DEVICES, **{"pod_gso_max_bytes": GSO_LEGACY_MAX_BYTES, **kwargs})


CASES = [
    # (id, intent, view, ops, {direction: state})
    ("absent: nothing wanted", intent(), view(), [], {IN: ShapingState.UNLIMITED, OUT: ShapingState.UNLIMITED}),
    ("absent: both wanted", intent(P10, P20), view(),
     [ReplaceTbf(HOST, P10, "apply", IN), ReplaceTbf(POD, P20, "apply", OUT), SetGso(POD, gso_max_bytes(P20))],
     {IN: ShapingState.APPLIED, OUT: ShapingState.APPLIED}),
    ("ours and equal: nothing to write", intent(P10, P20),
     view(host_root=tbf(P10), pod_root=tbf(P20, 2), pod_gso_max_bytes=gso_max_bytes(P20)), [],
     {IN: ShapingState.APPLIED, OUT: ShapingState.APPLIED}),
    ("ours and drifted (grows): replaced in place", intent(P100), view(host_root=tbf(P10)),
     [ReplaceTbf(HOST, P100, "update", IN)], {IN: ShapingState.APPLIED}),
    ("ours with a bucket that shrinks: deleted first", intent(P10), view(host_root=tbf(P100)),
     [ReplaceTbf(HOST, P10, "update", IN, delete_first=PODBW_ROOT_HANDLE)], {IN: ShapingState.APPLIED}),
    ("ours, no longer wanted: removed", intent(), view(host_root=tbf(P10), pod_root=tbf(P20, 2)),
     [DeleteRoot(HOST, PODBW_ROOT_HANDLE, IN), DeleteRoot(POD, PODBW_ROOT_HANDLE, OUT)],
     {IN: ShapingState.UNLIMITED, OUT: ShapingState.UNLIMITED}),
    ("invalid: ours removed, the state says invalid", intent(P10, invalid=True), view(host_root=tbf(P10)),
     [DeleteRoot(HOST, PODBW_ROOT_HANDLE, IN)], {IN: ShapingState.INVALID}),
    ("foreign, left alone", intent(P10), view(host_root=foreign()), [], {IN: ShapingState.FOREIGN}),
    ("foreign, unwanted: still left alone", intent(), view(host_root=foreign()), [], {IN: ShapingState.UNLIMITED}),
    ("foreign, taken over", intent(P10, take_over=True), view(host_root=foreign()),
     [ReplaceTbf(HOST, P10, "takeover", IN)], {IN: ShapingState.APPLIED}),
    ("the kernel's own default root is free to replace", intent(P10),
     view(host_root=Qdisc(14, 0, TC_H_ROOT, "noqueue")), [ReplaceTbf(HOST, P10, "apply", IN)], {IN: ShapingState.APPLIED}),
    # egress mode ifb
    ("ifb: absent", intent(egress=P20, mode="ifb"), view(),
     [CreateIfb(IFB_NAME, OWNER), AddRedirect(HOST, NEW_IFB), ReplaceTbf(NEW_IFB, P20, "apply", OUT)],
     {OUT: ShapingState.APPLIED}),
    ("ifb: all there", intent(egress=P20, mode="ifb"),
     view(host_ingress=INGRESS_QDISC, ingress_filters=(OUR_FILTER,), ifb=IFB, ifb_root=tbf(P20, 40)), [],
     {OUT: ShapingState.APPLIED}),
    ("ifb half-present: ifb without redirect", intent(egress=P20, mode="ifb"), view(ifb=IFB, ifb_root=tbf(P20, 40)),
     [AddRedirect(HOST, IFB_DEVICE)], {OUT: ShapingState.APPLIED}),
    ("ifb half-present: redirect to a gone ifb", intent(egress=P20, mode="ifb"),
     view(host_ingress=INGRESS_QDISC, ingress_filters=(OUR_FILTER,)),
     [CreateIfb(IFB_NAME, OWNER), DeleteIngress(HOST, label="update"), AddRedirect(HOST, NEW_IFB),
      ReplaceTbf(NEW_IFB, P20, "apply", OUT)], {OUT: ShapingState.APPLIED}),
    ("ifb half-present: ifb down and without alias (an agent killed mid-way)", intent(egress=P20, mode="ifb"),
     view(host_ingress=INGRESS_QDISC, ingress_filters=(OUR_FILTER,), ifb=IFB._replace(admin_up=False, alias="")),
     [SetUp(IFB_DEVICE, OWNER), ReplaceTbf(IFB_DEVICE, P20, "apply", OUT)], {OUT: ShapingState.APPLIED}),
    ("ifb set down by someone", intent(egress=P20, mode="ifb"),
     view(host_ingress=INGRESS_QDISC, ingress_filters=(OUR_FILTER,), ifb=IFB._replace(admin_up=False), ifb_root=tbf(P20, 40)),
     [SetUp(IFB_DEVICE, OWNER)], {OUT: ShapingState.APPLIED}),
    ("ifb of another agent: foreign", intent(egress=P20, mode="ifb"), view(ifb=IFB._replace(alias="podbw cri=other")),
     [], {OUT: ShapingState.FOREIGN}),
    ("ifb: a foreign filter on the ingress qdisc", intent(egress=P20, mode="ifb"),
     view(host_ingress=INGRESS_QDISC, ingress_filters=(Filter(1, "u32", 0),)), [], {OUT: ShapingState.FOREIGN}),
    ("ifb: a foreign filter, taken over", intent(egress=P20, mode="ifb", take_over=True),
     view(host_ingress=INGRESS_QDISC, ingress_filters=(Filter(1, "u32", 0),), ifb=IFB, ifb_root=tbf(P20, 40)),
     [DeleteIngress(HOST, label="takeover"), AddRedirect(HOST, IFB_DEVICE)], {OUT: ShapingState.APPLIED}),
    ("ifb mode removes podbw's TBF in the pod and gives back the GSO size", intent(egress=P20, mode="ifb"),
     view(pod_root=tbf(P20, 2), pod_gso_max_bytes=gso_max_bytes(P20), ifb=IFB, ifb_root=tbf(P20, 40),
          host_ingress=INGRESS_QDISC, ingress_filters=(OUR_FILTER,)),
     [DeleteRoot(POD, PODBW_ROOT_HANDLE, OUT), SetGso(POD, GSO_LEGACY_MAX_BYTES)], {OUT: ShapingState.APPLIED}),
    ("ifb no longer wanted: redirect and ifb removed", intent(mode="ifb"),
     view(host_ingress=INGRESS_QDISC, ingress_filters=(OUR_FILTER,), ifb=IFB, ifb_root=tbf(P20, 40)),
     [DeleteIngress(HOST), DeleteIfb(IFB_DEVICE)], {OUT: ShapingState.UNLIMITED}),
    ("pod mode removes an orphan ifb of the pod and its redirect", intent(egress=P20),
     view(host_ingress=INGRESS_QDISC, ingress_filters=(OUR_FILTER,), ifb=IFB, pod_root=tbf(P20, 2),
          pod_gso_max_bytes=gso_max_bytes(P20)),
     [DeleteIngress(HOST), DeleteIfb(IFB_DEVICE)], {OUT: ShapingState.APPLIED}),
    ("pod mode keeps an ingress qdisc that holds others' filters", intent(egress=P20),
     view(host_ingress=INGRESS_QDISC, ingress_filters=(OUR_FILTER, Filter(1, "u32", 0)), pod_root=tbf(P20, 2),
          pod_gso_max_bytes=gso_max_bytes(P20)), [], {OUT: ShapingState.APPLIED}),
    # the GSO cap
    ("GSO: an admin's larger size is never lowered without a limit", intent(), view(pod_gso_max_bytes=185_000), [],
     {OUT: ShapingState.UNLIMITED}),
    ("GSO: podbw's cap given back when the limit goes", intent(), view(pod_gso_max_bytes=gso_max_bytes(P20)),
     [SetGso(POD, GSO_LEGACY_MAX_BYTES)], {OUT: ShapingState.UNLIMITED}),
    ("GSO: a rate whose bucket holds 64 KB needs no cap", intent(egress=tbf_params(1_000_000_000)),
     view(pod_root=tbf(tbf_params(1_000_000_000), 2)), [], {OUT: ShapingState.APPLIED}),
]


@pytest.mark.parametrize(("intent_", "view_", "ops", "states"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan(intent_: Intent, view_: KernelView, ops: list, states: dict) -> None:
    planned = plan(intent_, view_)
    assert list(planned.ops) == ops
    assert {d: s for d, s in ((d, planned.statuses[d].state) for d in states)} == states


def test_applying_the_plan_makes_the_next_plan_empty() -> None:
    # What the kernel holds once the ops of "absent: both wanted" are in: idempotence.
    after = view(host_root=tbf(P10), pod_root=tbf(P20, 2), pod_gso_max_bytes=gso_max_bytes(P20))
    assert plan(intent(P10, P20), after).ops == ()


def test_statuses_name_the_device_and_side() -> None:
    planned = plan(intent(P10, P20), view())
    assert (planned.statuses[IN].device, planned.statuses[IN].device_in_pod) == ("veth14", False)
    assert (planned.statuses[OUT].device, planned.statuses[OUT].device_in_pod) == ("eth0", True)
    assert planned.statuses[IN].params == P10
    ifb = plan(intent(egress=P20, mode="ifb"), view())
    assert (ifb.statuses[OUT].device, ifb.statuses[OUT].device_in_pod) == (IFB_NAME, False)
    assert "htb 1: on veth14 is not podbw's" in plan(intent(P10), view(host_root=foreign())).statuses[IN].reason


def test_pending_names_the_directions_with_writes() -> None:
    assert plan(intent(P10, P20), view()).pending() == {IN, OUT}
    gso_only = plan(intent(), view(pod_gso_max_bytes=gso_max_bytes(P20)))
    assert gso_only.ops and gso_only.pending() == frozenset()
    assert plan(intent(P10), replace(view(), host_root=tbf(P10))).pending() == frozenset()
