"""Discovery: keeps the PodRegistry equal to the node's pods, fast on events, sure by resync.

Three inputs feed it: inotify on the netns directory (a new pin triggers a lookup at once), the
CRI event stream when the runtime offers one, and a periodic full resync that repairs whatever
an event missed. With a CRI socket the pods come from CRI; without one, from the pins alone.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from apscheduler.schedulers.base import BaseScheduler

from agent.cri.backoff import Backoff
from agent.cri.client import CriClient
from agent.cri.errors import CriError
from agent.discovery.cri_source import CriSource
from agent.discovery.inotify import (
    IN_CREATE,
    IN_DELETE,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    Inotify,
)
from agent.discovery.netns_source import is_pod_netns, pod_from_netns, scan_netns_dir
from agent.discovery.registry import PodRegistry
from agent.discovery.settings import DiscoverySettings
from agent.model.health import HealthRecorder
from agent.model.pod import Pod
from agent.netlink.netns import NetnsGone, is_netns
from agent.netlink.stats_socket import StatsSocket

log = logging.getLogger(__name__)

SOURCE_CRI = "cri"
SOURCE_NETNS = "netns"


def socket_path(endpoint: str) -> str:
    return endpoint[len("unix://") :] if endpoint.startswith("unix://") else endpoint


class Discovery:
    def __init__(
        self,
        registry: PodRegistry,
        settings: DiscoverySettings,
        health: HealthRecorder,
        cri_factory: Callable[[], CriClient] | None = None,
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._health = health
        endpoint = settings.cri_endpoint
        self._cri_factory = cri_factory or (
            (lambda: CriClient(endpoint, timeout_s=settings.cri_timeout_s)) if endpoint else None
        )
        self._cri_lock = threading.Lock()
        self._cri_source: CriSource | None = None
        self._cri_client: CriClient | None = None
        self._cri_mode = False
        """Sticky: once CRI answered, pods keep coming from CRI even while it restarts."""
        self._cri_ok: bool | None = None
        self._cri_error = ""
        self._stop = threading.Event()
        self._wake_lookup = threading.Event()
        self._pending_lock = threading.Lock()
        self._pending: dict[str, tuple[float, float]] = {}
        """netns path -> (first seen monotonic, give-up deadline)."""
        self._threads: list[threading.Thread] = []
        self._sync_lock = threading.RLock()
        """Serializes full resyncs and lookups so an older listing never overwrites a newer one."""

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, scheduler: BaseScheduler, on_resync: Callable[[], None] | None = None) -> None:
        """Resync once now, then start the watchers and a periodic resync job on `scheduler`."""
        self.resync()

        def periodic() -> None:
            self._safely(self.resync, "resync")
            if on_resync is not None:
                self._safely(on_resync, "after-resync hook")

        scheduler.add_job(
            periodic,
            "interval",
            seconds=self._settings.resync_interval_s,
            id="podbw-discovery-resync",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        for target, name in (
            (self._watch_netns_dir, "podbw-inotify"),
            (self._lookup_loop, "podbw-lookup"),
            (self._events_loop, "podbw-cri-events"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        self._wake_lookup.set()
        with self._cri_lock:
            if self._cri_client is not None:
                self._cri_client.close()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def mode(self) -> str:
        return SOURCE_CRI if self._cri_mode else SOURCE_NETNS

    def ready(self) -> tuple[bool, str]:
        if self._cri_mode:
            if self._cri_ok:
                return True, "cri: up"
            return False, f"cri: {self._cri_error}; serving the last known pods"
        if self._cri_ok is False:
            # The endpoint is there but has never answered: pods are unknown, not absent.
            return False, f"cri: {self._cri_error}"
        return True, f"netns: watching {self._settings.netns_dir}"

    # ---- full resync -----------------------------------------------------------------------
    def resync(self) -> None:
        with self._sync_lock:
            self._resync()

    def _resync(self) -> None:
        seen = time.monotonic()
        if self._cri_available():
            pods = self._list_cri()
            if pods is not None:
                self._registry.replace_all(pods, seen)
            return
        if self._cri_mode:
            return  # CRI is down: keep the pods we know rather than guess from pins
        self._registry.replace_all(scan_netns_dir(self._settings.netns_dir), seen)
        self._health.set_discovery_up(SOURCE_NETNS, os.path.isdir(self._settings.netns_dir))

    def _cri_available(self) -> bool:
        if self._cri_factory is None:
            return False
        if self._cri_mode:
            return True
        return os.path.exists(socket_path(self._settings.cri_endpoint or ""))

    def _list_cri(self) -> list[Pod] | None:
        with self._cri_lock:
            try:
                if self._cri_source is None:
                    self._cri_source = CriSource(self._client)
                # A pin already unmounted is a pod being torn down, even if CRI still lists it.
                pods = [pod for pod in self._cri_source.list_pods() if is_netns(pod.netns_path)]
            except CriError as err:
                self._set_cri_ok(False, str(err))
                return None
            if not self._cri_mode:
                log.info("discovery: pods come from CRI at %s", self._settings.cri_endpoint)
                self._health.set_discovery_up(SOURCE_NETNS, False)
            self._cri_mode = True
            self._set_cri_ok(True, "")
            return pods

    def _client(self) -> CriClient:
        if self._cri_client is None:
            assert self._cri_factory is not None
            self._cri_client = self._cri_factory()
        return self._cri_client

    def _set_cri_ok(self, ok: bool, reason: str) -> None:
        if ok != self._cri_ok:
            if ok:
                log.info("discovery: CRI is up")
            else:
                log.error("discovery: CRI unavailable (%s); keeping %d known pods", reason, len(self._registry))
        self._cri_ok = ok
        self._cri_error = reason
        self._health.set_discovery_up(SOURCE_CRI, ok)

    def _safely(self, fn: Callable[[], None], what: str) -> None:
        try:
            fn()
        except Exception:  # discovery must outlive any single bad answer
            log.exception("discovery: %s failed", what)

    # ---- inotify: a new pin triggers a lookup at once ---------------------------------------
    def _watch_netns_dir(self) -> None:
        netns_dir = self._settings.netns_dir
        while not self._stop.is_set():
            try:
                with Inotify() as inotify:
                    inotify.add_watch(
                        netns_dir, IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR
                    )
                    self._health.set_discovery_up(SOURCE_NETNS, not self._cri_mode)
                    while not self._stop.is_set():
                        for event in inotify.read(0.2):
                            self._on_inotify(netns_dir, event.mask, event.name)
            except FileNotFoundError:
                self._stop.wait(1.0)  # the runtime creates the directory with its first pod
            except OSError as err:
                log.error("discovery: cannot watch %s: %s", netns_dir, err)
                self._stop.wait(5.0)

    def _on_inotify(self, netns_dir: str, mask: int, name: str) -> None:
        if mask & IN_Q_OVERFLOW:
            self._safely(self.resync, "resync after inotify overflow")
            return
        path = os.path.join(netns_dir, name)
        if mask & (IN_CREATE | IN_MOVED_TO):
            now = time.monotonic()
            with self._pending_lock:
                self._pending.setdefault(path, (now, now + self._settings.lookup_timeout_s))
            self._wake_lookup.set()
        elif mask & (IN_DELETE | IN_MOVED_FROM):
            with self._pending_lock:
                self._pending.pop(path, None)
            pod = self._registry.by_netns(path)
            if pod is not None:
                self._registry.remove(pod.sandbox_id)

    def _lookup_loop(self) -> None:
        backoff_s = 0.02
        while not self._stop.is_set():
            with self._pending_lock:
                pending = dict(self._pending)
            if not pending:
                self._wake_lookup.wait(1.0)
                self._wake_lookup.clear()
                backoff_s = 0.02
                continue
            with self._sync_lock:
                self._safely(lambda: self._lookup(pending), "lookup")
            self._stop.wait(backoff_s)
            backoff_s = min(backoff_s * 1.5, 0.25)

    def _lookup(self, pending: dict[str, tuple[float, float]]) -> None:
        now = time.monotonic()
        done: list[str] = []
        # The pin is an empty file at IN_CREATE; it becomes a namespace when bind-mounted.
        ready = {path for path in pending if is_pod_netns(path)}
        for path, (_, deadline) in pending.items():
            if path not in ready and (now > deadline or not os.path.exists(path)):
                done.append(path)
        if ready:
            if self._cri_available():
                pods = self._list_cri()
                by_path = {pod.netns_path: pod for pod in pods or []}
                for path in ready:
                    if path in by_path:
                        self._registry.upsert(by_path[path], pending[path][0])
                        done.append(path)
                    elif now > pending[path][1]:
                        done.append(path)  # e.g. a host-network pod; the resync decides
            else:
                for path in ready:
                    # The veth comes after the pin: wait for it (until the deadline).
                    if has_pod_interface(path) or now > pending[path][1]:
                        name = os.path.basename(path)
                        self._registry.upsert(pod_from_netns(os.path.dirname(path), name), pending[path][0])
                        done.append(path)
        with self._pending_lock:
            for path in done:
                self._pending.pop(path, None)

    # ---- CRI events -------------------------------------------------------------------------
    def _events_loop(self) -> None:
        backoff = Backoff(initial_s=0.2, max_s=5.0)
        while not self._stop.is_set():
            if not (self._cri_mode and self._cri_ok):
                self._stop.wait(0.5)
                continue
            started = time.monotonic()
            got_any = False
            try:
                with self._cri_lock:
                    client = self._client()
                for event in client.events():
                    got_any = True
                    backoff.reset()
                    if self._stop.is_set():
                        return
                    if not event.is_sandbox:
                        continue
                    if event.event_type in ("STOPPED", "DELETED"):
                        self._registry.remove(event.sandbox_id)
                        with self._cri_lock:
                            if self._cri_source is not None:
                                self._cri_source.forget(event.sandbox_id)
                    elif event.event_type in ("CREATED", "STARTED"):
                        self._safely(self.resync, "resync on CRI event")
            except CriError as err:
                if self._stop.is_set():
                    return
                log.debug("discovery: CRI event stream: %s", err)
                self._stop.wait(backoff.next_delay_s())
                continue
            if not got_any and time.monotonic() - started < 1.0:
                # The runtime closes the stream at once when pod events are off (CRI-O's
                # default): inotify and resync carry discovery; look again later.
                self._stop.wait(self._settings.resync_interval_s)


def has_pod_interface(netns_path: str) -> bool:
    """Whether the namespace already has its veth (any link besides loopback with a peer)."""
    try:
        with StatsSocket(netns_path) as sock:
            return any(link.link_ifindex and link.name != "lo" for link in sock.links())
    except (NetnsGone, OSError):
        return False
