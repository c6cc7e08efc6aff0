"""PodRegistry: the set of pods discovery knows, with change notification to subscribers.

Discovery hands it pods as their source reports them; with a `resolve` function the registry
holds and publishes each with its annotations in force (agent.discovery.resolver), and
`reresolve()` re-applies it when something else than the source changed (an API watch event, a
Namespace's defaults, the annotations file): pods whose annotations in force changed become
UPDATED events at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from agent.model.pod import Pod
from agent.model.snapshot_diff import snapshot_diff

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
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, resolve: Callable[[Pod], Pod] | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._changing = threading.RLock()
        """Held by each change from its computation to its notification, so subscribers get the
        events of concurrent changes (a CRI resync, an API event) in the order they were made."""
        self._pods: dict[str, Pod] = {}
        """sandbox id -> the pod as published (resolved)."""
        self._reported: dict[str, Pod] = {}
        """sandbox id -> the pod as its source reported it."""
        self._subscribers: list[Subscriber] = []
        self._clock = clock
        self._resolve = resolve or (lambda pod: pod)

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
        with self._changing:
            seen = self._clock() if seen_at_monotonic_s is None else seen_at_monotonic_s
            with self._lock:
                self._reported[pod.sandbox_id] = pod
                old = self._pods.get(pod.sandbox_id)
                pod = self._resolve(pod)
                if old == pod:
                    return
                self._pods[pod.sandbox_id] = pod
                event = PodEvent(ADDED if old is None else UPDATED, pod, seen)
            self._notify([event])

    def remove(self, sandbox_id: str) -> None:
        with self._changing:
            with self._lock:
                pod = self._pods.pop(sandbox_id, None)
                self._reported.pop(sandbox_id, None)
            if pod is not None:
                self._notify([PodEvent(REMOVED, pod, self._clock())])

    def replace_all(self, pods: Iterable[Pod], seen_at_monotonic_s: float | None = None) -> None:
        """Make the registry equal `pods` (a full resync), notifying only the differences."""
        with self._changing:
            seen = self._clock() if seen_at_monotonic_s is None else seen_at_monotonic_s
            reported = {pod.sandbox_id: pod for pod in pods}
            with self._lock:
                fresh = {sandbox_id: self._resolve(pod) for sandbox_id, pod in reported.items()}
                self._reported = reported
                gone, came = snapshot_diff(self._pods, fresh)
                events = [PodEvent(REMOVED, pod, seen) for pod in gone]
                events += [PodEvent(ADDED if old is None else UPDATED, pod, seen) for old, pod in came]
                self._pods = fresh
            self._notify(events)

    def reresolve(self, match: Callable[[Pod], bool] | None = None, seen_at_monotonic_s: float | None = None) -> int:
        """Resolve the pods `match` selects (as their source reported them; all when None) again,
        notifying those whose result changed as UPDATED. Returns how many changed."""
        with self._changing:
            seen = self._clock() if seen_at_monotonic_s is None else seen_at_monotonic_s
            events = []
            with self._lock:
                for sandbox_id, reported in self._reported.items():
                    if match is not None and not match(reported):
                        continue
                    pod = self._resolve(reported)
                    if self._pods.get(sandbox_id) != pod:
                        self._pods[sandbox_id] = pod
                        events.append(PodEvent(UPDATED, pod, seen))
            self._notify(events)
            return len(events)

    def _notify(self, events: list[PodEvent]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for event in events:
            for subscriber in subscribers:
                try:
                    subscriber(event)
                except Exception:  # a faulty subscriber must not stop discovery
                    log.exception("pod subscriber failed on %s %s", event.kind, event.pod.display)
