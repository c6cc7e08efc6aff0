"""The container runtimes the lab can stand in for, and what differs between them on a node.

Only what podbw can see differs: the name and version CRI's Version reports, how pins in the
netns directory are named, whether a host-network sandbox is pinned, and the verbose info
layout (agent/lab/sandbox_info.py). CNI, the bridge and the state file are the same for both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from agent.lab.errors import LabError


@dataclass(frozen=True)
class Runtime:
    name: str
    """What `podbw lab up --runtime` takes and the state file records."""
    runtime_name: str
    """CRI Version's runtime_name."""
    runtime_version: str
    pin_prefix: str
    pins_host_network: bool
    """CRI-O pins the host's own namespace for host-network sandboxes; containerd makes no pin."""

    def pin_name(self) -> str:
        return f"{self.pin_prefix}{uuid.uuid4()}"


CRIO = Runtime("crio", "cri-o", "1.31.0-podbw-lab", pin_prefix="", pins_host_network=True)
"""pinns names pins with a bare UUID."""
CONTAINERD = Runtime("containerd", "containerd", "v2.1.0-podbw-lab", pin_prefix="cni-", pins_host_network=False)
"""containerd's pkg/netns names them cni-<16 random bytes as a UUID>; its version has a v."""
RUNTIMES = {runtime.name: runtime for runtime in (CRIO, CONTAINERD)}
DEFAULT_RUNTIME = CRIO.name


def runtime_named(name: str) -> Runtime:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise LabError(f"unknown runtime {name!r}: use one of {', '.join(RUNTIMES)}") from None
