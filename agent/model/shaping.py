"""The shaping plan's types: what the kernel holds for a pod (KernelView), what podbw wants
(Intent), and the operations that turn one into the other (Op). Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping, Union

from agent.model.annotations import DesiredDirection
from agent.model.direction import Direction
from agent.model.kernel import Filter, Link, Qdisc
from agent.model.status import DirectionStatus
from agent.model.tbf_params import TbfParams


@dataclass(frozen=True, slots=True)
class PodDevices:
    """A pod's veth pair, proven from the host side."""

    pod_ifindex: int
    pod_ifname: str
    host_ifindex: int
    host_ifname: str


@dataclass(frozen=True)
class KernelView:
    """What the kernel holds for one pod: everything plan() decides on."""

    devices: PodDevices
    host_root: Qdisc | None = None
    """Root qdisc of the host veth (None: the kernel's default)."""
    pod_root: Qdisc | None = None
    """Root qdisc of the pod's veth, inside its namespace."""
    pod_gso_max_bytes: int = 0
    """gso_max_size of the pod's veth (0: unknown)."""
    host_ingress: Qdisc | None = None
    """The qdisc at ffff: of the host veth (egress mode ifb redirects from there)."""
    ingress_filters: tuple[Filter, ...] = ()
    """Filters on host_ingress."""
    ifb: Link | None = None
    """The pod's ifb, by the name podbw gives it."""
    ifb_root: Qdisc | None = None


@dataclass(frozen=True)
class Intent:
    """What podbw wants for one pod."""

    directions: Mapping[Direction, DesiredDirection]
    egress_mode: str
    """`pod` (TBF on the pod's veth) or `ifb` (redirect on the host to an ifb)."""
    take_over_foreign: bool
    ifb_name: str
    ifb_owner: str
    """The alias podbw gives the ifbs it makes: whose they are."""


class Side(str, Enum):
    HOST = "host"
    POD = "pod"


@dataclass(frozen=True)
class Device:
    side: Side
    name: str
    ifindex: int = 0
    """0: looked up by name when applied (an ifb the same plan creates)."""


@dataclass(frozen=True)
class ReplaceTbf:
    device: Device
    params: TbfParams
    label: str
    """apply, update or takeover: for podbw_shaping_operations_total{op}."""
    direction: Direction
    delete_first: int | None = None
    """The handle of a root to delete first: a shrinking bucket must start from an empty queue."""


@dataclass(frozen=True)
class DeleteRoot:
    device: Device
    handle: int
    direction: Direction | None
    label: str = "remove"


@dataclass(frozen=True)
class CreateIfb:
    name: str
    alias: str
    direction: Direction = Direction.EGRESS
    label: str = "apply"


@dataclass(frozen=True)
class SetUp:
    """Set the pod's ifb up with podbw's alias: one set down, or half made by a killed agent."""

    device: Device
    alias: str
    direction: Direction = Direction.EGRESS
    label: str = "update"


@dataclass(frozen=True)
class DeleteIfb:
    device: Device
    direction: Direction | None = Direction.EGRESS
    label: str = "remove"


@dataclass(frozen=True)
class AddRedirect:
    """An ingress qdisc on the host veth with podbw's u32 match-all filter redirecting to the ifb."""

    host: Device
    ifb: Device
    direction: Direction = Direction.EGRESS
    label: str = "apply"


@dataclass(frozen=True)
class DeleteIngress:
    host: Device
    direction: Direction | None = Direction.EGRESS
    label: str = "remove"


@dataclass(frozen=True)
class SetGso:
    """Cap (or give back) the pod's GSO size: a goodput aid, not a limit, so never counted as a
    shaping operation and a failure is only reported."""

    device: Device
    size_bytes: int
    direction: Direction | None = None
    label: str | None = None


Op = Union[ReplaceTbf, DeleteRoot, CreateIfb, SetUp, DeleteIfb, AddRedirect, DeleteIngress, SetGso]


@dataclass(frozen=True)
class Plan:
    ops: tuple[Op, ...]
    statuses: Mapping[Direction, DirectionStatus] = field(default_factory=dict)
    """Each direction's state once every op has been applied."""

    def pending(self) -> frozenset[Direction]:
        """Directions the kernel does not hold as wanted yet."""
        return frozenset(op.direction for op in self.ops if op.direction is not None)
