"""Watch streams of the lab's API stand-in: framing, the cacher's selector rule, bookmarks,
410 and 504 as ERROR events, initial events. Time is simulated: the store's wait advances a
fake clock instead of sleeping, and may make a change happen "during" the wait."""

from __future__ import annotations

import json
import random
from typing import Any, Callable

import pytest

from agent.lab.kube_events import core_to_v1
from agent.lab.kube_store import Change, KubeStore
from agent.lab.kube_watch import (
    WatchOptions,
    WatchStream,
    bookmark_object,
    default_timeout_s,
    encode_event,
    http_chunk,
    next_bookmark_at,
    transform,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SimulatedStore(KubeStore):
    """wait() runs the next scheduled change, or lets simulated time pass."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.during_waits: list[Callable[[KubeStore], None]] = []

    def wait(self, after_rv: int, generation: int, timeout_s: float) -> None:
        if self.rv > after_rv or self.close_generation != generation or self.stopping:
            return
        if self.during_waits:
            self.during_waits.pop(0)(self)
            return
        self.clock.now += max(timeout_s, 0.0)


def pod(name: str, **labels: str) -> dict:
    meta: dict = {"name": name, "namespace": "shop"}
    if labels:
        meta["labels"] = dict(labels)
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": {"nodeName": "node-a"}}


def run(store: SimulatedStore, options: WatchOptions, matches: Callable[[dict], bool] = lambda o: True,
        resource: str = "pods", render: Callable[[dict], dict] = lambda o: o, bookmark_interval_s: float = 5.0,
        client_gone: Callable[[], bool] = lambda: False) -> tuple[str, list[tuple[str, Any]]]:
    sent: list[bytes] = []
    kind = ("v1", "Pod") if resource == "pods" else ("events.k8s.io/v1", "Event")
    stream = WatchStream(store, resource, matches, render, kind, options, bookmark_interval_s, 300.0, clock=store.clock)
    why = stream.run(sent.append, client_gone)
    events = [json.loads(line) for line in sent]
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in sent)
    assert stream.events_sent == len(events)
    return why, [(e["type"], e["object"]) for e in events]


def names(events: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [(kind, obj.get("metadata", {}).get("name", obj.get("metadata", {}).get("resourceVersion", ""))) for kind, obj in events]


def test_event_framing() -> None:
    line = encode_event("ADDED", {"a": 1})
    assert line == b'{"type":"ADDED","object":{"a":1}}\n'
    assert http_chunk(line) == b"22\r\n" + line + b"\r\n"
    assert http_chunk(b"") == b"0\r\n\r\n"


def test_bookmark_is_the_kinds_zero_value_but_for_its_rv() -> None:
    assert bookmark_object("v1", "Pod", 42) == {
        "kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "42"}, "spec": {"containers": None}, "status": {},
    }
    end = bookmark_object("v1", "Namespace", 7, initial_events_end=True)
    assert end["metadata"] == {"resourceVersion": "7", "annotations": {"k8s.io/initial-events-end": "true"}}


def _change(kind: str, obj: dict, prev: dict | None, rv: int = 9) -> Change:
    return Change(rv, "pods", kind, obj, prev)


@pytest.mark.parametrize("kind, now_labels, before_labels, expected", [
    ("ADDED", {"app": "web"}, None, "ADDED"),
    ("ADDED", {"app": "db"}, None, None),
    ("MODIFIED", {"app": "web"}, {"app": "web"}, "MODIFIED"),
    ("MODIFIED", {"app": "web"}, {"app": "db"}, "ADDED"),
    ("MODIFIED", {"app": "db"}, {"app": "web"}, "DELETED"),
    ("MODIFIED", {"app": "db"}, {"app": "db"}, None),
    ("DELETED", {"app": "web"}, {"app": "web"}, "DELETED"),
    ("DELETED", {"app": "db"}, {"app": "db"}, None),
])
def test_selector_rule_of_the_cacher(kind: str, now_labels: dict, before_labels: dict | None, expected: str | None) -> None:
    now = pod("p", **now_labels)
    before = pod("p", **before_labels) if before_labels is not None else None
    result = transform(_change(kind, now, before), lambda o: o["metadata"].get("labels", {}).get("app") == "web")
    assert (result[0] if result else None) == expected
    if expected == "DELETED":
        assert result[1]["metadata"]["labels"] == before_labels and result[1]["metadata"]["resourceVersion"] == "9"


def test_bookmark_schedule_and_default_timeout() -> None:
    assert next_bookmark_at(100.0, 5.0, 200.0) == 105.0
    assert next_bookmark_at(100.0, 5.0, 104.0) == 102.0, "one bookmark 2 s before the deadline"
    assert next_bookmark_at(100.0, 5.0, 101.5) is None
    timeouts = [default_timeout_s(300.0, random.Random(seed)) for seed in range(50)]
    assert all(300.0 <= t < 600.0 for t in timeouts) and len(set(timeouts)) > 1


def test_watch_without_rv_starts_with_the_current_objects_then_streams_changes() -> None:
    store = SimulatedStore(Clock())
    store.create("pods", pod("a"))
    store.create("pods", pod("b"))
    store.during_waits.append(lambda s: s.create("pods", pod("c")))
    store.during_waits.append(lambda s: s.create("namespaces", {"metadata": {"name": "x"}}))
    why, events = run(store, WatchOptions("", timeout_s=10))
    assert why == "timeout"
    assert names(events) == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]
    assert events[0][1]["metadata"]["resourceVersion"] == "1" and events[2][1]["metadata"]["resourceVersion"] == "3"


def test_watch_from_an_rv_sends_only_later_changes_through_the_selector() -> None:
    store = SimulatedStore(Clock())
    store.create("pods", pod("a", app="web"))  # 1
    store.create("pods", pod("b", app="db"))  # 2
    store.update("pods", pod("a", app="web", v="2"))  # 3
    store.update("pods", pod("b", app="web"))  # 4: starts matching
    store.update("pods", pod("a", app="db"))  # 5: stops matching
    store.delete("pods", "shop", "b")  # 6
    why, events = run(store, WatchOptions("2", timeout_s=1), matches=lambda o: o["metadata"]["labels"]["app"] == "web")
    assert names(events) == [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a"), ("DELETED", "b")]
    assert [o["metadata"]["resourceVersion"] for _, o in events] == ["3", "4", "5", "6"]
    assert events[2][1]["metadata"]["labels"] == {"app": "web", "v": "2"}, "DELETED carries the last matching content"


def test_too_old_rv_is_one_error_event_with_a_410_status() -> None:
    store = SimulatedStore(Clock())
    store.create("pods", pod("a"))
    store.compact()
    why, events = run(store, WatchOptions("1", timeout_s=10))
    assert why == "error 410"
    assert events == [("ERROR", {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                 "message": "too old resource version: 1 (2)", "reason": "Expired", "code": 410})]


def test_future_rv_waits_3_s_then_is_an_error_504() -> None:
    clock = Clock()
    store = SimulatedStore(clock)
    start = clock.now
    why, events = run(store, WatchOptions("5", timeout_s=60))
    assert why == "error 504" and events[0][1]["reason"] == "Timeout" and clock.now - start == pytest.approx(3.0, abs=0.2)
    ok_store = SimulatedStore(Clock())
    ok_store.during_waits.append(lambda s: s.create("pods", pod("a")))
    why, events = run(ok_store, WatchOptions("1", timeout_s=1))
    assert why == "timeout" and events == [], "the RV appeared in time; nothing after it yet"


def test_bookmarks_every_interval_and_before_the_deadline_carry_the_current_rv() -> None:
    store = SimulatedStore(Clock())
    store.create("pods", pod("a"))
    store.during_waits += [lambda s: None, lambda s: s.create("namespaces", {"metadata": {"name": "x"}})]
    why, events = run(store, WatchOptions("1", allow_bookmarks=True, timeout_s=11), bookmark_interval_s=4)
    assert why == "timeout"
    assert [kind for kind, _ in events] == ["BOOKMARK", "BOOKMARK", "BOOKMARK"]  # at 4 s, 8 s and 9 s (deadline - 2)
    assert [o["metadata"]["resourceVersion"] for _, o in events] == ["2", "2", "2"], "other resources' writes move bookmarks on"
    _, quiet = run(SimulatedStore(Clock()), WatchOptions("0", allow_bookmarks=False, timeout_s=11), bookmark_interval_s=4)
    assert quiet == []


def test_send_initial_events_ends_with_an_annotated_bookmark() -> None:
    store = SimulatedStore(Clock())
    store.create("pods", pod("a"))
    store.create("pods", pod("b"))
    _, events = run(store, WatchOptions("", allow_bookmarks=True, timeout_s=1, send_initial_events=True))
    assert names(events)[:2] == [("ADDED", "a"), ("ADDED", "b")]
    assert events[2] == ("BOOKMARK", bookmark_object("v1", "Pod", 2, initial_events_end=True))
    _, none = run(store, WatchOptions("", allow_bookmarks=True, timeout_s=1, send_initial_events=False))
    assert none == []


def test_close_watches_client_gone_and_shutdown_end_a_stream() -> None:
    store = SimulatedStore(Clock())
    store.during_waits.append(lambda s: s.close_watches())
    assert run(store, WatchOptions("0", timeout_s=60))[0] == "closed"
    assert run(SimulatedStore(Clock()), WatchOptions("0", timeout_s=60), client_gone=lambda: True)[0] == "client gone"
    stopping = SimulatedStore(Clock())
    stopping.during_waits.append(lambda s: s.stop())
    assert run(stopping, WatchOptions("0", timeout_s=60))[0] == "server stopping"


def test_event_watch_renders_each_object_and_skips_other_resources() -> None:
    store = SimulatedStore(Clock())
    core = {"kind": "Event", "apiVersion": "v1", "metadata": {"name": "e", "namespace": "shop"}, "involvedObject": {"name": "web"},
            "message": "hello", "eventTime": "2026-01-01T00:00:00.000000Z", "reportingComponent": "c", "reportingInstance": "i"}
    store.during_waits.append(lambda s: (s.create("pods", pod("a")), s.create("events", core)))
    _, events = run(store, WatchOptions("0", timeout_s=5), resource="events", render=core_to_v1)
    assert [(kind, o["apiVersion"], o["note"]) for kind, o in events] == [("ADDED", "events.k8s.io/v1", "hello")]
