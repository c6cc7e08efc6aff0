"""The reconciler's pod Events on a real lab: what it tells, with the numbers in the kernel,
once per cause, and nothing from a viewer."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

import pytest

from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from agent.model.health import HealthRecorder
from agent.model.pod_events import PodEvent
from agent.shaping.reconciler import Reconciler
from agent.shaping.settings import ShapingSettings
from tests.integration import tc_probe

pytestmark = pytest.mark.root


@pytest.fixture
def events() -> Iterator[tuple[list[PodEvent], list[Reconciler]]]:
    seen: list[PodEvent] = []
    made: list[Reconciler] = []
    yield seen, made
    for reconciler in made:
        reconciler.close()


def reconciler(made: list[Reconciler], seen: list[PodEvent], enabled: bool = True) -> Reconciler:
    r = Reconciler(ShapingSettings(enabled=enabled), HealthRecorder(), on_event=seen.append)
    made.append(r)
    return r


def test_applied_changed_and_invalid_are_told_once(lab_factory, events) -> None:
    seen, made = events
    lab: LabNode = lab_factory()
    (web,) = lab.up([PodSpec("web", "shop", {"kubernetes.io/ingress-bandwidth": "50M"})], pod_events=False)
    r = reconciler(made, seen)
    pod = web.as_pod()
    r.reconcile(pod)
    r.reconcile(pod)  # nothing new: nothing told
    ((applied,),) = [seen]
    assert (applied.reason, applied.type, applied.uid) == ("BandwidthLimitApplied", "Normal", web.uid)
    root = tc_probe.root(web.host_veth)
    assert f"rate {root['options']['rate']} bytes/s" in applied.note and "50 Mbit/s" in applied.note
    assert web.host_veth in applied.note
    reconciler(made, seen).reconcile(pod)  # a restarted agent adopts the limit: the first one told
    assert len(seen) == 1

    # The annotations in force change (kubectl annotate, or the annotations file).
    pod = replace(pod, annotations={"kubernetes.io/ingress-bandwidth": "20M", "kubernetes.io/egress-bandwidth": "10Q"})
    r.reconcile(pod)
    r.reconcile(pod)
    reasons = sorted(e.reason for e in seen[1:])
    assert reasons == ["BandwidthLimitChanged", "InvalidBandwidthAnnotation"]
    changed = next(e for e in seen if e.reason == "BandwidthLimitChanged")
    assert "20 Mbit/s" in changed.note and "was 50 Mbit/s" in changed.note
    invalid = next(e for e in seen if e.reason == "InvalidBandwidthAnnotation")
    assert invalid.type == "Warning" and "kubernetes.io/egress-bandwidth='10Q' is invalid" in invalid.note


def test_a_foreign_qdisc_is_told_and_a_viewer_tells_nothing(lab_factory, events) -> None:
    seen, made = events
    lab: LabNode = lab_factory()
    (web,) = lab.up([PodSpec("web", "shop", {"kubernetes.io/ingress-bandwidth": "50M"})], pod_events=False)
    tc_probe.tc("qdisc", "add", "dev", web.host_veth, "root", "handle", "1:", "htb")
    viewer = reconciler(made, seen, enabled=False)
    viewer.reconcile(web.as_pod())
    assert seen == []
    reconciler(made, seen).reconcile(web.as_pod())
    ((foreign,),) = [seen]
    assert foreign.reason == "ForeignQdisc" and "htb 1:" in foreign.note and "--take-over-foreign" in foreign.note
