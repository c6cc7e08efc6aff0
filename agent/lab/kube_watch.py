"""One watch stream, as the apiserver's watch cache serves it (apiserver pkg/storage/cacher).

- The response is 200 with a chunked body of newline-terminated JSON events
  `{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": {...}}`.
- resourceVersion unset or "0": synthetic ADDED events for what exists now, then changes.
  resourceVersion=N: the changes after N. sendInitialEvents=true (with
  resourceVersionMatch=NotOlderThan): the ADDED events, then a BOOKMARK annotated
  `k8s.io/initial-events-end: "true"`.
- An RV older than the history kept is not an HTTP error: once authn/authz and the RV parse
  pass, the cacher answers 200 and an ERROR event holding a 410 Expired Status ("too old
  resource version: N (M)"). An RV ahead of the store's gets 3 s to appear, then an ERROR 504.
- Selectors apply to the object before and after each change: an object that stops matching is
  sent as DELETED (its previous content, the change's RV), one that starts matching as ADDED.
- With allowWatchBookmarks, a BOOKMARK (an empty object of the kind but for
  metadata.resourceVersion) every bookmark interval and 2 s before the deadline.
- The stream ends at timeoutSeconds, or at min-request-timeout × [1, 2) when unset.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from agent.lab.kube_status import ApiError, too_large_resource_version
from agent.lab.kube_store import Change, KubeStore

FUTURE_RV_WAIT_S = 3.0
CLIENT_CHECK_INTERVAL_S = 1.0
"""How often an idle stream looks whether its client hung up (then it frees its thread)."""
PRE_TIMEOUT_BOOKMARK_S = 2.0
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass(frozen=True)
class WatchOptions:
    resource_version: str = ""
    allow_bookmarks: bool = False
    timeout_s: float | None = None
    send_initial_events: bool | None = None


def encode_event(kind: str, obj: dict[str, Any]) -> bytes:
    """One watch event as the JSON stream frames it: a compact JSON object and a newline."""
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def http_chunk(data: bytes) -> bytes:
    """data as one HTTP/1.1 chunk (the stream ends with http_chunk(b""))."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


_EMPTY_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("v1", "Pod"): {"spec": {"containers": None}, "status": {}},
    ("v1", "Namespace"): {"spec": {}, "status": {}},
    ("v1", "Event"): {"involvedObject": {}, "source": {}, "firstTimestamp": None, "lastTimestamp": None,
                      "eventTime": None, "reportingComponent": "", "reportingInstance": ""},
    ("events.k8s.io/v1", "Event"): {"eventTime": None, "regarding": {}, "deprecatedSource": {},
                                    "deprecatedFirstTimestamp": None, "deprecatedLastTimestamp": None},
}


def bookmark_object(api_version: str, kind: str, rv: int, initial_events_end: bool = False) -> dict[str, Any]:
    """An object of the watched kind with nothing set but its resourceVersion: the Go zero value
    serialized (a Pod's `spec.containers` is null), which is what real bookmarks look like."""
    metadata: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_events_end:
        metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
    return {"kind": kind, "apiVersion": api_version, "metadata": metadata, **_EMPTY_BODIES.get((api_version, kind), {})}


def transform(change: Change, matches: Callable[[dict[str, Any]], bool]) -> tuple[str, dict[str, Any]] | None:
    """The event a watcher with this filter sees for change, or None (the cacher's rule)."""
    now_passes = change.type != "DELETED" and matches(change.obj)
    before_passes = change.prev is not None and matches(change.prev)
    if now_passes and not before_passes:
        return "ADDED", change.obj
    if now_passes and before_passes:
        return "MODIFIED", change.obj
    if before_passes:
        assert change.prev is not None
        prev = change.prev
        return "DELETED", {**prev, "metadata": {**prev.get("metadata", {}), "resourceVersion": str(change.rv)}}
    return None


def default_timeout_s(min_request_timeout_s: float, rng: random.Random | None = None) -> float:
    """apiserver: a watch without timeoutSeconds lasts min-request-timeout × [1, 2)."""
    return min_request_timeout_s * (1.0 + (rng or random).random())


def next_bookmark_at(now: float, interval_s: float, deadline: float) -> float | None:
    """When to send the next bookmark: every interval, and once 2 s before the deadline."""
    at = min(now + interval_s, deadline - PRE_TIMEOUT_BOOKMARK_S)
    return at if at > now else None


class WatchStream:
    """Streams changes of one resource to one client, through write(bytes) (an encoded event)."""

    def __init__(
        self,
        store: KubeStore,
        resource: str,
        matches: Callable[[dict[str, Any]], bool],
        render: Callable[[dict[str, Any]], dict[str, Any]],
        bookmark_kind: tuple[str, str],
        options: WatchOptions,
        bookmark_interval_s: float,
        min_request_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.resource = resource
        self.matches = matches
        self.render = render
        self.bookmark_kind = bookmark_kind
        self.options = options
        self.bookmark_interval_s = bookmark_interval_s
        self.min_request_timeout_s = min_request_timeout_s
        self.clock = clock
        self.events_sent = 0

    def run(self, write: Callable[[bytes], None], client_gone: Callable[[], bool] = lambda: False) -> str:
        """Stream until the deadline, a close, the client hanging up, or an error; returns why it ended."""
        start = self.clock()
        timeout_s = self.options.timeout_s if self.options.timeout_s is not None else default_timeout_s(self.min_request_timeout_s)
        deadline = start + timeout_s
        generation = self.store.close_generation

        def send(kind: str, obj: dict[str, Any]) -> None:
            write(encode_event(kind, obj))
            self.events_sent += 1

        try:
            cursor = self._start(send, deadline)
        except ApiError as e:
            send("ERROR", e.status())
            return f"error {e.code}"
        next_bookmark = next_bookmark_at(self.clock(), self.bookmark_interval_s, deadline) if self.options.allow_bookmarks else None
        while True:
            try:
                changes, current = self.store.changes_since(cursor, streaming=True)
            except ApiError as e:
                send("ERROR", e.status())
                return f"error {e.code}"
            for change in changes:
                if change.resource != self.resource:
                    continue
                event = transform(change, self.matches)
                if event is not None:
                    send(event[0], self.render(event[1]))
            cursor = current
            now = self.clock()
            if next_bookmark is not None and now >= next_bookmark:
                send("BOOKMARK", bookmark_object(*self.bookmark_kind, cursor))
                next_bookmark = next_bookmark_at(now, self.bookmark_interval_s, deadline)
            if now >= deadline:
                return "timeout"
            if self.store.close_generation != generation:
                return "closed"
            if self.store.stopping:
                return "server stopping"
            if client_gone():
                return "client gone"
            wake = deadline if next_bookmark is None else min(deadline, next_bookmark)
            self.store.wait(cursor, generation, min(wake - now, CLIENT_CHECK_INTERVAL_S))

    def _start(self, send: Callable[[str, dict[str, Any]], None], deadline: float) -> int:
        """Send the initial events the options ask for; returns the RV to stream changes after."""
        rv_text = self.options.resource_version
        wanted = int(rv_text) if rv_text not in ("", "0") else 0
        if wanted > self.store.rv:
            self._wait_for(wanted, min(deadline, self.clock() + FUTURE_RV_WAIT_S))
        initial = self.options.send_initial_events
        if initial is None and rv_text not in ("", "0"):
            self.store.changes_since(wanted)  # raises 410 for a too-old RV before anything is sent
            return wanted
        if initial is False:
            return self.store.rv
        with self.store.locked():
            objects, cursor = self.store.list(self.resource)
        for obj in objects:
            if self.matches(obj):
                send("ADDED", self.render(obj))
        if initial:
            send("BOOKMARK", bookmark_object(*self.bookmark_kind, cursor, initial_events_end=True))
        return cursor

    def _wait_for(self, wanted: int, until: float) -> None:
        while self.store.rv < wanted:
            remaining = until - self.clock()
            if remaining <= 0:
                raise too_large_resource_version(wanted, self.store.rv)
            self.store.wait(self.store.rv, self.store.close_generation, min(remaining, 0.1))
