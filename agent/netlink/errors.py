"""Errors of the netlink adapters. Expected failures carry a clear message, never a traceback."""

from __future__ import annotations

from agent.netlink.netns import NetnsGone

__all__ = ["DumpInterrupted", "NetlinkError", "NetnsGone"]


class NetlinkError(Exception):
    """The kernel answered with an error, or sent something we cannot parse."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno
        """Positive errno from an NLMSG_ERROR / NLMSG_DONE answer; 0 for parse and I/O errors."""


class DumpInterrupted(NetlinkError):
    """Every attempt of a dump came back flagged NLM_F_DUMP_INTR (the table kept changing)."""
