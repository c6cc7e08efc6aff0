"""Prometheus collector: runs each enabled collector over the latest Snapshot and the agent's
health, as node_exporter's framework does: each is timed, and one that fails is left out and
reported (podbw_scrape_collector_success 0) without breaking the others.

A scrape does no netlink work, so any number of scrapers cost the node nothing extra. Families
are built fresh on every collect(): series of pods that are gone simply are not produced.
"""

from __future__ import annotations

import logging
import platform
import time
from typing import Callable, Collection, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from agent.metrics.build_info import BuildInfo
from agent.metrics.collectors import COLLECTORS, COLLECTORS_BY_NAME, DEFAULT_COLLECTORS
from agent.metrics.registry import CollectorEntry
from agent.metrics.scrape import ProcessSource, Scrape
from agent.model.health import HealthData
from agent.model.snapshot import Snapshot

log = logging.getLogger(__name__)


class PodbwCollector(Collector):
    """The enabled collectors over `snapshot()` (the sampler's latest) and `health()`."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot | None],
        health: Callable[[], HealthData],
        pods_count: Callable[[], int] | None = None,
        *,
        version: str,
        revision: str = "unknown",
        python_version: str = platform.python_version(),
        interval_s: float = 1.0,
        max_interfaces: int = 8,
        collectors: Collection[str] = DEFAULT_COLLECTORS,
        unlimited_pods: bool = True,
        process: ProcessSource = ProcessSource(),
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        unknown = sorted(set(collectors) - COLLECTORS_BY_NAME.keys())
        if unknown:
            raise ValueError(f"unknown collectors: {', '.join(unknown)}")
        self._snapshot = snapshot
        self._health = health
        self._pods_count = pods_count
        self._build = BuildInfo(version=version, revision=revision, python_version=python_version)
        self._interval_s = interval_s
        """The configured sample interval, for HELP texts until a Snapshot exists."""
        self._max_interfaces = max_interfaces
        self._unlimited_pods = unlimited_pods
        self._process = process
        self._clock = clock
        self.enabled: tuple[CollectorEntry, ...] = tuple(e for e in COLLECTORS if e.name in collectors)
        """In exposition order."""
        self._failing: set[str] = set()
        """Collectors whose last run failed: logged once until they work again."""

    def describe(self) -> Iterable[Metric]:
        # Families without samples: the registry only needs the names, and registering must
        # not read a snapshot, the health recorder or /proc.
        scrape = self._scrape(None, None, None, describing=True)
        families = [family for entry in self.enabled for family in entry.collect(scrape)]
        return families + list(_meta_families(()))

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot()
        if self._pods_count is not None:
            pods: int | None = self._pods_count()
        else:
            pods = len(snapshot.pods) if snapshot is not None else None
        scrape = self._scrape(snapshot, self._health(), pods)
        results: list[tuple[str, float, bool]] = []
        for entry in self.enabled:
            started = self._clock()
            families = self._run(entry, scrape)
            results.append((entry.name, self._clock() - started, families is not None))
            # One collector's families at a time: a render never holds every family at once.
            yield from families or ()
        yield from _meta_families(results)

    def _run(self, entry: CollectorEntry, scrape: Scrape) -> list[Metric] | None:
        """The collector's families, or None when it failed: then none of them, not a part."""
        try:
            families = list(entry.collect(scrape))
        except Exception as exc:  # one collector's bug must not cost the others their scrape
            if entry.name not in self._failing:
                self._failing.add(entry.name)
                log.error("collector %s failed: %s; its metrics are left out", entry.name, exc, exc_info=True)
            return None
        if entry.name in self._failing:
            self._failing.discard(entry.name)
            log.info("collector %s works again", entry.name)
        return families

    def _scrape(
        self, snapshot: Snapshot | None, health: HealthData | None, pods: int | None, describing: bool = False
    ) -> Scrape:
        return Scrape(
            snapshot=snapshot,
            health=health,
            pods_count=pods,
            interval_s=snapshot.interval_s if snapshot is not None else self._interval_s,
            max_interfaces=self._max_interfaces,
            unlimited_pods=self._unlimited_pods,
            build=self._build,
            process=self._process,
            describing=describing,
        )


def _meta_families(results: Iterable[tuple[str, float, bool]]) -> Iterator[Metric]:
    duration = GaugeMetricFamily(
        "podbw_scrape_collector_duration_seconds", "Time each collector took in this scrape.", labels=("collector",)
    )
    success = GaugeMetricFamily(
        "podbw_scrape_collector_success",
        "1 when the collector's metrics are in this scrape, 0 when it failed (see the agent's log).",
        labels=("collector",),
    )
    for name, duration_s, ok in results:
        duration.add_metric((name,), duration_s)
        success.add_metric((name,), 1.0 if ok else 0.0)
    yield duration
    yield success
