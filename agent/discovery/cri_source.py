"""Pods from the CRI runtime: ListPodSandbox (READY) plus PodSandboxStatus(verbose) per new sandbox."""

from __future__ import annotations

import logging
import os
from typing import Callable, Protocol

from agent.cri.client import SandboxDetails
from agent.cri.errors import CriError, CriInfoError, CriNotFound
from agent.model.pod import SOURCE_CRI, Pod, display_key
from agent.netlink.netns import host_netns_inode, is_netns, netns_inode

log = logging.getLogger(__name__)


class CriRuntime(Protocol):
    def list_ready_sandboxes(self) -> list: ...
    def sandbox_status(self, sandbox_id: str) -> SandboxDetails: ...


def pod_from_details(details: SandboxDetails) -> Pod | None:
    """The Pod record for a sandbox, or None when podbw has nothing to do with it."""
    if details.host_network or not details.netns_path:
        return None
    return Pod(
        sandbox_id=details.id,
        uid=details.uid,
        namespace=details.namespace,
        name=details.name,
        netns_path=details.netns_path,
        annotations=dict(details.annotations),
        ip=details.ip,
        created_at_ns=details.created_at_ns,
        source=SOURCE_CRI,
    )


def refusal(details: SandboxDetails, netns_dir: str, host_inode: int) -> str:
    """Why a sandbox's namespace must never be shaped or exported as a pod's ("" when it may).

    The runtime's word is not enough for the host's own namespace: a path outside the runtime's
    netns directory, or a pin that is the host's namespace, would put a pod's limit on the node."""
    path = details.netns_path or ""
    if os.path.dirname(os.path.realpath(path)) != os.path.realpath(netns_dir):
        return f"its network namespace {path!r} is outside the runtime's netns directory {netns_dir}"
    try:
        if is_netns(path) and netns_inode(path) == host_inode:
            return f"its network namespace {path!r} is the host's own"
    except OSError:
        pass  # gone meanwhile: the listing drops pins that are not namespaces
    return ""


class CriSource:
    """Lists pods through CRI. Sandbox details never change, so each is fetched once."""

    def __init__(self, runtime_factory: Callable[[], CriRuntime], netns_dir: str = "/var/run/netns") -> None:
        self._runtime_factory = runtime_factory
        self._netns_dir = netns_dir
        self._host_inode = host_netns_inode()
        self._runtime: CriRuntime | None = None
        self._details: dict[str, SandboxDetails | None] = {}
        """sandbox id -> details (None: skipped for good, e.g. host network or malformed info)."""

    def _rt(self) -> CriRuntime:
        if self._runtime is None:
            self._runtime = self._runtime_factory()
        return self._runtime

    def list_pods(self) -> list[Pod]:
        """All ready pods with their own network namespace. Raises CriError when CRI is down."""
        runtime = self._rt()
        ready = runtime.list_ready_sandboxes()
        ids = {summary.id for summary in ready}
        for stale in set(self._details) - ids:
            del self._details[stale]
        pods = []
        for sandbox_id in sorted(ids):
            if sandbox_id not in self._details:
                self._details[sandbox_id] = self._fetch(runtime, sandbox_id)
            details = self._details[sandbox_id]
            pod = pod_from_details(details) if details is not None else None
            if pod is not None:
                pods.append(pod)
        return pods

    def _fetch(self, runtime: CriRuntime, sandbox_id: str) -> SandboxDetails | None:
        try:
            details = runtime.sandbox_status(sandbox_id)
        except CriInfoError as err:
            log.error("sandbox %s skipped: %s", display_key(sandbox_id[:13]), err)
            return None
        except CriNotFound:
            return None  # removed between List and Status; the next resync agrees
        if details.host_network or not details.netns_path:
            return details
        reason = refusal(details, self._netns_dir, self._host_inode)
        if reason:
            # Fetched once per sandbox, so said once: the refusal is for good.
            pod = display_key(f"{details.namespace}/{details.name}")
            log.error("sandbox %s (pod %s) skipped: %s", display_key(sandbox_id[:13]), pod, reason)
            return None
        return details

    def forget(self, sandbox_id: str) -> None:
        self._details.pop(sandbox_id, None)


__all__ = ["CriSource", "pod_from_details", "CriError"]
