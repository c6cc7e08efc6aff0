"""Shaping settings: where egress is limited and whose qdiscs podbw may replace."""

from __future__ import annotations

from dataclasses import dataclass

from agent.model.option import setting
from agent.model.value_parsers import boolean, one_of

EGRESS_MODE_POD = "pod"
EGRESS_MODE_IFB = "ifb"
EGRESS_MODES = (EGRESS_MODE_POD, EGRESS_MODE_IFB)


@dataclass(frozen=True)
class ShapingSettings:
    egress_mode: str = setting(
        EGRESS_MODE_POD, "--egress-mode", "where pod egress is limited", one_of(*EGRESS_MODES), metavar="pod|ifb"
    )
    """Where pod egress is limited: `pod` (TBF on the pod's eth0) or `ifb` (redirect on the host)."""
    take_over_foreign: bool = setting(
        False, "--take-over-foreign", "replace root qdiscs podbw did not create", boolean, switch=True
    )
    """Replace root qdiscs podbw did not create instead of reporting them as foreign."""
    enabled: bool = True
    """False: observe only (report desired state, change nothing in the kernel)."""
    ifb_owner: str = ""
    """Written as the alias of every ifb this agent creates; orphaned ifbs are removed only when
    their alias is this one, so agents watching different runtimes on one machine (two labs, a
    demo next to the tests) never remove each other's ifbs."""
