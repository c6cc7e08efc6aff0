"""The demo's Event look-ups, with a scripted kubectl and a fake clock."""

from __future__ import annotations

from typing import Sequence

from agent.lab.demo_events import EventLookups, EventQuery
from tests.unit.kubectl_script import ScriptedKubectl

QUERY = EventQuery("shop", "web", "BandwidthLimitChanged")
TABLE = (
    "LAST SEEN   TYPE     REASON                  OBJECT    MESSAGE\n"
    "1s          Normal   BandwidthLimitChanged   pod/web   ingress limit 20M -> 40M\n"
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lookups(answers: Sequence[tuple[bool, str, str]]) -> tuple[EventLookups, list[str], Clock, ScriptedKubectl]:
    shown: list[str] = []
    clock = Clock()
    kubectl = ScriptedKubectl(answers)
    return EventLookups(kubectl, shown.append, look_for_s=5.0, clock=clock), shown, clock, kubectl


def test_the_event_is_shown_with_the_command_once_kubectl_lists_it() -> None:
    found, shown, _, kubectl = lookups([(True, "", "No resources found in shop namespace.\n"), (True, TABLE, "")])
    found.look_for(QUERY)
    found.poll()
    assert shown == []
    found.poll()
    assert shown == [
        "$ kubectl --kubeconfig /lab/kubeconfig get events -n shop "
        "--field-selector involvedObject.name=web,reason=BandwidthLimitChanged",
        *TABLE.splitlines(),
    ]
    assert found.found == TABLE.splitlines()
    found.poll()
    assert len(kubectl.calls) == 2


def test_no_event_within_the_bound_is_said_not_waited_for() -> None:
    found, shown, clock, _ = lookups([(True, "", "No resources found in shop namespace.\n")])
    found.look_for(QUERY)
    found.poll()
    clock.now += 5.0
    found.poll()
    assert shown == ["no BandwidthLimitChanged Event for shop/web yet (looked for 5 s)"]
    found.finish()
    assert len(shown) == 1


def test_a_failing_kubectl_is_named_when_the_time_is_up() -> None:
    found, shown, _, _ = lookups([(False, "", "error: You must be logged in to the server (Unauthorized)\n")])
    found.look_for(QUERY)
    found.finish()
    assert shown == [
        "no BandwidthLimitChanged Event for shop/web yet "
        "(the demo ended; kubectl: error: You must be logged in to the server (Unauthorized))"
    ]
