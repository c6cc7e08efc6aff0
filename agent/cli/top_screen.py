"""Screens for `podbw top` and `podbw demo`: a rich Live table, or plain tables for pipes.

`TopViewer` joins a source and a screen; it is also the view `agent.lab.demo` drives (it only
needs `refresh`, `event` and `limit_bytes_per_s`).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Protocol, Sequence, TextIO

from rich.console import Console
from rich.live import Live

from agent.cli.top_render import render_plain, render_rich
from agent.cli.top_rows import PodRow
from agent.cli.top_sources import SourceError

EVENTS_SHOWN = 8
"""Enough for the demo's change: its kubectl command, the new limit, and the Event kubectl finds."""


def _clock_text() -> str:
    return time.strftime("%H:%M:%S")


def frame_title(name: str, source: str, rows: Sequence[PodRow], status: str = "", error: str = "") -> str:
    parts = [name, source, f"{len(rows)} pods", _clock_text()]
    if status:
        parts.append(status)
    if error:
        parts.append(f"ERROR: {error}")
    return "  |  ".join(parts)


class Screen(Protocol):
    def show(self, rows: Sequence[PodRow], title: str, force: bool = False) -> None: ...

    def event(self, text: str) -> None: ...


class PlainScreen:
    """Prints a whole table at most every `every_s` (or when forced); events as they come."""

    def __init__(self, out: TextIO | None = None, every_s: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self._out = out or sys.stdout
        self._every_s = every_s
        self._clock = clock
        self._last_s: float | None = None

    def __enter__(self) -> PlainScreen:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def show(self, rows: Sequence[PodRow], title: str, force: bool = False) -> None:
        now = self._clock()
        if not force and self._last_s is not None and now - self._last_s < self._every_s:
            return
        self._last_s = now
        self._out.write("\n" + render_plain(rows, title))
        self._out.flush()

    def event(self, text: str) -> None:
        self._out.write(f"{_clock_text()}  {text}\n")
        self._out.flush()


class LiveScreen:
    """A table redrawn in place, with the latest events beneath it."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console()
        self._live = Live(console=self._console, auto_refresh=False, transient=False)
        self._events: list[str] = []
        self._rows: Sequence[PodRow] = ()
        self._title = ""

    def __enter__(self) -> LiveScreen:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def show(self, rows: Sequence[PodRow], title: str, force: bool = False) -> None:
        self._rows, self._title = rows, title
        self._redraw()

    def event(self, text: str) -> None:
        self._events = [*self._events[-(EVENTS_SHOWN - 1) :], f"{_clock_text()}  {text}"]
        self._redraw()

    def _redraw(self) -> None:
        self._live.update(render_rich(self._rows, self._title, self._events), refresh=True)


class RowSource(Protocol):
    @property
    def description(self) -> str: ...

    def rows(self) -> list[PodRow]: ...


class TopViewer:
    """Fetches rows and shows them; a failing fetch keeps the last rows and says why."""

    def __init__(self, source: RowSource, screen: Screen, name: str = "podbw top") -> None:
        self._source = source
        self._screen = screen
        self._name = name
        self.rows: list[PodRow] = []
        self.error = ""

    def refresh(self, status: str = "", force: bool = False) -> None:
        try:
            self.rows = self._source.rows()
            self.error = ""
        except SourceError as err:
            self.error = str(err)
        self._screen.show(self.rows, self.title(status), force)

    def title(self, status: str = "") -> str:
        return frame_title(self._name, self._source.description, self.rows, status, self.error)

    def event(self, text: str) -> None:
        self._screen.event(text)

    def limit_bytes_per_s(self, pod_key: str, direction: str) -> float | None:
        for row in self.rows:
            if row.key == pod_key:
                return row.direction(direction).limit_bytes_per_s
        return None
