"""PodRegistry: the set of pods discovery knows, with change notification to subscribers."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from agent.model.pod import Pod

log = logging.getLogger(__name__)

ADDED = "added"
UPDATED = "updated"
REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class PodEvent:
    kind: str
    """ADDED, UPDATED or REMOVED."""
    pod: Pod
    seen_at_monotonic_s: float
    """When discovery first saw the change; reconcile latency is measured from here."""


Subscriber = Callable[[PodEvent], None]


class PodRegistry:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._pods: dict[str, Pod] = {}
        self._subscribers: list[Subscriber] = []
        self._clock = clock

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

    def pods(self) -> list[Pod]:
        with self._lock:
            return list(self._pods.values())

    def get(self, sandbox_id: str) -> Pod | None:
        with self._lock:
            return self._pods.get(sandbox_id)

    def by_netns(self, netns_path: str) -> Pod | None:
        with self._lock:
            for pod in self._pods.values():
                if pod.netns_path == netns_path:
                    return pod
        return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._pods)

    def upsert(self, pod: Pod, seen_at_monotonic_s: float | None = None) -> None:
        seen = self._clock() if seen_at_monotonic_s is None else seen_at_monotonic_s
        with self._lock:
            old = self._pods.get(pod.sandbox_id)
            if old == pod:
                return
            self._pods[pod.sandbox_id] = pod
            event = PodEvent(ADDED if old is None else UPDATED, pod, seen)
        self._notify([event])

    def remove(self, sandbox_id: str) -> None:
        with self._lock:
            pod = self._pods.pop(sandbox_id, None)
        if pod is not None:
            self._notify([PodEvent(REMOVED, pod, self._clock())])

    def replace_all(self, pods: Iterable[Pod], seen_at_monotonic_s: float | None = None) -> None:
        """Make the registry equal `pods` (a full resync), notifying only the differences."""
        seen = self._clock() if seen_at_monotonic_s is None else seen_at_monotonic_s
        fresh = {pod.sandbox_id: pod for pod in pods}
        events = []
        with self._lock:
            for sandbox_id, pod in self._pods.items():
                if sandbox_id not in fresh:
                    events.append(PodEvent(REMOVED, pod, seen))
            for sandbox_id, pod in fresh.items():
                old = self._pods.get(sandbox_id)
                if old is None:
                    events.append(PodEvent(ADDED, pod, seen))
                elif old != pod:
                    events.append(PodEvent(UPDATED, pod, seen))
            self._pods = fresh
        self._notify(events)

    def _notify(self, events: list[PodEvent]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for event in events:
            for subscriber in subscribers:
                try:
                    subscriber(event)
                except Exception:  # a faulty subscriber must not stop discovery
                    log.exception("pod subscriber failed on %s %s", event.kind, event.pod.display)
