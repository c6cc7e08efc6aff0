"""Posts pod Events to the API from a thread of its own: raising one never waits on the API,
and a failed post costs only that Event."""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Protocol

from agent.model.health import HealthRecorder
from agent.model.pod_events import REPORTING_CONTROLLER, Create, EventAggregator, PodEvent, UpdateSeries, cut_note

log = logging.getLogger(__name__)

QUEUE_MAX = 1000
"""Events waiting to be posted; beyond it new ones are dropped (and counted)."""
FLUSH_EVERY_S = 5.0
REPORTING_INSTANCE_MAX_CHARS = 128
_TICK = PodEvent("", "", "", "", "", "")
"""What the loop gets when nothing came for FLUSH_EVERY_S: time to send held series updates."""


class EventSink(Protocol):
    """Where Events go: the Kubernetes API (events.k8s.io/v1)."""

    def create_event(self, namespace: str, body: dict) -> None: ...

    def patch_event(self, namespace: str, name: str, patch: dict) -> None: ...


def micro_time(at_s: float) -> str:
    """A MicroTime, as the API writes it."""
    return datetime.fromtimestamp(at_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_body(create: Create, node: str) -> dict:
    event = create.event
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": create.name, "namespace": event.namespace},
        "eventTime": micro_time(create.at_s),
        "reportingController": REPORTING_CONTROLLER,
        "reportingInstance": node[:REPORTING_INSTANCE_MAX_CHARS],
        "action": event.action,
        "reason": event.reason,
        "note": cut_note(event.note),
        "type": event.type,
        "regarding": {"apiVersion": "v1", "kind": "Pod", "namespace": event.namespace, "name": event.pod, "uid": event.uid},
    }


def series_patch(update: UpdateSeries) -> dict:
    return {"series": {"count": update.count, "lastObservedTime": micro_time(update.last_observed_s)}}


class EventRecorder:
    def __init__(
        self,
        sink: Callable[[], EventSink | None],
        node: str,
        health: HealthRecorder,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`sink` gives the API client, or None while there is none (the API is off)."""
        self._sink = sink
        self._node = node
        self._health = health
        self._clock = clock
        self._queue: queue.Queue[PodEvent | None] = queue.Queue(QUEUE_MAX)
        self._aggregator = EventAggregator()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="podbw-events", daemon=True)

    def record(self, event: PodEvent) -> None:
        """Queue an Event; never blocks."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._health.pod_event("dropped")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 1.0) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass  # the thread is a daemon; it ends with the process
        self._thread.join(timeout_s)

    def _run(self) -> None:
        next_flush_s = self._clock() + FLUSH_EVERY_S
        while True:
            try:
                event: PodEvent | None = self._queue.get(timeout=FLUSH_EVERY_S)
            except queue.Empty:
                event = _TICK
            if event is None:
                return
            now_s = self._clock()
            if event is not _TICK:
                dropped_before = self._aggregator.dropped
                self._send(self._aggregator.record(event, now_s))
                if self._aggregator.dropped > dropped_before:
                    self._health.pod_event("rate_limited")
            if now_s >= next_flush_s:
                for update in self._aggregator.flush(now_s):
                    self._send(update)
                next_flush_s = now_s + FLUSH_EVERY_S

    def _send(self, what: Create | UpdateSeries | None) -> None:
        if what is None:
            return
        sink = self._sink()
        if sink is None:
            self._health.pod_event("no_api")
            return
        try:
            if isinstance(what, Create):
                sink.create_event(what.event.namespace, event_body(what, self._node))
            else:
                sink.patch_event(what.event.namespace, what.name, series_patch(what))
        except Exception as err:  # the API's problem, never shaping's
            self._health.pod_event("error")
            if not self._failing:
                log.warning("posting pod Events failed: %s; shaping goes on", err)
                self._failing = True
            return
        if self._failing:
            log.info("posting pod Events works again")
            self._failing = False
        self._health.pod_event("ok")
