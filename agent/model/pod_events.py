"""Pod Events podbw raises, and how repeats and storms are folded before they reach the API:
the same (pod, reason, note) becomes one Event whose series counts the repeats, as client-go's
event recorder does, and a token bucket caps what one agent posts. Pure: the clock is given."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

REPORTING_CONTROLLER = "podbw.io/agent"
NORMAL = "Normal"
WARNING = "Warning"

INVALID_ANNOTATION = "InvalidBandwidthAnnotation"
LIMIT_APPLIED = "BandwidthLimitApplied"
LIMIT_CHANGED = "BandwidthLimitChanged"
FOREIGN_QDISC = "ForeignQdisc"
SHAPING_FAILED = "ShapingFailed"

SERIES_WINDOW_S = 6 * 60.0
"""A repeat within this long of the last one joins its series (client-go: 6 minutes)."""
SERIES_UPDATE_INTERVAL_S = 30.0
"""A series' count is sent at most this often: repeats in between are only counted."""
BURST = 25
REFILL_EVERY_S = 2.0
"""The agent's bucket: 25 new Events at once, then one more every 2 s (30 a minute)."""
MAX_NOTE_CHARS = 1024
"""The API's limit on an Event's note."""


@dataclass(frozen=True)
class PodEvent:
    """One thing to tell a pod's owner, about that pod."""

    namespace: str
    pod: str
    uid: str
    reason: str
    type: str
    note: str
    action: str = "Shaping"

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.uid, self.reason, self.type, self.note)


@dataclass(frozen=True)
class Create:
    event: PodEvent
    name: str
    """The Event object's name (event_name)."""
    at_s: float
    """Wall-clock seconds it happened."""


@dataclass(frozen=True)
class UpdateSeries:
    event: PodEvent
    name: str
    count: int
    last_observed_s: float
    """Wall-clock seconds of the latest repeat."""


@dataclass
class _Series:
    event: PodEvent
    name: str
    count: int
    last_observed_s: float
    sent_count: int
    sent_at_s: float


@dataclass
class EventAggregator:
    """Decides, for each PodEvent raised, what to send: a new Event, a series update, or
    nothing (a repeat counted for the next update, or a storm beyond the bucket)."""

    series: dict[tuple[str, str, str, str], _Series] = field(default_factory=dict)
    tokens: float = BURST
    refilled_at_s: float | None = None
    dropped: int = 0
    """New Events the bucket refused."""

    def record(self, event: PodEvent, now_s: float) -> Create | UpdateSeries | None:
        self._forget_old(now_s)
        known = self.series.get(event.key)
        if known is not None:
            known.count += 1
            known.last_observed_s = now_s
            return self._sent(known, now_s) if now_s - known.sent_at_s >= SERIES_UPDATE_INTERVAL_S else None
        if not self._take_token(now_s):
            self.dropped += 1
            return None
        name = event_name(event, now_s)
        self.series[event.key] = _Series(event, name, 1, now_s, 1, now_s)
        return Create(event, name, now_s)

    def flush(self, now_s: float) -> list[UpdateSeries]:
        """Series updates held back that are due now (call it every few seconds)."""
        return [
            self._sent(known, now_s)
            for known in self.series.values()
            if known.count > known.sent_count and now_s - known.sent_at_s >= SERIES_UPDATE_INTERVAL_S
        ]

    def _sent(self, known: _Series, now_s: float) -> UpdateSeries:
        known.sent_count, known.sent_at_s = known.count, now_s
        return UpdateSeries(known.event, known.name, known.count, known.last_observed_s)

    def _take_token(self, now_s: float) -> bool:
        if self.refilled_at_s is not None:
            self.tokens = min(BURST, self.tokens + (now_s - self.refilled_at_s) / REFILL_EVERY_S)
        self.refilled_at_s = now_s
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def _forget_old(self, now_s: float) -> None:
        """A series silent for longer than the window is over; the next repeat starts a new one."""
        for key in [k for k, s in self.series.items() if now_s - s.last_observed_s > SERIES_WINDOW_S]:
            del self.series[key]


def event_name(event: PodEvent, now_s: float) -> str:
    """`<pod>.<16 hex digits>`, unique per pod, cause and series start (a series that ended and
    starts again is a new Event), within the 253 characters a name may have."""
    digest = hashlib.sha256("\0".join((*event.key, repr(now_s))).encode()).hexdigest()[:16]
    return f"{event.pod[:253 - 17]}.{digest}"


def cut_note(note: str) -> str:
    """An Event's note within the API's limit."""
    return note if len(note) <= MAX_NOTE_CHARS else note[: MAX_NOTE_CHARS - 3] + "..."
