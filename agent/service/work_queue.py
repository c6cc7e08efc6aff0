"""A coalescing queue of reconcile work: many events for one pod become one reconcile."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from agent.model.pod import Pod


@dataclass(frozen=True, slots=True)
class Work:
    pods: list[tuple[Pod, float | None]]
    """Pods to reconcile, with when discovery saw them (None for resyncs)."""
    removed: list[Pod]
    full: bool
    """Reconcile every known pod (resync or overrides change)."""


class WorkQueue:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pods: dict[str, tuple[Pod, float | None]] = {}
        self._removed: dict[str, Pod] = {}
        self._full = False
        self._closed = False

    def reconcile(self, pod: Pod, seen_at_monotonic_s: float | None = None) -> None:
        with self._cond:
            self._removed.pop(pod.sandbox_id, None)
            old = self._pods.get(pod.sandbox_id)
            seen = old[1] if old and old[1] is not None else seen_at_monotonic_s
            self._pods[pod.sandbox_id] = (pod, seen)
            self._cond.notify()

    def remove(self, pod: Pod) -> None:
        with self._cond:
            self._pods.pop(pod.sandbox_id, None)
            self._removed[pod.sandbox_id] = pod
            self._cond.notify()

    def reconcile_all(self) -> None:
        with self._cond:
            self._full = True
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout_s: float) -> Work | None:
        """The work queued so far (None on timeout or when closed)."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._closed or self._pods or self._removed or self._full, timeout_s
            ):
                return None
            if self._closed:
                return None
            work = Work(list(self._pods.values()), list(self._removed.values()), self._full)
            self._pods.clear()
            self._removed.clear()
            self._full = False
            return work
