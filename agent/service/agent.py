"""The agent: wires discovery, shaping, sampling and HTTP, and owns their threads."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry

from agent import __version__
from agent.discovery.api_source import ApiSource, kube_client_factory
from agent.discovery.discovery import Discovery
from agent.discovery.overrides_file import OverridesFile
from agent.discovery.registry import REMOVED, PodEvent, PodRegistry
from agent.discovery.resolver import AnnotationResolver
from agent.kube.events import ApiEventSink
from agent.metrics.build_info import read_revision
from agent.metrics.collector import PodbwCollector
from agent.metrics.sampler import Sampler
from agent.model.health import HealthRecorder
from agent.model.log_fields import pod_fields
from agent.netlink.socket import NetlinkSocketPool
from agent.service.event_recorder import EventRecorder
from agent.service.http import MetricsServer
from agent.service.node_lock import NodeLock
from agent.service.settings import AgentSettings
from agent.service.work_queue import WorkQueue
from agent.shaping.reconciler import Reconciler

log = logging.getLogger(__name__)

STALL_INTERVALS = 3
"""/healthz fails when the sampler has not run for this many intervals."""
API_FIRST_LIST_WAIT_S = 5.0
"""How long the start waits for the API's first lists, so the first resync already has the API's
annotations and does not apply CRI's creation-time ones for a moment."""


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.health = HealthRecorder()
        self.queue = WorkQueue()
        self.overrides = (
            OverridesFile(settings.annotations_file, self.health, lambda: self.registry.reresolve())
            if settings.annotations_file
            else None
        )
        # One way to the API for the pods, the namespaces and the Events, when the settings turn it on.
        client_factory = kube_client_factory(settings.discovery)
        node_name = settings.discovery.node_name or ""
        self.api = ApiSource(node_name, self.health, client_factory) if client_factory else None
        resolver = AnnotationResolver(
            self.api.store if self.api else None, self.overrides.current if self.overrides else (lambda: {})
        )
        self.registry = PodRegistry(resolve=resolver.resolve)
        if self.api is not None:
            self.api.subscribe(lambda change: self.registry.reresolve(change.affects, change.seen_at_monotonic_s))
        self.event_sink = ApiEventSink(client_factory) if client_factory else None
        self.events = EventRecorder(lambda: self.event_sink, node_name, self.health) if client_factory else None
        self.reconciler = Reconciler(
            settings.shaping, self.health, on_event=self.events.record if self.events else lambda event: None
        )
        self.discovery = Discovery(self.registry, settings.discovery, self.health)
        # The ifb owner names exactly what this agent shapes: one runtime and its netns directory.
        self.node_lock = NodeLock(settings.shaping.ifb_owner)
        self.pool = NetlinkSocketPool()
        self.sampler = Sampler(
            pods=self.registry.pods,
            shaping=self.reconciler.statuses,
            pool=self.pool,
            health=self.health,
            interval_s=settings.sampling.interval_s,
            peak_window_s=settings.sampling.peak_window_s,
            max_interfaces=settings.sampling.max_interfaces_per_pod,
        )
        self.metrics_registry = CollectorRegistry(auto_describe=True)
        self.metrics_registry.register(
            PodbwCollector(
                snapshot=lambda: self.sampler.latest,
                health=self.health.data,
                pods_count=lambda: len(self.registry),
                version=__version__,
                revision=read_revision(),
                interval_s=settings.sampling.interval_s,
                max_interfaces=settings.sampling.max_interfaces_per_pod,
                collectors=settings.collectors.enabled,
                unlimited_pods=settings.collectors.unlimited_pods,
            )
        )
        self.http = MetricsServer(
            settings.web.listen_address,
            self.metrics_registry,
            healthy=self._healthy,
            ready=self._ready,
            web_config_file=settings.web.config_file,
            render_key=lambda: self.sampler.latest,
        )
        self.scheduler = BackgroundScheduler(daemon=True)
        self._worker = threading.Thread(target=self._work_loop, name="podbw-reconcile", daemon=True)
        self._stopped = threading.Event()

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if not self._take_node_lock():
            holder = self.node_lock.holder_pid()
            log.warning(
                "another podbw agent%s already shapes the pods of %s; this one changes nothing and "
                "waits for it to stop",
                f" (pid {holder})" if holder else "",
                self.node_lock.scope,
            )
        self.registry.subscribe(self._on_pod_event)
        if self.events is not None:
            self.events.start()
        if self.overrides is not None:
            self.overrides.start()
        if self.api is not None:
            self.api.start()
            self.api.wait_synced(API_FIRST_LIST_WAIT_S)
        self._worker.start()
        self.scheduler.start()
        self.discovery.start(self.scheduler, on_resync=self._after_resync)
        # A full pass now, not in one resync interval: ifbs orphaned while no agent ran go at once.
        self.queue.reconcile_all()
        self.sampler.start(self.scheduler)
        self.http.start()
        log.info(
            "podbw %s running: %d pods from %s%s, metrics on %s",
            __version__,
            len(self.registry),
            self.discovery.mode,
            f" and the Kubernetes API (node {self.settings.discovery.node_name})" if self.api else "",
            self.settings.web.listen_address,
        )

    def stop(self) -> None:
        """Stop every loop. Limits stay in the kernel unless cleanup_on_exit is set."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.http.stop()
        self.discovery.stop()
        if self.api is not None:
            self.api.stop()
        if self.overrides is not None:
            self.overrides.stop()
        self.sampler.stop()
        self.scheduler.shutdown(wait=False)
        self.queue.close()
        self._worker.join(2.0)
        # Netlink handles belong to the worker thread that made them: drop them, and let the
        # optional cleanup open fresh ones on this thread.
        self.reconciler.close()
        if self.settings.cleanup_on_exit and self.node_lock.held:
            for pod in self.registry.pods():
                self.reconciler.remove_limits(pod)
            self.reconciler.close()
        if self.events is not None:
            self.events.stop()
        if self.event_sink is not None:
            self.event_sink.close()
        self.pool.close_all()
        self.node_lock.release()

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

    def _take_node_lock(self) -> bool:
        held = self.node_lock.try_acquire()
        self.reconciler.allow_writes(held)
        self.health.set_node_lock_held(held)
        return held

    def _work_until_stopped(self) -> None:
        while not self._stopped.is_set():
            if not self.node_lock.held and self._take_node_lock():
                log.info("node lock taken: the other agent stopped; shaping from now on")
                self.queue.reconcile_all()
            work = self.queue.take(timeout_s=1.0)
            if work is None:
                continue
            for pod in work.removed:
                self._guarded("forgetting the pod", lambda p=pod: self.reconciler.forget(p), pod_fields(pod))
            done = set()
            for pod, seen in work.pods:
                self._guarded("reconcile", lambda p=pod, s=seen: self.reconciler.reconcile(p, s), pod_fields(pod))
                done.add(pod.sandbox_id)
            if work.full:
                pods = self.registry.pods()
                for pod in pods:
                    if pod.sandbox_id not in done:
                        self._guarded("reconcile", lambda p=pod: self.reconciler.reconcile(p), pod_fields(pod))
                if self.node_lock.held and self.discovery.listing_is_complete():
                    # An ifb of a pod that is merely unknown while the runtime is down is no orphan.
                    self._guarded("orphan cleanup", lambda: self.reconciler.collect_orphans({p.sandbox_id for p in pods}))

    @staticmethod
    def _guarded(what: str, fn: Callable[[], object], fields: dict[str, str] | None = None) -> None:
        try:
            fn()
        except Exception:  # one bad pod must never stop shaping for the others
            log.exception("%s failed", what, extra=fields)

    def _ready(self) -> tuple[bool, str]:
        if not self.node_lock.held:
            return False, f"standby: another podbw agent shapes the pods of {self.node_lock.scope}"
        ready, reason = self.discovery.ready()
        if self.api is not None:
            reason = f"{reason}; {self.api.ready()[1]}"  # told, never a reason to be unready: CRI is enough
        return ready, reason

    def _healthy(self) -> tuple[bool, str]:
        last = self.health.data().last_sample_monotonic_s
        if last is None:
            return True, "starting"
        age_s = time.monotonic() - last
        if age_s > STALL_INTERVALS * self.settings.sampling.interval_s + 1.0:
            return False, f"sampler stalled: last sample {age_s:.1f}s ago"
        return True, "ok"
