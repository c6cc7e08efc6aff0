"""The stand-in's object store: what etcd plus the apiserver's watch cache give a real cluster.

One resourceVersion counter for everything (like etcd's revision): every write bumps it, stamps
the object's metadata.resourceVersion, and appends a Change to a bounded history that watches
read from. A watch may resume from any RV at or after `floor_rv`; older ones are "too old"
(410). The floor moves when history is trimmed, on `compact()` (failure injection), and on
load: after a restart the history is empty, so only the RV the store was saved at is still
valid, as with a restarted apiserver's watch cache.

Objects are dicts that are never mutated once stored (a write stores a new dict), so readers
may serialize them without holding the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator

from agent.lab.kube_status import expired, too_old_watch

Key = tuple[str, str, str]
"""(resource, namespace, name); namespace is "" for cluster-scoped objects."""

HISTORY_LIMIT = 10_000
STORE_VERSION = 1


@dataclass(frozen=True)
class Change:
    rv: int
    resource: str
    type: str
    """ADDED, MODIFIED or DELETED."""
    obj: dict[str, Any]
    """The object after the change (for DELETED, its last state stamped with this change's RV)."""
    prev: dict[str, Any] | None


def key_of(resource: str, obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata", {})
    return resource, meta.get("namespace", ""), meta.get("name", "")


def with_resource_version(obj: dict[str, Any], rv: int) -> dict[str, Any]:
    return {**obj, "metadata": {**obj.get("metadata", {}), "resourceVersion": str(rv)}}


def _without_rv(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "metadata": {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}}


class KubeStore:
    def __init__(self, history_limit: int = HISTORY_LIMIT) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._objects: dict[Key, dict[str, Any]] = {}
        self._history: deque[Change] = deque()
        self._history_limit = history_limit
        self.rv = 0
        self.floor_rv = 0
        """New requests (lists at an RV, watches) need an RV at least this."""
        self.trimmed_rv = 0
        """Open watches need this: the history after it is all kept (compaction keeps it)."""
        self.close_generation = 0
        """Bumped to end every open watch (failure injection)."""
        self.stopping = False
        self.dirty = False
        """True when a write happened since the last save."""

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store across several reads and writes (they then form one consistent step)."""
        with self._cond:
            yield

    # ---- reads ----------------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._cond:
            return self._objects.get((resource, namespace, name))

    def list(self, resource: str, namespace: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """The objects of resource (in one namespace, or all), sorted by key, and the current RV."""
        with self._cond:
            return self._select(self._objects, resource, namespace), self.rv

    def list_at(self, resource: str, namespace: str | None, rv: int) -> list[dict[str, Any]]:
        """The objects as they were at rv (for continue tokens and resourceVersionMatch=Exact)."""
        with self._cond:
            if rv < self.floor_rv:
                raise expired("The resourceVersion for the provided list is too old.")
            objects = dict(self._objects)
            for change in reversed(self._history):
                if change.rv <= rv:
                    break
                key = key_of(change.resource, change.obj)
                if change.prev is None:
                    objects.pop(key, None)
                else:
                    objects[key] = change.prev
            return self._select(objects, resource, namespace)

    @staticmethod
    def _select(objects: dict[Key, dict[str, Any]], resource: str, namespace: str | None) -> list[dict[str, Any]]:
        return [obj for key, obj in sorted(objects.items()) if key[0] == resource and (namespace is None or key[1] == namespace)]

    def changes_since(self, rv: int, streaming: bool = False) -> tuple[list[Change], int]:
        """Every change after rv and the current RV; raises ApiError 410 when rv is too old: for a
        new watch, older than the floor; for one already streaming, older than the history kept
        (compaction does not end open watches, as etcd's does not end the watch cache's)."""
        with self._cond:
            floor = self.trimmed_rv if streaming else self.floor_rv
            if rv < floor:
                raise too_old_watch(rv, floor)
            return [c for c in self._history if c.rv > rv], self.rv

    def wait(self, after_rv: int, generation: int, timeout_s: float) -> None:
        """Block until a change after after_rv, a close-watches, shutdown, or timeout_s."""
        with self._cond:
            self._cond.wait_for(
                lambda: self.rv > after_rv or self.close_generation != generation or self.stopping,
                timeout=max(0.0, timeout_s),
            )

    # ---- writes ---------------------------------------------------------------------------

    def create(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            key = key_of(resource, obj)
            if key in self._objects:
                raise KeyError(key)
            return self._write(resource, "ADDED", obj, None)

    def update(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store obj in place of the object with its key; a change that changes nothing is no write."""
        with self._cond:
            key = key_of(resource, obj)
            prev = self._objects[key]
            if _without_rv(prev) == _without_rv(obj):
                return prev
            return self._write(resource, "MODIFIED", obj, prev)

    def delete(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        with self._cond:
            prev = self._objects[(resource, namespace, name)]
            return self._write(resource, "DELETED", prev, prev)

    def _write(self, resource: str, kind: str, obj: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, Any]:
        self.rv += 1
        stored = with_resource_version(obj, self.rv)
        key = key_of(resource, stored)
        if kind == "DELETED":
            del self._objects[key]
        else:
            self._objects[key] = stored
        if len(self._history) >= self._history_limit:
            self.trimmed_rv = self._history.popleft().rv
            self.floor_rv = max(self.floor_rv, self.trimmed_rv)
        self._history.append(Change(self.rv, resource, kind, stored, prev))
        self.dirty = True
        self._cond.notify_all()
        return stored

    # ---- failure injection and life cycle -------------------------------------------------

    def compact(self) -> int:
        """Make every RV handed out so far too old; returns the new (only valid) RV."""
        with self._cond:
            self.rv += 1  # a revision of its own, so a relist gets an RV a watch can start from
            self.floor_rv = self.rv
            self.dirty = True
            self._cond.notify_all()
            return self.rv

    def close_watches(self) -> None:
        with self._cond:
            self.close_generation += 1
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.stopping = True
            self._cond.notify_all()

    # ---- persistence ----------------------------------------------------------------------

    def save(self, path: str) -> None:
        with self._cond:
            document = {
                "version": STORE_VERSION,
                "resourceVersion": self.rv,
                "objects": [{"resource": k[0], "object": v} for k, v in sorted(self._objects.items())],
            }
            self.dirty = False
        directory = os.path.dirname(path)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(document, f, separators=(",", ":"))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str, history_limit: int = HISTORY_LIMIT) -> KubeStore:
        """The store saved at path (a new, empty one when there is none); raises ValueError if unreadable."""
        store = cls(history_limit)
        try:
            with open(path, encoding="utf-8") as f:
                document = json.load(f)
        except FileNotFoundError:
            return store
        except (OSError, ValueError) as e:
            raise ValueError(f"API store {path}: {e}") from None
        try:
            store.rv = int(document["resourceVersion"])
            for entry in document["objects"]:
                obj = entry["object"]
                store._objects[key_of(str(entry["resource"]), obj)] = obj
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"API store {path}: malformed: {e!r}") from None
        store.floor_rv = store.trimmed_rv = store.rv
        return store
