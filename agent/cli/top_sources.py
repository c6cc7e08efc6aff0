"""Where `podbw top` gets its rows: a running agent's /metrics, or its own observe-only sample.

The local source is the agent's pipeline minus every write: discovery, a Reconciler with
shaping disabled (it reads the kernel to report what is applied, never changes it) and the
Sampler. All of it runs on the thread that calls `rows()`, as the netlink handles require.

Every refresh re-reads each pod's shaping state (one qdisc get per device) and samples its
statistics.
"""

from __future__ import annotations

import logging
import ssl
import time
import urllib.error
import urllib.request

from agent.cli.top_rows import MetricsFormatError, PodRow, rows_from_metrics_text, rows_from_snapshot
from agent.discovery.discovery import Discovery
from agent.discovery.overrides_file import OverridesFile
from agent.discovery.registry import PodRegistry
from agent.discovery.resolver import AnnotationResolver
from agent.discovery.settings import DiscoverySettings
from agent.metrics.sampler import Sampler
from agent.model.health import HealthRecorder
from agent.model.log_fields import pod_fields
from agent.model.pod import Pod
from agent.model.snapshot import Snapshot
from agent.netlink.socket import NetlinkSocketPool
from agent.shaping.reconciler import Reconciler
from agent.shaping.settings import ShapingSettings

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""/metrics of a node with thousands of pods is a few MB; anything far larger is not ours."""


class SourceError(Exception):
    """The source answered, but not with something `top` can show (HTTP error, not podbw)."""


class SourceUnreachable(SourceError):
    """Nothing answers at the URL (refused, timed out, unknown host)."""


class MetricsSource:
    """Rows from an agent's /metrics, fetched anew on every call."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.url = url
        self._timeout_s = timeout_s

    @property
    def description(self) -> str:
        return self.url

    def rows(self) -> list[PodRow]:
        try:
            with urllib.request.urlopen(self.url, timeout=self._timeout_s) as answer:
                body = answer.read(MAX_ANSWER_BYTES)
        except urllib.error.HTTPError as err:
            err.close()  # it holds the connection
            raise SourceError(f"{self.url}: HTTP {err.code} {err.reason}") from None
        except urllib.error.URLError as err:
            if isinstance(err.reason, ssl.SSLError):
                raise SourceError(f"{self.url}: TLS: {err.reason}") from None
            raise SourceUnreachable(f"{self.url}: {err.reason}") from None
        except (TimeoutError, ConnectionError) as err:
            raise SourceUnreachable(f"{self.url}: {err}") from None
        except ValueError as err:  # malformed URL
            raise SourceError(f"{self.url}: {err}") from None
        try:
            return rows_from_metrics_text(body.decode("utf-8", errors="replace"))
        except MetricsFormatError as err:
            raise SourceError(f"{self.url}: {err}") from None

    def close(self) -> None:
        pass


class LocalSource:
    """Rows sampled by this process (observe-only). Needs the rights the agent has (root)."""

    def __init__(
        self,
        discovery: DiscoverySettings,
        egress_mode: str,
        annotations_file: str | None = None,
        interval_s: float = 1.0,
    ) -> None:
        # The view shows states itself (invalid, error): the same news as log lines on stderr
        # would only tear the live table.
        for name in ("agent.shaping", "agent.discovery", "agent.metrics"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self._health = HealthRecorder()
        self._overrides = (
            OverridesFile(annotations_file, self._health, on_change=lambda: None) if annotations_file else None
        )
        resolver = AnnotationResolver(overrides=self._overrides.current if self._overrides else (lambda: {}))
        self._registry = PodRegistry(resolve=resolver.resolve)
        self._discovery = Discovery(self._registry, discovery, self._health)
        self._reconciler = Reconciler(ShapingSettings(egress_mode=egress_mode, enabled=False), self._health)
        self._pool = NetlinkSocketPool()
        self._sampler = Sampler(
            pods=self._registry.pods,
            shaping=self._reconciler.statuses,
            pool=self._pool,
            health=self._health,
            interval_s=interval_s,
        )
        self._interval_s = interval_s
        self._seen: dict[str, Pod] = {}
        self._primed = False

    @property
    def description(self) -> str:
        ready, reason = self._discovery.ready()
        where = "sampled by podbw top (observe-only)"
        return where if ready else f"{where}; {reason}"

    def rows(self) -> list[PodRow]:
        if not self._primed:
            # Throughput is a counter delta: the first pass only sets the baseline.
            self._pass()
            time.sleep(self._interval_s)
            self._primed = True
        return rows_from_snapshot(self._pass())

    def _pass(self) -> Snapshot:
        if self._overrides is not None:
            self._overrides.load()  # before the resync, which resolves every pod with it
        self._discovery.resync()
        pods = self._registry.pods()
        current = {pod.sandbox_id for pod in pods}
        for sandbox_id, gone in self._seen.items():
            if sandbox_id not in current:
                self._reconciler.forget(gone)  # observe-only: drops handles, writes nothing
        for pod in pods:
            try:
                self._reconciler.reconcile(pod)
            except Exception as err:  # one odd pod must not blank the whole view
                log.debug("pod left out of the view", extra=pod_fields(pod, cause=str(err)))
        self._seen = {pod.sandbox_id: pod for pod in pods}
        return self._sampler.sample_once()

    def close(self) -> None:
        self._reconciler.close()
        self._pool.close_all()
        self._discovery.stop()
