"""The agent: wires discovery, shaping, sampling and HTTP, and owns their threads."""

from __future__ import annotations

import logging
import threading
import time

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry

from agent import __version__
from agent.discovery.discovery import Discovery
from agent.discovery.overrides_file import OverridesFile
from agent.discovery.registry import REMOVED, PodEvent, PodRegistry
from agent.metrics.collector import PodbwCollector
from agent.metrics.sampler import Sampler
from agent.model.health import HealthRecorder
from agent.netlink.stats_socket import StatsSocketPool
from agent.service.http import MetricsServer
from agent.service.settings import AgentSettings
from agent.service.work_queue import WorkQueue
from agent.shaping.reconciler import Reconciler

log = logging.getLogger(__name__)

STALL_INTERVALS = 3
"""/healthz fails when the sampler has not run for this many intervals."""


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.health = HealthRecorder()
        self.registry = PodRegistry()
        self.queue = WorkQueue()
        self.overrides = (
            OverridesFile(settings.annotations_file, self.health, self.queue.reconcile_all)
            if settings.annotations_file
            else None
        )
        self.reconciler = Reconciler(
            settings.shaping,
            self.health,
            overrides=self.overrides.current if self.overrides else (lambda: {}),
        )
        self.discovery = Discovery(self.registry, settings.discovery, self.health)
        self.pool = StatsSocketPool()
        self.sampler = Sampler(
            pods=self.registry.pods,
            shaping=self.reconciler.statuses,
            pool=self.pool,
            health=self.health,
            interval_s=settings.sample_interval_s,
            peak_window_s=settings.peak_window_s,
        )
        self.metrics_registry = CollectorRegistry(auto_describe=True)
        self.metrics_registry.register(
            PodbwCollector(
                snapshot=lambda: self.sampler.latest,
                health=self.health.data,
                pods_count=lambda: len(self.registry),
                version=__version__,
                interval_s=settings.sample_interval_s,
            )
        )
        self.http = MetricsServer(
            settings.listen_address,
            self.metrics_registry,
            healthy=self._healthy,
            ready=self.discovery.ready,
            certfile=settings.tls_cert_file,
            keyfile=settings.tls_key_file,
            client_cafile=settings.tls_client_ca_file,
            render_key=lambda: self.sampler.latest,
        )
        self.scheduler = BackgroundScheduler(daemon=True)
        self._worker = threading.Thread(target=self._work_loop, name="podbw-reconcile", daemon=True)
        self._stopped = threading.Event()

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.registry.subscribe(self._on_pod_event)
        if self.overrides is not None:
            self.overrides.start()
        self._worker.start()
        self.scheduler.start()
        self.discovery.start(self.scheduler, on_resync=self._after_resync)
        self.sampler.start(self.scheduler)
        self.http.start()
        log.info(
            "podbw %s running: %d pods from %s, metrics on %s",
            __version__,
            len(self.registry),
            self.discovery.mode,
            self.settings.listen_address,
        )

    def stop(self) -> None:
        """Stop every loop. Limits stay in the kernel unless cleanup_on_exit is set."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.http.stop()
        self.discovery.stop()
        if self.overrides is not None:
            self.overrides.stop()
        self.sampler.stop()
        self.scheduler.shutdown(wait=False)
        self.queue.close()
        self._worker.join(2.0)
        # Netlink handles belong to the worker thread that made them: drop them, and let the
        # optional cleanup open fresh ones on this thread.
        self.reconciler.close()
        if self.settings.cleanup_on_exit:
            for pod in self.registry.pods():
                self.reconciler.remove_limits(pod)
            self.reconciler.close()
        self.pool.close_all()

    def _after_resync(self) -> None:
        if self.overrides is not None:
            self.overrides.reload_if_changed()  # the safety net for a change the watch missed
        self.queue.reconcile_all()

    # ---- reconcile worker -----------------------------------------------------------------
    def _on_pod_event(self, event: PodEvent) -> None:
        if event.kind == REMOVED:
            self.queue.remove(event.pod)
        else:
            self.queue.reconcile(event.pod, event.seen_at_monotonic_s)

    def _work_loop(self) -> None:
        try:
            self._work_until_stopped()
        finally:
            # pyroute2's handles (and their asyncio loops) belong to this thread, which made
            # them: closing them here, before the thread's state goes away, leaves no loop for
            # the garbage collector to close at exit ("Exception ignored in __del__" at SIGTERM).
            self.reconciler.close()

    def _work_until_stopped(self) -> None:
        while not self._stopped.is_set():
            work = self.queue.take(timeout_s=1.0)
            if work is None:
                continue
            for pod in work.removed:
                self._guarded(pod.key, lambda p=pod: self.reconciler.forget(p))
            done = set()
            for pod, seen in work.pods:
                self._guarded(pod.key, lambda p=pod, s=seen: self.reconciler.reconcile(p, s))
                done.add(pod.sandbox_id)
            if work.full:
                pods = self.registry.pods()
                for pod in pods:
                    if pod.sandbox_id not in done:
                        self._guarded(pod.key, lambda p=pod: self.reconciler.reconcile(p))
                self._guarded("orphans", lambda: self.reconciler.collect_orphans({p.sandbox_id for p in pods}))

    @staticmethod
    def _guarded(what: str, fn) -> None:
        try:
            fn()
        except Exception:  # one bad pod must never stop shaping for the others
            log.exception("reconcile %s failed", what)

    def _healthy(self) -> tuple[bool, str]:
        last = self.health.data().last_sample_monotonic_s
        if last is None:
            return True, "starting"
        age_s = time.monotonic() - last
        if age_s > STALL_INTERVALS * self.settings.sample_interval_s + 1.0:
            return False, f"sampler stalled: last sample {age_s:.1f}s ago"
        return True, "ok"
