"""The TBF parameters podbw puts in the kernel for one pod and direction."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TbfParams:
    rate_bytes_per_s: int
    """Token rate. Annotations are bits/s; the kernel and podbw's metrics use bytes/s."""
    burst_bytes: int
    """Bucket size: how much may pass at line rate after an idle period."""
    limit_bytes: int
    """Queue limit: bytes that may wait for tokens (rate x latency + burst)."""
