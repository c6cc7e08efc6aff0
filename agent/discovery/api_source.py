"""The Kubernetes API source: this node's pods and every namespace, as the API has them now.

Two reflectors (agent.kube.reflector), one per resource, each on its own thread, feed one
thread-safe store: API pods by UID (namespace, name, podbw annotations, resourceVersion) and
namespaces by name (podbw defaults). A change that can alter a pod's annotations in force goes
to the subscribers at once as an ApiChange (the agent re-resolves the affected pods in the
registry, whose UPDATED events reconcile them). Pods are joined to CRI sandboxes by UID; an API
pod without a sandbox here is only remembered.

While the API cannot be reached the store keeps what it last knew (every known pod keeps its
limit), `podbw_discovery_up{source="kubernetes"}` is 0, and readiness is unaffected: CRI alone
is always enough.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from agent.discovery.settings import KUBERNETES_ON, DiscoverySettings
from agent.kube.client import ResourceClient, namespace_client, pod_client
from agent.kube.reflector import ADDED, DELETED, Delta, Reflector
from agent.model.api_objects import ApiNamespace, ApiPod
from agent.model.health import HealthRecorder
from agent.model.pod import Pod

log = logging.getLogger(__name__)

SOURCE_KUBERNETES = "kubernetes"
REQUEST_TIMEOUT_S = 5.0
"""Connect, list and every other API request but a watch's reads end within this."""
TOMBSTONE_TTL_S = 600.0
"""A pod the API deleted while its sandbox still runs (a forced delete) keeps its last API
annotations this long: CRI's creation-time values must not come back for its last moments."""


@dataclass(frozen=True)
class ApiChange:
    """Pods whose annotations in force may have changed."""

    pod_uids: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    """Every pod of these namespaces (their defaults changed)."""
    seen_at_monotonic_s: float = field(default_factory=time.monotonic)
    """When the API's answer arrived: reconcile latency counts from here."""

    def affects(self, pod: Pod) -> bool:
        return pod.uid in self.pod_uids or pod.namespace in self.namespaces


Listener = Callable[[ApiChange], None]


class ApiStore:
    """What the API said last, for the resolver to read from any thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._pods: dict[str, ApiPod] = {}
        self._gone: dict[str, tuple[ApiPod, float]] = {}
        """uid -> (last record, forget after) for pods the API deleted."""
        self._namespaces: dict[str, ApiNamespace] = {}
        self._clock = clock

    def pod(self, uid: str) -> ApiPod | None:
        """The API's pod with this UID (or one it deleted a moment ago); None: unknown to the API."""
        with self._lock:
            pod = self._pods.get(uid)
            if pod is not None:
                return pod
            gone = self._gone.get(uid)
            return gone[0] if gone is not None and gone[1] > self._clock() else None

    def namespace(self, name: str) -> ApiNamespace | None:
        with self._lock:
            return self._namespaces.get(name)

    def apply_pods(self, deltas: Sequence[Delta[ApiPod]]) -> frozenset[str]:
        """Store the changes; returns the UIDs whose podbw-relevant part changed."""
        changed = set()
        with self._lock:
            now = self._clock()
            for uid in [uid for uid, (_, until) in self._gone.items() if until <= now]:
                del self._gone[uid]
            for delta in deltas:
                pod = delta.obj
                if delta.kind == DELETED:
                    self._pods.pop(pod.uid, None)
                    self._gone[pod.uid] = (pod, now + TOMBSTONE_TTL_S)
                    changed.add(pod.uid)
                    continue
                assert delta.new is not None
                self._pods[pod.uid] = delta.new
                self._gone.pop(pod.uid, None)
                old = delta.old
                if delta.kind == ADDED or old is None or _pod_part(old) != _pod_part(delta.new):
                    changed.add(pod.uid)
        return frozenset(changed)

    def apply_namespaces(self, deltas: Sequence[Delta[ApiNamespace]]) -> frozenset[str]:
        """Store the changes; returns the names whose podbw defaults changed."""
        changed = set()
        with self._lock:
            for delta in deltas:
                name = delta.obj.name
                before = dict(delta.old.annotations) if delta.old is not None else {}
                if delta.kind == DELETED:
                    self._namespaces.pop(name, None)
                    after: dict[str, str] = {}
                else:
                    assert delta.new is not None
                    self._namespaces[name] = delta.new
                    after = dict(delta.new.annotations)
                if before != after:
                    changed.add(name)
        return frozenset(changed)


def _pod_part(pod: ApiPod) -> tuple[str, str, dict[str, str]]:
    return pod.namespace, pod.name, dict(pod.annotations)


class ApiSource:
    """Runs the pod and namespace reflectors and keeps the store; see the module docstring."""

    def __init__(
        self,
        node_name: str,
        health: HealthRecorder,
        client_factory: Callable[[], Any],
    ) -> None:
        """`client_factory` makes a lightkube Client (agent.kube.transport.make_client); it is
        called again after every failure, so configuration errors are retried too."""
        self.store = ApiStore()
        self._health = health
        self._listeners: list[Listener] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._up: dict[str, bool] = {}
        self._reasons: dict[str, str] = {}
        self._attempted = threading.Event()
        self._reported_down = ""
        self._threads: list[threading.Thread] = []
        self._clients: list[ResourceClient] = [
            pod_client(client_factory, node_name),
            namespace_client(client_factory),
        ]
        pods, namespaces = self._clients
        self._reflectors: dict[str, Reflector] = {
            "pods": Reflector(pods, self._on_pods, lambda up, why: self._set_up("pods", up, why)),
            "namespaces": Reflector(namespaces, self._on_namespaces, lambda up, why: self._set_up("namespaces", up, why)),
        }

    # ---- lifecycle -------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        self._health.set_discovery_up(SOURCE_KUBERNETES, False)
        for name, reflector in self._reflectors.items():
            thread = threading.Thread(target=reflector.run, args=(self._stop,), name=f"podbw-kube-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        for client in self._clients:
            client.close()  # ends a watch blocked on a quiet stream
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def wait_synced(self, timeout_s: float) -> bool:
        """Wait until both resources were listed once, or one attempt failed, or timeout_s passed:
        the first resync then resolves pods with the API's values, not CRI's for a moment.
        Returns whether both were listed."""
        self._attempted.wait(timeout_s)
        return self.up

    @property
    def up(self) -> bool:
        with self._lock:
            return len(self._up) == len(self._reflectors) and all(self._up.values())

    def ready(self) -> tuple[bool, str]:
        """(up, why not) for /readyz texts; never a reason to be unready."""
        with self._lock:
            reasons = [f"{name}: {why}" for name, why in self._reasons.items() if why]
        return (True, "kubernetes: up") if self.up else (False, "kubernetes: " + ("; ".join(reasons) or "not listed yet"))

    # ---- reflector callbacks -----------------------------------------------------------------
    def _on_pods(self, deltas: Sequence[Delta[ApiPod]], seen_at: float) -> None:
        changed = self.store.apply_pods(deltas)
        if changed:
            self._notify(ApiChange(pod_uids=changed, seen_at_monotonic_s=seen_at))

    def _on_namespaces(self, deltas: Sequence[Delta[ApiNamespace]], seen_at: float) -> None:
        changed = self.store.apply_namespaces(deltas)
        if changed:
            self._notify(ApiChange(namespaces=changed, seen_at_monotonic_s=seen_at))

    def _notify(self, change: ApiChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # a faulty listener must not stop the watch
                log.exception("kubernetes: change listener failed")

    def _set_up(self, resource: str, up: bool, reason: str) -> None:
        with self._lock:
            self._up[resource] = up
            self._reasons[resource] = reason
            all_up = len(self._up) == len(self._reflectors) and all(self._up.values())
            attempted = len(self._up) == len(self._reflectors) or not up
            came_back = all_up and bool(self._reported_down)
            went_down = not up and not self._reported_down
            if came_back:
                self._reported_down = ""
            elif went_down:
                self._reported_down = reason
            # Under the lock: the two reflectors' threads must not set it in the wrong order.
            self._health.set_discovery_up(SOURCE_KUBERNETES, all_up)
        if attempted:
            self._attempted.set()
        # Logged once per outage, however often the retries fail meanwhile.
        if went_down:
            log.error(
                "kubernetes: %s; known pods keep the limits last resolved, new ones get CRI's annotations", reason
            )
        elif came_back:
            log.info("kubernetes: the API server answers again; pods and namespaces listed")
        elif not up:
            log.debug("kubernetes: still unavailable: %s", reason)


def kube_client_factory(settings: DiscoverySettings) -> Callable[[], Any] | None:
    """What makes a lightkube Client when the settings turn the API on (resolve_kubernetes
    decided `auto`), else None."""
    if settings.kubernetes != KUBERNETES_ON or not settings.node_name:
        return None
    from agent.kube.config import load_config
    from agent.kube.transport import make_client

    def client() -> Any:  # made again after each failure: a kubeconfig that appears later is found
        return make_client(load_config(settings.kubeconfig, settings.service_account_dir), REQUEST_TIMEOUT_S)

    return client

