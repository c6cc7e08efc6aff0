"""Discovery: keeps the PodRegistry equal to the node's pods, fast on events, sure by resync.

Three inputs feed it: inotify on the netns directory (a new pin triggers a lookup at once), the
CRI event stream when the runtime offers one, and a periodic full resync that repairs whatever
an event missed. With a CRI endpoint configured the pods come from CRI only: while the runtime
is missing or silent the known pods are kept (none at start) and discovery is not ready, since
pins without annotations would lift every limit. Without an endpoint, pods come from the pins.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from apscheduler.schedulers.base import BaseScheduler

from agent.model.backoff import Backoff
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
from agent.discovery.shared_netns import one_pod_per_netns
from agent.model.health import HealthRecorder
from agent.model.pod import Pod, display_key
from agent.model.problems import ProblemLog
from agent.netlink.errors import NetlinkError
from agent.netlink.netns import host_netns_inode
from agent.netlink.socket import NetlinkSocket

log = logging.getLogger(__name__)

SOURCE_CRI = "cri"
SOURCE_NETNS = "netns"
CRI_PROBE_INTERVAL_S = 2.0
"""How often a runtime without an event stream is asked whether it is still there."""




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
        self._cri_ok: bool | None = None
        """Whether the runtime answered the last listing (None: not asked yet)."""
        self._cri_error = ""
        self._on_cri_back: Callable[[], None] | None = None
        self._problems = ProblemLog()
        self._left_out: set[str] = set()
        """Sandboxes left out last listing for sharing another pod's network namespace."""
        self._netns_fallback_used = False
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
        """Resync once now, then start the watchers and a periodic resync job on `scheduler`.
        `on_resync` also runs when the runtime answers again after an outage."""
        self._on_cri_back = on_resync
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
        """Where the pods in the registry came from: "cri" or "netns"."""
        if self._cri_factory is None or self._netns_fallback_used:
            return SOURCE_NETNS
        return SOURCE_CRI

    def ready(self) -> tuple[bool, str]:
        if self._cri_factory is None:
            return True, f"netns: watching {self._settings.netns_dir}"
        if self._cri_ok:
            return True, "cri: up"
        if self._cri_ok is None:
            return False, "cri: not asked yet"
        if self._netns_fallback_used:
            return True, f"cri: {self._cri_error}; listing the pins in {self._settings.netns_dir}"
        return False, f"cri: {self._cri_error}; keeping the {len(self._registry)} known pods"

    def listing_is_complete(self) -> bool:
        """Whether the registry holds every pod of the node as its source last said: only then may
        what belongs to no known pod (an orphaned ifb) be taken for garbage."""
        return self._cri_factory is None or bool(self._cri_ok)

    # ---- full resync -----------------------------------------------------------------------
    def resync(self) -> None:
        with self._sync_lock:
            self._resync()

    def _resync(self) -> None:
        seen = time.monotonic()
        if self._cri_factory is not None:
            pods = self._list_cri()
            if pods is not None:
                self._netns_fallback_used = False
                self._registry.replace_all(pods, seen)
                return
            # The runtime is missing or silent: it has not said any pod is gone, so none is.
            if not (self._settings.netns_fallback and (self._netns_fallback_used or not len(self._registry))):
                return
            self._netns_fallback_used = True
        self._registry.replace_all(scan_netns_dir(self._settings.netns_dir), seen)
        self._health.set_discovery_up(SOURCE_NETNS, os.path.isdir(self._settings.netns_dir))

    def _list_cri(self) -> list[Pod] | None:
        with self._cri_lock:
            try:
                if self._cri_source is None:
                    self._cri_source = CriSource(self._client, self._settings.netns_dir)
                # A pin already unmounted is a pod being torn down, even if CRI still lists it;
                # one that is the host's namespace is never a pod's, whatever CRI says.
                host_inode = host_netns_inode()
                pods = [pod for pod in self._cri_source.list_pods() if is_pod_netns(pod.netns_path, host_inode)]
            except CriError as err:
                self._set_cri_ok(False, str(err))
                return None
            pods = self._one_pod_per_netns(pods)
            came_back = self._cri_ok is False
            self._set_cri_ok(True, "")
        if came_back and self._on_cri_back is not None:
            # Drift and lost events of the outage are repaired now, not at the next resync.
            self._safely(self._on_cri_back, "reconcile after the runtime came back")
        return pods

    def _one_pod_per_netns(self, pods: list[Pod]) -> list[Pod]:
        kept, left_out = one_pod_per_netns(pods, _netns_identity)
        for pod, owner in left_out:
            self._problems.begin(pod.sandbox_id)
            self._problems.report(
                pod.sandbox_id,
                owner.sandbox_id,
                lambda p=pod, o=owner: log.error(
                    "sandbox %s (pod %s) shares its network namespace %r with pod %s, which keeps it: "
                    "%s is neither shaped nor exported",
                    display_key(p.sandbox_id[:13]), p.display, p.netns_path, o.display, p.display,
                ),
            )
            self._problems.end(pod.sandbox_id)
        for sandbox_id in self._left_out - {pod.sandbox_id for pod, _ in left_out}:
            self._problems.forget(sandbox_id)
        self._left_out = {pod.sandbox_id for pod, _ in left_out}
        return kept

    def _client(self) -> CriClient:
        if self._cri_client is None:
            assert self._cri_factory is not None
            self._cri_client = self._cri_factory()
        return self._cri_client

    def _set_cri_ok(self, ok: bool, reason: str) -> None:
        if ok != self._cri_ok:
            if ok:
                log.info("discovery: pods come from CRI at %s", self._settings.cri_endpoint)
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
                    self._health.set_discovery_up(SOURCE_NETNS, self.mode == SOURCE_NETNS)
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
            if self._cri_factory is not None:
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
        """Follow the runtime: its event stream while it offers one, a liveness probe while it
        does not, and a relist with backoff while it is down."""
        if self._cri_factory is None:
            return
        stream_backoff = Backoff(initial_s=0.2, max_s=5.0)
        down_backoff = Backoff(initial_s=0.5, max_s=5.0)
        while not self._stop.is_set():
            if not self._cri_ok:
                # Ask again soon: the runtime's pods are reconciled as soon as it answers.
                if not self._stop.wait(down_backoff.next_delay_s()):
                    self._safely(self.resync, "resync while CRI is down")
                continue
            down_backoff.reset()
            started = time.monotonic()
            got_any = False
            try:
                with self._cri_lock:
                    client = self._client()
                for event in client.events():
                    got_any = True
                    stream_backoff.reset()
                    if self._stop.is_set():
                        return
                    self._on_cri_event(event)
            except CriError as err:
                if self._stop.is_set():
                    return
                log.debug("discovery: CRI event stream: %s", err)
                self._safely(self.resync, "resync after the CRI event stream broke")
                self._stop.wait(stream_backoff.next_delay_s())
                continue
            if not got_any and time.monotonic() - started < 1.0:
                # The runtime closes the stream at once when pod events are off (CRI-O's
                # default): inotify and resync carry discovery; probe that it is still there.
                self._probe_until_down(client, self._settings.resync_interval_s)

    def _on_cri_event(self, event) -> None:
        if not event.is_sandbox:
            return
        if event.event_type in ("STOPPED", "DELETED"):
            self._registry.remove(event.sandbox_id)
            with self._cri_lock:
                if self._cri_source is not None:
                    self._cri_source.forget(event.sandbox_id)
        elif event.event_type in ("CREATED", "STARTED"):
            self._safely(self.resync, "resync on CRI event")

    def _probe_until_down(self, client: CriClient, for_s: float) -> None:
        """Ask the runtime its version every CRI_PROBE_INTERVAL_S for for_s seconds, or until it
        fails to answer: readiness and discovery_up follow a runtime that went away within a few
        seconds, and its pods are reconciled the moment it is back."""
        deadline = time.monotonic() + for_s
        while self._cri_ok and time.monotonic() < deadline:
            if self._stop.wait(CRI_PROBE_INTERVAL_S):
                return
            try:
                client.version()
            except CriError as err:
                self._set_cri_ok(False, str(err))


def _netns_identity(pod: Pod) -> tuple[int, int] | None:
    try:
        st = os.stat(pod.netns_path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def has_pod_interface(netns_path: str) -> bool:
    """Whether the namespace already has its veth (any link besides loopback with a peer)."""
    try:
        with NetlinkSocket(netns_path) as sock:
            return any(link.peer_ifindex and link.name != "lo" for link in sock.links())
    except (NetlinkError, OSError):
        return False
