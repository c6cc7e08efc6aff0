"""The demo's look-ups of the agent's pod Events with `kubectl get events`.

Each look-up runs once per demo tick until the Event shows or its time is up, so the live view
never waits on the agent or the API for longer than one kubectl call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from agent.lab.kubectl import RunsKubectl

LOOK_FOR_S = 5.0
"""How long an Event is looked for before the demo says there is none yet."""


@dataclass(frozen=True)
class EventQuery:
    namespace: str
    pod: str
    reason: str

    def args(self) -> list[str]:
        selector = f"involvedObject.name={self.pod},reason={self.reason}"
        return ["get", "events", "-n", self.namespace, "--field-selector", selector]

    def describe(self) -> str:
        return f"{self.reason} Event for {self.namespace}/{self.pod}"


@dataclass
class _Pending:
    query: EventQuery
    until_s: float
    error: str = ""
    """kubectl's complaint on the last try, if it failed."""

    def why(self) -> str:
        return f"; kubectl: {self.error}" if self.error else ""


class EventLookups:
    """Pending look-ups; `poll` once per tick shows what kubectl found (command and table)."""

    def __init__(
        self,
        kubectl: RunsKubectl,
        show: Callable[[str], None],
        look_for_s: float = LOOK_FOR_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kubectl = kubectl
        self._show = show
        self._look_for_s = look_for_s
        self._clock = clock
        self._pending: list[_Pending] = []
        self.found: list[str] = []
        """Every line shown for a found Event (kubectl's table rows, header included)."""

    def look_for(self, query: EventQuery) -> None:
        self._pending.append(_Pending(query, self._clock() + self._look_for_s))

    def poll(self) -> None:
        for pending in list(self._pending):
            if self._try(pending):
                self._pending.remove(pending)
            elif self._clock() >= pending.until_s:
                self._show(f"no {pending.query.describe()} yet (looked for {self._look_for_s:g} s{pending.why()})")
                self._pending.remove(pending)

    def finish(self) -> None:
        """One last try for each pending look-up; the demo is ending."""
        for pending in self._pending:
            if not self._try(pending):
                self._show(f"no {pending.query.describe()} yet (the demo ended{pending.why()})")
        self._pending = []

    def _try(self, pending: _Pending) -> bool:
        query = pending.query
        result = self._kubectl.run(query.args())
        pending.error = "" if result.ok else result.error_line()
        lines = result.stdout.rstrip().splitlines()
        # None found is a success with "No resources found" on stderr and nothing on stdout.
        if not result.ok or not any(query.reason in line for line in lines):
            return False
        self._show(f"$ {result.command}")
        for line in lines:
            self._show(line)
        self.found.extend(lines)
        return True
