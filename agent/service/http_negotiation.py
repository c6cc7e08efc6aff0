"""Content negotiation of /metrics: the format (Accept) and gzip (Accept-Encoding), q-values
included (RFC 9110 12.4-12.5.3). The Content-Type sent is always one of the two fixed strings
below, never built from what the client asked for."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector

Encoder = Callable[[Collector], bytes]


@dataclass(frozen=True)
class MetricsFormat:
    media_type: str
    """What the client's Accept names, e.g. "text/plain"."""
    content_type: str
    """The Content-Type podbw sends for it, fixed."""
    encoder: Encoder


TEXT = MetricsFormat("text/plain", CONTENT_TYPE_PLAIN_0_0_4, generate_latest)
OPENMETRICS = MetricsFormat(
    "application/openmetrics-text",
    openmetrics.CONTENT_TYPE_LATEST,
    partial(openmetrics.generate_latest, escaping=openmetrics.UNDERSCORES, version="1.0.0"),
)
FORMATS = (TEXT, OPENMETRICS)
"""In order of preference when the client rates both the same."""


def _q_value(params: list[str]) -> float | None:
    """The q parameter of a list element (1 when absent), None when it is malformed."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return None
            return q if 0.0 <= q <= 1.0 else None
    return 1.0


def _elements(header: str) -> list[tuple[str, float]]:
    """(lower-cased value, q) of each element of a comma-separated header; malformed q dropped."""
    out = []
    for element in header.split(","):
        value, *params = element.split(";")
        value = value.strip().lower()
        q = _q_value(params)
        if value and q is not None:
            out.append((value, q))
    return out


def _specificity(media_range: str, media_type: str) -> int:
    """2 for an exact match, 1 for `type/*`, 0 for `*/*`, -1 when the range does not match."""
    if media_range == media_type:
        return 2
    if media_range == media_type.split("/")[0] + "/*":
        return 1
    if media_range == "*/*":
        return 0
    return -1


def _rating(ranges: list[tuple[str, float]], media_type: str) -> tuple[float, int]:
    """(q, specificity) the most specific ranges matching media_type give it ((0, -1): none)."""
    best = (0.0, -1)
    for media_range, q in ranges:
        specificity = _specificity(media_range, media_type)
        if specificity > best[1] or (specificity == best[1] and q > best[0]):
            best = (q, specificity)
    return best


def choose_format(accept: str) -> MetricsFormat:
    """The format the client rates highest (q, then how specifically it named it); the text
    format when it rates neither (as Prometheus' own exporters do, rather than a 406)."""
    ranges = _elements(accept or "")
    rated = [(_rating(ranges, f.media_type), -i, f) for i, f in enumerate(FORMATS)]
    (q, _), _, best = max(rated, key=lambda r: (r[0], r[1]))
    return best if q > 0 else TEXT


def gzip_accepted(accept_encoding: str) -> bool:
    """True when gzip's q-value is above 0: named as gzip (or x-gzip), else through `*`."""
    named: float | None = None
    wildcard: float | None = None
    for coding, q in _elements(accept_encoding or ""):
        if coding in ("gzip", "x-gzip"):
            named = q if named is None else max(named, q)
        elif coding == "*":
            wildcard = q if wildcard is None else max(wildcard, q)
    q = named if named is not None else wildcard
    return q is not None and q > 0
