"""A reflector, as client-go's: list, then watch from the list's resourceVersion; keep the objects
seen, and hand their changes to a handler as added / updated / deleted records, never as raw
watch events.

- A watch the server ends (its timeout) resumes from the last resourceVersion seen; bookmarks
  move that version on while nothing of ours changes.
- 410 Gone (as an HTTP status or an ERROR event): relist at once, diff against what is known
  (objects deleted meanwhile become deletes), and watch from the new list.
- Any other error: report the source down, wait a backoff with jitter, relist. The first good
  list reports it up again; the backoff starts over once a watch has delivered something.

`step()` does one list or one watch and says how long to wait before the next: the state
machine runs synchronously on a scripted source in unit tests; `run()` loops it on a thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, Protocol, Sequence, TypeVar

from agent.kube.errors import KubeError, KubeGone
from agent.model.backoff import Backoff
from agent.model.snapshot_diff import snapshot_diff

log = logging.getLogger(__name__)

ADDED = "added"
UPDATED = "updated"
DELETED = "deleted"

MIN_WATCH_TIMEOUT_S = 300
"""A watch asks the server to end it after 5-10 min (client-go's spread), so watches of many
agents don't all reconnect at once."""


class Keyed(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def resource_version(self) -> str: ...


T = TypeVar("T", bound=Keyed)


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    items: tuple[T, ...]
    resource_version: str
    """The list's own resourceVersion: the watch starts there."""


@dataclass(frozen=True, slots=True)
class WatchEvent(Generic[T]):
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK (the API's words)."""
    obj: T | None
    """None for BOOKMARK, which carries only a resourceVersion."""
    resource_version: str


class Source(Protocol[T]):
    what: str

    def list(self) -> Listing[T]: ...

    def watch(self, resource_version: str, timeout_s: int) -> Iterator[WatchEvent[T]]: ...


@dataclass(frozen=True, slots=True)
class Delta(Generic[T]):
    kind: str
    """ADDED, UPDATED or DELETED."""
    old: T | None
    """None when ADDED."""
    new: T | None
    """None when DELETED."""

    @property
    def obj(self) -> T:
        obj = self.new if self.new is not None else self.old
        assert obj is not None
        return obj


Handler = Callable[[Sequence[Delta[T]], float], None]
"""Called with each batch of changes (a relist's diff, or one watch event) and when the batch was
received (monotonic seconds)."""
Health = Callable[[bool, str], None]
"""Called with (up, reason) after every list or failure."""


class Reflector(Generic[T]):
    def __init__(
        self,
        source: Source[T],
        handler: Handler[T],
        health: Health = lambda up, reason: None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        watch_timeout_s: Callable[[], int] = lambda: random.randint(MIN_WATCH_TIMEOUT_S, 2 * MIN_WATCH_TIMEOUT_S),
    ) -> None:
        self._source = source
        self._handler = handler
        self._health = health
        self._backoff = backoff or Backoff(initial_s=0.5, max_s=10.0)
        self._clock = clock
        self._watch_timeout_s = watch_timeout_s
        self._known: dict[str, T] = {}
        self.resource_version: str | None = None
        """Where the next watch starts; None: relist first."""

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                delay_s = self.step(stop)
            except Exception:  # a handler's bug must not end the watch for good
                log.exception("%s: reflector step failed", self._source.what)
                # What the handler missed is handed over again by the relist.
                self.resource_version = None
                self._known.clear()
                delay_s = self._backoff.next_delay_s()
            if delay_s > 0:
                stop.wait(delay_s)

    def step(self, stop: threading.Event | None = None) -> float:
        """One list, or one watch until it ends; returns the seconds to wait before the next step."""
        if self.resource_version is None:
            return self._list(stop)
        return self._watch(stop)

    def _list(self, stop: threading.Event | None) -> float:
        try:
            listing = self._source.list()
        except KubeError as err:
            return 0.0 if stop is not None and stop.is_set() else self._failed(err)
        seen = self._clock()
        fresh = {obj.key: obj for obj in listing.items}
        gone, came = snapshot_diff(self._known, fresh)
        deltas: list[Delta[T]] = [Delta(DELETED, old, None) for old in gone]
        deltas += [Delta(ADDED if old is None else UPDATED, old, obj) for old, obj in came]
        self._known = fresh
        self.resource_version = listing.resource_version
        self._health(True, "")
        if deltas:
            self._handler(deltas, seen)
        return 0.0

    def _watch(self, stop: threading.Event | None) -> float:
        assert self.resource_version is not None
        delivered = False
        try:
            for event in self._source.watch(self.resource_version, self._watch_timeout_s()):
                self._apply(event)
                if not delivered:
                    delivered = True
                    self._backoff.reset()
                if stop is not None and stop.is_set():
                    return 0.0
        except KubeGone as err:
            log.info("%s: %s; listing again", self._source.what, err)
            self.resource_version = None
            return 0.0
        except KubeError as err:
            self.resource_version = None
            if stop is not None and stop.is_set():
                return 0.0  # stopping closed the connection: no failure to report
            return self._failed(err)
        return 0.0  # the server ended the watch: resume from the last version seen

    def _apply(self, event: WatchEvent[T]) -> None:
        if event.type == "BOOKMARK" or event.obj is None:
            if event.resource_version:
                self.resource_version = event.resource_version
            return
        seen = self._clock()
        obj = event.obj
        old = self._known.get(obj.key)
        delta: Delta[T] | None
        if event.type == "DELETED":
            delta = Delta(DELETED, old, None) if self._known.pop(obj.key, None) is not None else None
        else:
            self._known[obj.key] = obj
            delta = Delta(ADDED, None, obj) if old is None else Delta(UPDATED, old, obj) if old != obj else None
        if event.resource_version:
            self.resource_version = event.resource_version
        if delta is not None:
            self._handler([delta], seen)

    def _failed(self, err: KubeError) -> float:
        self._health(False, str(err))
        return self._backoff.next_delay_s()
