"""Who owns a root qdisc: podbw, nobody (the kernel's default), or someone else (foreign)."""

from __future__ import annotations

from enum import Enum

from agent.model.handles import PODBW_ROOT_HANDLE


class Owner(str, Enum):
    PODBW = "podbw"
    DEFAULT = "default"
    """No qdisc, or the one the kernel attaches by itself: free for podbw to replace."""
    FOREIGN = "foreign"


# Qdiscs the kernel attaches on its own (handle 0: or an auto-allocated 8xxx: major).
KERNEL_DEFAULT_KINDS = frozenset({"noqueue", "pfifo_fast", "mq", "fq_codel", "noop"})
AUTO_HANDLE_MIN_MAJOR = 0x8000


def classify_root(kind: str | None, handle: int) -> Owner:
    if kind is None:
        return Owner.DEFAULT
    if handle == PODBW_ROOT_HANDLE:
        return Owner.PODBW
    if handle == 0 or (kind in KERNEL_DEFAULT_KINDS and (handle >> 16) >= AUTO_HANDLE_MIN_MAJOR):
        return Owner.DEFAULT
    return Owner.FOREIGN


def ifb_name(sandbox_id: str) -> str:
    """podbw's ifb for a pod: `podbw` + 10 hex digits (15 chars, the kernel's IFNAMSIZ - 1)."""
    import hashlib

    return "podbw" + hashlib.sha1(sandbox_id.encode()).hexdigest()[:10]


IFB_PREFIX = "podbw"
