"""Collector `process`: the agent's own process_* metrics, as prometheus_client's
ProcessCollector reads them from /proc (CPU, memory, file descriptors, start time)."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector

from agent.metrics.registry import CollectorEntry
from agent.metrics.scrape import Scrape

# What ProcessCollector yields on Linux, for describe(), which must not read /proc.
PROCESS_FAMILIES = (
    ("process_virtual_memory_bytes", GaugeMetricFamily),
    ("process_resident_memory_bytes", GaugeMetricFamily),
    ("process_start_time_seconds", GaugeMetricFamily),
    ("process_cpu_seconds_total", CounterMetricFamily),
    ("process_open_fds", GaugeMetricFamily),
    ("process_max_fds", GaugeMetricFamily),
)


def collect(scrape: Scrape) -> Iterator[Metric]:
    if scrape.describing:
        for name, family_type in PROCESS_FAMILIES:
            yield family_type(name, "", labels=())
        return
    source = scrape.process
    # A value that cannot be read is left out, never guessed (ProcessCollector does so itself).
    yield from ProcessCollector(pid=lambda: source.pid, proc=source.proc_root, registry=None).collect()


COLLECTOR = CollectorEntry("process", "the agent's own CPU, memory, file descriptors, start time (process_*)", True, collect)
