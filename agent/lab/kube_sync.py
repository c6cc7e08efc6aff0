"""Keeps the API stand-in's pods and namespaces in step with the lab's state file, which the lab
rewrites atomically on every add and delete (the same file the CRI stand-in serves); inotify
on its directory wakes the follower at once, at no cost while nothing changes.

A pod appears (ADDED) when the lab adds it and disappears (DELETED) when the lab deletes it; the
same namespace/name with a new UID is a new pod. Annotations and labels changed through the API
are kept across syncs: the lab's values are those at creation, as CRI reports them. Namespaces
are created (ADDED, before their first pod) as pods need them, and never removed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

from agent.discovery.inotify import IN_CLOSE_WRITE, IN_DELETE, IN_MOVED_TO, Inotify
from agent.lab.kube_objects import INITIAL_NAMESPACES, build_namespace, build_pod, host_ip, without_api_owned
from agent.lab.kube_store import KubeStore
from agent.lab.state import LabPod, LabState

log = logging.getLogger(__name__)

FALLBACK_POLL_INTERVAL_S = 1.0
"""inotify wakes the follower on each new state file; this only catches a missed event."""
NO_INOTIFY_POLL_INTERVAL_S = 0.05
_NEVER = object()


def sync_pods(
    store: KubeStore,
    pods: list[LabPod],
    node_name: str,
    node_ip: str,
    runtime: str,
    now_s: float,
    applied: dict[str, tuple[LabPod, str, str, str]] | None = None,
) -> None:
    """Make the store's pods (and namespaces) those of the lab, as one step. applied, kept by
    the caller between calls, remembers each lab record already in the store: an unchanged pod
    then costs one record comparison instead of building and comparing its object."""
    applied = {} if applied is None else applied
    wanted = {(p.namespace, p.name): p for p in pods}
    with store.locked():
        for namespace in sorted({ns for ns, _ in wanted} | set(INITIAL_NAMESPACES)):
            if store.get("namespaces", "", namespace) is None:
                store.create("namespaces", build_namespace(namespace, now_s))
        current, _ = store.list("pods")
        for have in current:
            meta = have["metadata"]
            pod = wanted.get((meta["namespace"], meta["name"]))
            if pod is None or pod.uid != meta.get("uid"):
                store.delete("pods", meta["namespace"], meta["name"])
        for (namespace, name), pod in wanted.items():
            stamp = (pod, node_name, node_ip, runtime)
            existing = store.get("pods", namespace, name)
            if existing is not None and applied.get(pod.uid) == stamp:
                continue
            want = build_pod(pod, node_name, node_ip, runtime)
            if existing is None:
                store.create("pods", want)
            elif without_api_owned(existing) != without_api_owned(want):
                store.update("pods", _keep_api_owned(want, existing))
            applied[pod.uid] = stamp
    for uid in set(applied) - {p.uid for p in pods}:
        del applied[uid]


def _keep_api_owned(want: dict[str, Any], existing: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in want["metadata"].items() if k not in ("labels", "annotations")}
    for field in ("labels", "annotations"):
        if field in existing["metadata"]:
            metadata[field] = existing["metadata"][field]
    return {**want, "metadata": metadata}


def write_synced(path: str, inode: int, mtime_ns: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{inode} {mtime_ns}\n")
    os.replace(tmp, path)


def read_synced(path: str) -> tuple[int, int] | None:
    try:
        with open(path, encoding="ascii") as f:
            inode, mtime_ns = f.read().split()
        return int(inode), int(mtime_ns)
    except (OSError, ValueError):
        return None


class LabStateFollower:
    """Polls the lab's state file and syncs the store whenever the file was replaced."""

    def __init__(self, store: KubeStore, state_path: str, node_name: str, synced_path: str | None = None) -> None:
        self.store = store
        self.state_path = state_path
        self.node_name = node_name
        self.synced_path = synced_path
        """Gets "<inode> <mtime_ns>" of each state file applied, so the lab can wait for it."""
        self._seen: object = _NEVER
        self._applied: dict[str, tuple[LabPod, str, str, str]] = {}
        self._last_error = ""

    def sync_once(self) -> None:
        try:
            st = os.stat(self.state_path)
            identity: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            identity = None
        if identity == self._seen:
            return
        try:
            state = self._read()
        except ValueError as e:
            if str(e) != self._last_error:
                log.warning("%s; keeping the pods seen before", e)
                self._last_error = str(e)
            return
        self._last_error = ""
        self._seen = identity
        if state is None:
            sync_pods(self.store, [], self.node_name, "127.0.0.1", "crio", time.time(), self._applied)
        else:
            sync_pods(self.store, state.pods, self.node_name, host_ip(state.subnet), state.runtime, time.time(), self._applied)
        if self.synced_path and identity is not None:
            write_synced(self.synced_path, identity[0], identity[1])

    def _read(self) -> LabState | None:
        try:
            with open(self.state_path, encoding="utf-8") as f:
                return LabState.from_dict(json.load(f))
        except FileNotFoundError:
            return None
        except Exception as e:  # any malformed content: keep serving what we had
            raise ValueError(f"lab state {self.state_path} is unreadable: {e!r}") from None

    def run(self, stop: threading.Event) -> None:
        """Sync whenever the lab renames a new state file into place, until stop."""
        notify: Inotify | None = Inotify()
        try:
            notify.add_watch(os.path.dirname(os.path.abspath(self.state_path)), IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE)
        except OSError as e:
            log.warning("cannot watch %s (%s); polling it every %g s", self.state_path, e, NO_INOTIFY_POLL_INTERVAL_S)
            notify.close()
            notify = None
        try:
            while not stop.is_set():
                if notify is None:
                    stop.wait(NO_INOTIFY_POLL_INTERVAL_S)
                else:
                    notify.read(FALLBACK_POLL_INTERVAL_S)
                try:
                    self.sync_once()
                except Exception:  # never let the follower die: the next wake-up retries
                    log.exception("syncing the lab state failed")
        finally:
            if notify is not None:
                notify.close()
