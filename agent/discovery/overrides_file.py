"""The annotations file: live per-pod annotation overrides, watched and reloaded within ~0.2 s.

An invalid file never replaces a valid one: the last valid content stays in force and the
error is logged once and counted (key `annotations-file`).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable, Mapping

from agent.discovery.inotify import IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_MOVED_TO, Inotify
from agent.model.health import HealthRecorder
from agent.model.overrides import MAX_OVERRIDES_CHARS, OverridesError, parse_overrides

log = logging.getLogger(__name__)

ERROR_KEY = "annotations-file"


class OverridesFile:
    def __init__(self, path: str, health: HealthRecorder, on_change: Callable[[], None]) -> None:
        self._path = os.path.abspath(path)
        self._health = health
        self._on_change = on_change
        self._current: Mapping[str, Mapping[str, str]] = {}
        self._last_text: str | None = None
        self._last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> Mapping[str, Mapping[str, str]]:
        return self._current

    @property
    def error(self) -> str:
        return self._last_error

    def load(self) -> bool:
        """Read the file; returns True when the overrides in force changed."""
        try:
            with open(self._path, encoding="utf-8") as handle:
                text = handle.read(MAX_OVERRIDES_CHARS + 1)
        except FileNotFoundError:
            text = ""  # no file: no overrides (deleting the file removes them)
        except (OSError, UnicodeDecodeError) as err:
            self._fail(f"cannot read {self._path}: {err}")
            return False
        if text == self._last_text:
            return False
        try:
            parsed = parse_overrides(text)
        except OverridesError as err:
            self._fail(f"{self._path}: {err}")
            return False
        self._last_text = text
        self._last_error = ""
        changed = parsed != self._current
        self._current = parsed
        if changed:
            log.info("annotations file %s: %d pods overridden", self._path, len(parsed))
        return changed

    def _fail(self, message: str) -> None:
        if message != self._last_error:
            log.error("%s; keeping the last valid overrides", message)
            self._health.annotation_error(ERROR_KEY)
        self._last_error = message

    def start(self) -> None:
        self.load()
        self._thread = threading.Thread(target=self._watch, name="podbw-annotations-file", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)

    def _watch(self) -> None:
        directory, name = os.path.split(self._path)
        while not self._stop.is_set():
            try:
                with Inotify() as inotify:
                    # Watch the directory, not the file: editors and ConfigMaps replace files.
                    inotify.add_watch(directory, IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO | IN_DELETE)
                    self._reload()
                    while not self._stop.is_set():
                        events = inotify.read(0.2)
                        if any(event.name == name or event.name.startswith("..") for event in events):
                            self._reload()
            except OSError as err:
                if not self._stop.is_set():
                    log.debug("annotations file watch: %s", err)
                    self._stop.wait(1.0)

    def _reload(self) -> None:
        if self.load():
            try:
                self._on_change()
            except Exception:
                log.exception("annotations file change handler failed")
