"""Counters of the HTTP endpoint itself, and the collector that exports them with /metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

DROP_REASONS = ("header_timeout", "write_timeout", "evicted", "refused", "tls_handshake")
"""Why a connection was cut before its request was answered: its head took longer than the
header deadline; the client did not read the response in time; the connection table was full
and this one had not sent a complete request; the table was full of requests in progress; the
TLS handshake failed."""
DROP_LOG_INTERVAL_S = 60.0
"""Dropped connections are logged as one summary line at most this often."""


class HttpStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open_connections = 0
        self._dropped: Counter[str] = Counter()
        self._accept_errors = 0
        self._responses: Counter[int] = Counter()
        self._dropped_since_log: Counter[str] = Counter()
        self._last_drop_log_s = -DROP_LOG_INTERVAL_S

    def set_open_connections(self, count: int) -> None:
        self._open_connections = count

    def dropped(self, reason: str, peer: object) -> None:
        with self._lock:
            self._dropped[reason] += 1
            self._dropped_since_log[reason] += 1
            now = time.monotonic()
            if now - self._last_drop_log_s < DROP_LOG_INTERVAL_S:
                return
            summary = ", ".join(f"{r}={n}" for r, n in sorted(self._dropped_since_log.items()))
            self._dropped_since_log.clear()
            self._last_drop_log_s = now
        # Slow clients are what a slowloris attack is made of: one line a minute, not one each.
        log.warning("HTTP: dropped connections (%s), the latest from %s", summary, peer)

    def accept_error(self) -> None:
        with self._lock:
            self._accept_errors += 1

    def responded(self, status: int) -> None:
        with self._lock:
            self._responses[status] += 1

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            dropped = dict(self._dropped)
            responses = dict(self._responses)
            accept_errors = self._accept_errors
        yield GaugeMetricFamily(
            "podbw_http_connections", "Connections open to the HTTP endpoint.", value=self._open_connections
        )
        family = CounterMetricFamily(
            "podbw_http_connections_dropped",
            "Connections the HTTP endpoint cut before answering: header_timeout, write_timeout,"
            " evicted (table full, no complete request yet), refused (table full), tls_handshake.",
            labels=["reason"],
        )
        for reason in DROP_REASONS:
            family.add_metric([reason], dropped.get(reason, 0))
        yield family
        yield CounterMetricFamily(
            "podbw_http_accept_errors",
            "Failed accepts on the HTTP endpoint (e.g. out of file descriptors); each backs off briefly.",
            value=accept_errors,
        )
        family = CounterMetricFamily(
            "podbw_http_responses", "HTTP responses sent, by status code.", labels=["code"]
        )
        for code, count in sorted(responses.items()):
            family.add_metric([str(code)], count)
        yield family

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())
