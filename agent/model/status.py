"""What the reconciler last established for each pod: read by the sampler and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.model.direction import Direction, ShapingState
from agent.model.tbf_params import TbfParams


@dataclass(frozen=True, slots=True)
class DirectionStatus:
    state: ShapingState
    params: TbfParams | None = None
    """The parameters in the kernel (state APPLIED) or requested (other states)."""
    device: str = ""
    """Device whose root qdisc holds the limit ("" when none)."""
    device_in_pod: bool = False
    """True when `device` lives in the pod's namespace (egress mode `pod`), else in the host's."""
    reason: str = ""
    """Why the state is INVALID, FOREIGN or ERROR, for logs and `podbw pods`."""


@dataclass(frozen=True, slots=True)
class PodShapingStatus:
    sandbox_id: str
    host_interface: str = ""
    """Host-side veth of the pod's eth0 ("" until found)."""
    pod_ifindex: int = 0
    """ifindex of eth0 inside the pod's namespace (0 until found)."""
    directions: dict[Direction, DirectionStatus] = field(default_factory=dict)
    host_ifindex: int = 0
    """ifindex of host_interface in the host's namespace (0 until found), proven from the host side."""
