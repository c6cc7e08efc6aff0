"""Who owns a root qdisc: podbw, nobody (the kernel's default), or someone else (foreign)."""

from __future__ import annotations

import re
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


IFB_NAME_RE = re.compile(r"podbw[0-9a-f]{10}")
"""What ifb_name() makes."""


def ifb_name(sandbox_id: str) -> str:
    """podbw's ifb for a pod: `podbw` + 10 hex digits (15 chars, the kernel's IFNAMSIZ - 1)."""
    import hashlib

    return "podbw" + hashlib.sha1(sandbox_id.encode()).hexdigest()[:10]


IFALIAS_MAX_BYTES = 255
"""IFALIASZ (256) less the terminating NUL."""


def ifb_owner(cri_endpoint: str | None, netns_dir: str) -> str:
    """The alias podbw gives its ifbs: which runtime's pods they serve. Stable across restarts
    with the same flags, so an agent finds its own orphans, and different for an agent watching
    another runtime or netns directory on the same machine (a lab next to a demo)."""
    owner = f"podbw cri={cri_endpoint or 'none'} netns={netns_dir}"
    return owner.encode()[:IFALIAS_MAX_BYTES].decode("utf-8", "ignore")

