"""Shaping settings (from flags / PODBW_* environment)."""

from __future__ import annotations

from dataclasses import dataclass

EGRESS_MODE_POD = "pod"
EGRESS_MODE_IFB = "ifb"
EGRESS_MODES = (EGRESS_MODE_POD, EGRESS_MODE_IFB)


@dataclass(frozen=True)
class ShapingSettings:
    egress_mode: str = EGRESS_MODE_POD
    """Where pod egress is limited: `pod` (TBF on the pod's eth0) or `ifb` (redirect on the host)."""
    take_over_foreign: bool = False
    """Replace root qdiscs podbw did not create instead of reporting them as foreign."""
    enabled: bool = True
    """False: observe only (report desired state, change nothing in the kernel)."""
    ifb_owner: str = ""
    """Written as the alias of every ifb this agent creates; orphaned ifbs are removed only when
    their alias is this one, so agents watching different runtimes on one machine (two labs, a
    demo next to the tests) never remove each other's ifbs."""
