"""Say each problem once while it lasts: the same cause found again on every resync or sample
pass is news only the first time, and again after it went away and came back."""

from __future__ import annotations

import hashlib
from typing import Callable, Hashable


def cause_key(*parts: object) -> str:
    """A fixed-size key for a cause given by its full text (values of any length): two causes
    differing anywhere, not just in what a log line shows of them, are two causes."""
    digest = hashlib.sha1()
    for part in parts:
        text = str(part).encode("utf-8", "surrogatepass")
        digest.update(len(text).to_bytes(8, "little"))
        digest.update(text)
    return digest.hexdigest()


class ProblemLog:
    """Which causes were reported per subject (a pod, a file). One round of checks for a subject
    goes `begin`, any number of `report`, `end`: a cause not reported again by `end` is over."""

    def __init__(self) -> None:
        self._reported: dict[Hashable, set[str]] = {}
        self._current: dict[Hashable, set[str]] = {}

    def begin(self, subject: Hashable) -> None:
        self._current[subject] = set()

    def report(self, subject: Hashable, key: str, say: Callable[[], None]) -> None:
        """Call `say` unless this cause of this subject was already reported and has lasted."""
        self._current.setdefault(subject, set()).add(key)
        if key not in self._reported.get(subject, ()):
            say()

    def end(self, subject: Hashable) -> None:
        self._reported[subject] = self._current.pop(subject, set())

    def forget(self, subject: Hashable) -> None:
        self._reported.pop(subject, None)
        self._current.pop(subject, None)
