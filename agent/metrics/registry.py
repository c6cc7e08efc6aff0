"""The registry of collectors, as node_exporter's collector.go keeps it: each has a name (its
`--collector.<name>` switch), a default and a function from a Scrape to metric families."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from prometheus_client.metrics_core import Metric

from agent.metrics.scrape import Scrape


@dataclass(frozen=True)
class CollectorEntry:
    name: str
    """`[a-z_]+`: the flag is `--collector.<name>`, the label podbw_scrape_collector_*{collector}."""
    help: str
    """What the families hold, for `--help`."""
    enabled_by_default: bool
    collect: Callable[[Scrape], Iterable[Metric]]
    """Every family of the collector; without samples when `scrape.describing`."""
