"""Pod bandwidth annotations → the CNI bandwidth plugin's runtimeConfig, as CRI-O passes it.

Only what the lab needs: plain numbers with an optional decimal or binary suffix. Values the
lab cannot read are left out (that direction is not limited), the way a typo would leave a pod
unshaped on a node; podbw's own parser (agent.model) is the strict one.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Mapping

log = logging.getLogger(__name__)

INGRESS_RATE_KEY = "kubernetes.io/ingress-bandwidth"
EGRESS_RATE_KEY = "kubernetes.io/egress-bandwidth"
INGRESS_BURST_KEY = "podbw.io/ingress-burst"
EGRESS_BURST_KEY = "podbw.io/egress-burst"

CRIO_BURST_BITS = 2**32 * 8 - 1
"""What CRI-O asks for (a 4 GB bucket)."""
DEFAULT_BURST_BITS = (2**32 - 1) * 8 - 1
"""The largest burst plugin v1.1.1 accepts: it rejects burst/8 >= 2^32-1 ("burst cannot be more
than 4GB"), which CRI-O's own value hits; one byte less behaves the same in the kernel."""

_SUFFIX = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_QUANTITY_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([kMGTPE]i?|Ki)?")


def parse_bits(value: str) -> int | None:
    """'10M' → 10_000_000; None for anything else than a positive number with a known suffix."""
    match = _QUANTITY_RE.fullmatch(value)
    if not match:
        return None
    suffix = match.group(2) or ""
    if suffix not in _SUFFIX:
        return None
    try:
        bits = int(Decimal(match.group(1)) * _SUFFIX[suffix])
    except InvalidOperation:
        return None
    return bits if bits > 0 else None


def runtime_bandwidth(annotations: Mapping[str, str], pod_key: str = "") -> dict[str, int] | None:
    """The `runtimeConfig.bandwidth` entry for a pod, or None when it has no usable limit."""
    entry: dict[str, int] = {}
    for direction, rate_key, burst_key in (
        ("ingress", INGRESS_RATE_KEY, INGRESS_BURST_KEY),
        ("egress", EGRESS_RATE_KEY, EGRESS_BURST_KEY),
    ):
        if rate_key not in annotations:
            continue
        rate = parse_bits(annotations[rate_key])
        if rate is None:
            log.warning("pod %s: ignoring %s=%r", pod_key, rate_key, annotations[rate_key])
            continue
        burst = DEFAULT_BURST_BITS
        if burst_key in annotations:
            parsed = parse_bits(annotations[burst_key])
            if parsed is None:
                log.warning("pod %s: ignoring %s=%r", pod_key, burst_key, annotations[burst_key])
            else:
                burst = min(parsed, DEFAULT_BURST_BITS)
        entry[f"{direction}Rate"] = rate
        entry[f"{direction}Burst"] = burst
    return entry or None
