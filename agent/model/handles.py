"""Qdisc handles that mark a qdisc as podbw's, so ownership survives an agent restart."""

from __future__ import annotations

PODBW_MAJOR = 0x5062
"""`5062:` ("Pb" in ASCII); no tool we know of uses it."""
PODBW_ROOT_HANDLE = PODBW_MAJOR << 16
INGRESS_HANDLE = 0xFFFF0000
"""The ingress qdisc's fixed handle `ffff:`."""
REDIRECT_FILTER_PRIO = PODBW_MAJOR
"""Preference of podbw's ifb redirect filter: marks it as podbw's on a shared ingress qdisc."""
TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1


def format_handle(handle: int) -> str:
    """tc's notation: `5062:` for a major-only handle, `5062:1` otherwise."""
    major, minor = handle >> 16, handle & 0xFFFF
    return f"{major:x}:" if minor == 0 else f"{major:x}:{minor:x}"
