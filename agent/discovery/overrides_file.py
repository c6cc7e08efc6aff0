"""The annotations file: live per-pod annotation overrides, watched and reloaded within ~0.2 s,
and re-read by `reload_if_changed()` at every resync in case a change got past the watch.

An invalid file never replaces a valid one: the last valid content stays in force and the
error is logged once and counted (key `annotations-file`). A missing file means no overrides.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable, Mapping

from agent.discovery.file_watch import FileWatch
from agent.model.health import HealthRecorder
from agent.model.overrides import MAX_OVERRIDES_CHARS, OverridesError, parse_overrides

log = logging.getLogger(__name__)

ERROR_KEY = "annotations-file"

FileIdentity = tuple[int, int, int, int, int]


def _file_identity(path: str) -> FileIdentity | None:
    """What changes whenever the file's content can have: replaced, resized or written."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class OverridesFile:
    def __init__(self, path: str, health: HealthRecorder, on_change: Callable[[], None]) -> None:
        self._path = os.path.abspath(path)
        self._health = health
        self._on_change = on_change
        self._current: Mapping[str, Mapping[str, str]] = {}
        self._last_text: str | None = None
        self._last_bad_text: str | None = None
        """Invalid text already reported: not parsed again until it changes."""
        self._last_error = ""
        self._read_identity: FileIdentity | None = None
        self._loaded_once = False
        self._lock = threading.Lock()
        """The watch thread and the resync both load."""
        self._watch = FileWatch(self._path, self._reload, thread_name="podbw-annotations-file")

    def current(self) -> Mapping[str, Mapping[str, str]]:
        return self._current

    @property
    def error(self) -> str:
        return self._last_error

    def load(self) -> bool:
        """Read the file; returns True when the overrides in force changed."""
        with self._lock:
            return self._load()

    def reload_if_changed(self) -> bool:
        """The resync's safety net: re-read when the file's identity, size or times changed
        since the last read (one stat() otherwise), set the watch again when what the path
        resolves to moved, and call on_change when the overrides changed. Never raises."""
        try:
            self._watch.recheck()
            with self._lock:
                if self._loaded_once and _file_identity(self._path) == self._read_identity:
                    return False
            return self._reload()
        except Exception:  # the resync goes on whatever happens here
            log.exception("annotations file %s: re-read failed", self._path)
            return False

    def _load(self) -> bool:
        identity = _file_identity(self._path)  # before reading: a write in between shows next time
        try:
            with open(self._path, encoding="utf-8") as handle:
                text = handle.read(MAX_OVERRIDES_CHARS + 1)
        except FileNotFoundError:
            text = ""  # no file: no overrides (deleting the file removes them)
        except (OSError, UnicodeDecodeError) as err:
            self._read_identity, self._loaded_once = identity, True
            self._fail(f"cannot read {self._path}: {err}")
            return False
        self._read_identity, self._loaded_once = identity, True
        if text == self._last_text or text == self._last_bad_text:
            return False
        try:
            parsed = parse_overrides(text)
        except OverridesError as err:
            self._last_bad_text = text
            self._fail(f"{self._path}: {err}")
            return False
        self._last_text, self._last_bad_text = text, None
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
        self._watch.start()

    def stop(self) -> None:
        self._watch.stop()

    def _reload(self) -> bool:
        if not self.load():
            return False
        try:
            self._on_change()
        except Exception:
            log.exception("annotations file change handler failed")
        return True
