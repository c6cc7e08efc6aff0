"""Directions and shaping states, named from the pod's point of view."""

from __future__ import annotations

from enum import Enum


class Direction(str, Enum):
    INGRESS = "ingress"
    """Traffic into the pod."""
    EGRESS = "egress"
    """Traffic out of the pod."""


class ShapingState(str, Enum):
    UNLIMITED = "unlimited"
    """No limit requested; podbw keeps no qdisc for this direction."""
    APPLIED = "applied"
    """podbw's TBF is in the kernel with the desired parameters."""
    INVALID = "invalid"
    """The annotation is malformed or out of range; the direction is left unshaped."""
    FOREIGN = "foreign"
    """A root qdisc podbw did not create sits where the limit would go; left alone."""
    ERROR = "error"
    """Applying failed (netlink error, device gone); retried on the next resync."""
