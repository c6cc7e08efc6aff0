"""Watch one file the ways people and kubelet replace it, and call back when it may have changed.

Watched: the directory of the configured path (editors rename over the file; a ConfigMap mount
swaps its `..data` symlink), and when the path is a symlink, the directory of every link on the
way and of the resolved file (`ln -s /etc/podbw/x.yaml` edited in place), re-resolved after each
change. A watched directory that is deleted or moved is watched again when it comes back, polled
with a short backoff. `recheck()` is the safety net for what inotify cannot see (a parent
directory replaced, a symlink re-pointed outside the watched directories).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from agent.discovery.inotify import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    Inotify,
)

log = logging.getLogger(__name__)

WATCH_MASK = (
    IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
)
_LOST = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_Q_OVERFLOW
"""The watch no longer sees the directory it was set on (or missed events): set it again."""
POLL_MIN_S = 0.1
POLL_MAX_S = 1.0
"""A missing directory is looked for again after 0.1 s, doubling up to 1 s: back within ~1 s."""
READ_TIMEOUT_S = 0.2
MAX_SYMLINK_HOPS = 40
"""The kernel's own limit (MAXSYMLINKS)."""

DirIdentity = tuple[int, int]


class WatchTargets:
    """The directories to watch for one path, and the entry names in them that matter."""

    def __init__(self, path: str) -> None:
        self.directories: list[str] = []
        self.names: set[str] = set()
        current = os.path.abspath(path)
        for _ in range(MAX_SYMLINK_HOPS):
            self._add(current)
            try:
                target = os.readlink(current)
            except OSError:  # not a symlink, or not there (yet)
                break
            current = os.path.normpath(os.path.join(os.path.dirname(current), target))
        self._add(os.path.realpath(path))

    def _add(self, path: str) -> None:
        directory, name = os.path.split(path)
        if directory not in self.directories:
            self.directories.append(directory)
        self.names.add(name)

    def matters(self, name: str) -> bool:
        # `..data`, `..2026_...`: kubelet's ConfigMap layout swaps these, never the file's link.
        return name in self.names or name.startswith("..")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WatchTargets) and (self.directories, self.names) == (other.directories, other.names)

    __hash__ = None  # type: ignore[assignment]


def _identity(directory: str) -> DirIdentity | None:
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class FileWatch:
    """Calls on_change() (from its own thread) whenever the file at path may have changed."""

    def __init__(self, path: str, on_change: Callable[[], object], thread_name: str = "podbw-file-watch") -> None:
        self._path = os.path.abspath(path)
        self._on_change = on_change
        self._thread_name = thread_name
        self._stop = threading.Event()
        self._rewatch = threading.Event()
        self._thread: threading.Thread | None = None
        self._targets = WatchTargets(self._path)
        self._watched: dict[str, DirIdentity | None] = {}
        self._missing_logged: tuple[str, ...] = ()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)

    def recheck(self) -> bool:
        """Set the watch again when the path no longer resolves to the directories watched, or
        one of them was replaced; True when it will be (the watch thread does it)."""
        targets = WatchTargets(self._path)
        watched = self._watched
        if targets == self._targets and all(_identity(d) == ident for d, ident in watched.items()):
            return False
        self._rewatch.set()
        return True

    # ---- the watch thread -------------------------------------------------------------------
    def _run(self) -> None:
        backoff_s = POLL_MIN_S
        while not self._stop.is_set():
            self._rewatch.clear()
            complete = False
            try:
                with Inotify() as inotify:
                    complete = self._add_watches(inotify)
                    self._notify()  # whatever happened while nothing watched
                    deadline = None if complete else time.monotonic() + backoff_s
                    self._follow(inotify, deadline)
            except OSError as err:  # no inotify instance left (EMFILE) and the like: poll
                log.debug("watch %s: %s", self._path, err)
                self._notify()
                self._stop.wait(backoff_s)
            backoff_s = POLL_MIN_S if complete else min(backoff_s * 2, POLL_MAX_S)

    def _add_watches(self, inotify: Inotify) -> bool:
        """Watch every target directory there is; False when one is missing."""
        self._targets = WatchTargets(self._path)
        watched: dict[str, DirIdentity | None] = {}
        missing = []
        for directory in self._targets.directories:
            identity = _identity(directory)  # before the watch: a swap in between shows as a change
            try:
                inotify.add_watch(directory, WATCH_MASK)
            except OSError:
                missing.append(directory)
                continue
            watched[directory] = identity
        self._watched = watched
        if tuple(missing) != self._missing_logged:
            if missing:
                log.warning("watch %s: cannot watch %s; looking again every %gs", self._path, ", ".join(missing), POLL_MAX_S)
            else:
                log.info("watch %s: watching %s", self._path, ", ".join(self._targets.directories))
            self._missing_logged = tuple(missing)
        return not missing

    def _follow(self, inotify: Inotify, deadline: float | None) -> None:
        while not self._stop.is_set() and not self._rewatch.is_set():
            timeout_s = READ_TIMEOUT_S if deadline is None else min(READ_TIMEOUT_S, deadline - time.monotonic())
            events = inotify.read(timeout_s)
            if any(event.mask & _LOST for event in events):
                return  # _run re-reads once the watch is set again
            if any(self._targets.matters(event.name) for event in events):
                self._notify()
                if WatchTargets(self._path) != self._targets:
                    return  # a symlink now leads elsewhere: watch there
            if deadline is not None and time.monotonic() > deadline:
                return

    def _notify(self) -> None:
        try:
            self._on_change()
        except Exception:  # the watch outlives any callback failure
            log.exception("watch %s: change handler failed", self._path)
