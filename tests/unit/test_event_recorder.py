"""EventRecorder: posts from its own thread, folds repeats into a series, never blocks."""

from __future__ import annotations

import threading
import time

from agent.model.health import HealthRecorder
from agent.model.pod_events import SERIES_UPDATE_INTERVAL_S, WARNING, PodEvent
from agent.service import event_recorder
from agent.service.event_recorder import EventRecorder, event_body, micro_time

EVENT = PodEvent("shop", "web", "uid-web", "InvalidBandwidthAnnotation", WARNING, "kubernetes.io/ingress-bandwidth='10Q' is invalid")


class Sink:
    def __init__(self, fail: bool = False, block: threading.Event | None = None) -> None:
        self.created: list[tuple[str, dict]] = []
        self.patched: list[tuple[str, str, dict]] = []
        self.fail = fail
        self.block = block
        self.calls = threading.Semaphore(0)

    def create_event(self, namespace: str, body: dict) -> None:
        if self.block is not None:
            self.block.wait()
        self.calls.release()
        if self.fail:
            raise OSError("connection refused")
        self.created.append((namespace, body))

    def patch_event(self, namespace: str, name: str, patch: dict) -> None:
        self.calls.release()
        self.patched.append((namespace, name, patch))


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def started(sink, clock=None, health=None) -> EventRecorder:
    recorder = EventRecorder(lambda: sink, "node-1", health or HealthRecorder(), clock or Clock())
    recorder.start()
    return recorder


def test_an_event_is_posted_as_events_k8s_io_v1() -> None:
    sink = Sink()
    recorder = started(sink)
    recorder.record(EVENT)
    assert sink.calls.acquire(timeout=5)
    recorder.stop()
    ((namespace, body),) = sink.created
    assert namespace == "shop"
    assert body["regarding"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "shop", "name": "web", "uid": "uid-web"}
    assert (body["reportingController"], body["reportingInstance"]) == ("podbw.io/agent", "node-1")
    assert (body["reason"], body["type"], body["note"]) == (EVENT.reason, "Warning", EVENT.note)
    assert body["metadata"]["name"].startswith("web.") and body["eventTime"].endswith("Z")


def test_repeats_update_the_series_of_one_event(monkeypatch) -> None:
    monkeypatch.setattr(event_recorder, "FLUSH_EVERY_S", 0.05)
    clock, sink = Clock(), Sink()
    recorder = started(sink, clock)
    for _ in range(3):
        recorder.record(EVENT)
    assert sink.calls.acquire(timeout=5)
    clock.now += SERIES_UPDATE_INTERVAL_S
    assert sink.calls.acquire(timeout=5)  # the held repeats, flushed
    recorder.stop()
    ((_, body),) = sink.created
    ((_, name, patch),) = sink.patched
    assert name == body["metadata"]["name"]
    assert patch["series"]["count"] == 3 and patch["series"]["lastObservedTime"] == micro_time(clock.now - SERIES_UPDATE_INTERVAL_S)


def test_a_failing_api_is_counted_and_recording_never_blocks() -> None:
    health = HealthRecorder()
    release = threading.Event()
    sink = Sink(fail=True, block=release)
    recorder = started(sink, health=health)
    started_s = time.monotonic()
    for i in range(event_recorder.QUEUE_MAX + 50):  # the poster is stuck on the first one
        recorder.record(PodEvent("ns", f"p{i}", f"u{i}", "ShapingFailed", WARNING, "x"))
    assert time.monotonic() - started_s < 1.0
    release.set()
    assert sink.calls.acquire(timeout=5)
    recorder.stop()
    results = health.data().pod_events
    assert results.get("dropped", 0) >= 49 and results.get("error", 0) >= 1


def test_no_api_no_post() -> None:
    health = HealthRecorder()
    recorder = EventRecorder(lambda: None, "node-1", health, Clock())
    recorder.start()
    recorder.record(EVENT)
    deadline = time.monotonic() + 5
    while not health.data().pod_events and time.monotonic() < deadline:
        time.sleep(0.01)
    recorder.stop()
    assert health.data().pod_events == {"no_api": 1}


def test_the_body_keeps_the_api_limits() -> None:
    from agent.model.pod_events import Create

    long = PodEvent("ns", "p", "u", "r", WARNING, "n" * 5000)
    body = event_body(Create(long, "p.1", 0.0), "x" * 300)
    assert len(body["note"]) == 1024 and len(body["reportingInstance"]) == 128
