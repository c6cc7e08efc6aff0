"""EventAggregator: repeats become one Event's series; the bucket caps new Events. Pure."""

from __future__ import annotations

import pytest

from agent.model.pod_events import (
    BURST,
    REFILL_EVERY_S,
    SERIES_UPDATE_INTERVAL_S,
    SERIES_WINDOW_S,
    WARNING,
    Create,
    EventAggregator,
    PodEvent,
    UpdateSeries,
    cut_note,
    event_name,
)


def event(pod: str = "web", note: str = "bad value", reason: str = "InvalidBandwidthAnnotation") -> PodEvent:
    return PodEvent("shop", pod, f"uid-{pod}", reason, WARNING, note)


def test_a_new_cause_is_created_and_its_repeats_update_one_series() -> None:
    agg = EventAggregator()
    first = agg.record(event(), 0.0)
    assert isinstance(first, Create) and first.name.startswith("web.")
    # Repeats within the update interval are only counted...
    assert agg.record(event(), 1.0) is None
    assert agg.record(event(), 2.0) is None
    # ...and go out together once it has passed: count 3, last seen at 2 s.
    (update,) = agg.flush(SERIES_UPDATE_INTERVAL_S)
    assert (update.name, update.count, update.last_observed_s) == (first.name, 3, 2.0)
    assert agg.flush(SERIES_UPDATE_INTERVAL_S + 1) == []  # nothing new since
    # A repeat after the interval is sent at once.
    later = agg.record(event(), 2 * SERIES_UPDATE_INTERVAL_S + 1)
    assert isinstance(later, UpdateSeries) and later.count == 4 and later.event.namespace == "shop"


@pytest.mark.parametrize(
    ("other", "same_series"),
    [
        (event(), True),
        (event(note="another value"), False),
        (event(reason="ShapingFailed"), False),
        (event(pod="db"), False),
    ],
)
def test_what_makes_a_series(other: PodEvent, same_series: bool) -> None:
    agg = EventAggregator()
    agg.record(event(), 0.0)
    assert (agg.record(other, 1.0) is None) is same_series


def test_a_series_silent_for_the_window_is_over() -> None:
    agg = EventAggregator()
    first = agg.record(event(), 0.0)
    again = agg.record(event(), SERIES_WINDOW_S + 1)
    assert isinstance(again, Create) and again.name != first.name


def test_the_bucket_caps_new_events_and_refills() -> None:
    agg = EventAggregator()
    made = [agg.record(event(pod=f"p{i}"), 0.0) for i in range(BURST + 5)]
    assert sum(isinstance(m, Create) for m in made) == BURST and agg.dropped == 5
    assert agg.record(event(pod="late"), REFILL_EVERY_S / 2) is None
    assert isinstance(agg.record(event(pod="later"), REFILL_EVERY_S * 1.5), Create)
    # Repeats of existing series never need a token.
    assert agg.record(event(pod="p0"), REFILL_EVERY_S * 1.6) is None and agg.dropped == 6


def test_names_are_valid_and_unique() -> None:
    long = PodEvent("ns", "p" * 300, "u", "r", WARNING, "n")
    assert len(event_name(long, 1.0)) <= 253
    assert event_name(event(), 1.0) != event_name(event(), 2.0)
    assert cut_note("x" * 5000).endswith("...") and len(cut_note("x" * 5000)) == 1024
