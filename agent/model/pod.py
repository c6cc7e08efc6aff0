"""The Pod record every layer passes around: what discovery knows about one pod sandbox."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from agent.model.valuetext import quote_value

_PLAIN_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}(/[A-Za-z0-9][A-Za-z0-9._-]{0,252})?")
"""namespace/name as Kubernetes allows them (DNS labels and subdomains)."""



def display_key(key: str) -> str:
    """A pod's namespace/name for log lines: as it is when it is a plain Kubernetes name, else
    quoted and escaped, since the runtime's word is all there is for it (a newline in it must
    not forge a log line)."""
    return key if _PLAIN_KEY.fullmatch(key) else quote_value(key)


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
    """Pod annotations: as the discovery source reports them (CRI: values at sandbox creation), or
    in the registry, with the podbw keys in force (agent.model.precedence: the annotations file,
    the API's current values, namespace defaults)."""
    ip: str = ""
    """Primary pod IP as the runtime reports it ("" when unknown)."""
    created_at_ns: int = 0
    """Sandbox creation time in ns since the epoch (0 when unknown)."""
    source: str = SOURCE_CRI
    """Which discovery source produced the record: "cri" or "netns"."""
    annotation_sources: Mapping[str, str] = field(default_factory=dict, compare=True, hash=False)
    """podbw key in force -> where its value came from (agent.model.precedence.LimitSource);
    empty until the registry resolves the record."""

    @property
    def key(self) -> str:
        """namespace/name, the key of the annotations file and of log lines."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def display(self) -> str:
        """key, escaped for log lines (display_key)."""
        return display_key(self.key)

    def __hash__(self) -> int:
        return hash(self.sandbox_id)
