"""The Pod record every layer passes around: what discovery knows about one pod sandbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

SOURCE_CRI = "cri"
SOURCE_NETNS = "netns"


@dataclass(frozen=True)
class Pod:
    """One pod sandbox with its own network namespace."""

    sandbox_id: str
    """CRI sandbox id (or the netns file name in netns-only mode); the primary key."""
    uid: str
    """Kubernetes pod UID (empty in netns-only mode)."""
    namespace: str
    """Kubernetes namespace ("" in netns-only mode)."""
    name: str
    """Kubernetes pod name (the netns file name in netns-only mode)."""
    netns_path: str
    """Path of the pinned network namespace, e.g. /var/run/netns/<uuid>."""
    annotations: Mapping[str, str] = field(default_factory=dict, compare=True, hash=False)
    """Pod annotations as CRI reports them (values at sandbox creation)."""
    ip: str = ""
    """Primary pod IP as the runtime reports it ("" when unknown)."""
    created_at_ns: int = 0
    """Sandbox creation time in ns since the epoch (0 when unknown)."""
    source: str = SOURCE_CRI
    """Which discovery source produced the record: "cri" or "netns"."""

    @property
    def key(self) -> str:
        """namespace/name, the key of the annotations file and of log lines."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def __hash__(self) -> int:
        return hash(self.sandbox_id)
