"""The netlink adapter's errors: what went wrong, told by what a caller can do about it."""

from __future__ import annotations

import errno as errnos
import os


class NetlinkError(Exception):
    """The kernel refused a request, or answered something that cannot be read. The message
    names the namespace, the device and the operation."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno
        """The kernel's errno (positive); 0 for a reply that cannot be parsed."""


class Gone(NetlinkError):
    """The namespace or the device is gone (the pod is being torn down): not a fault."""


class Busy(NetlinkError):
    """The kernel was busy, or a dump kept being interrupted by changes: try again later."""


class PermissionDenied(NetlinkError):
    """The agent lacks a capability (NET_ADMIN, SYS_ADMIN) for the request."""


_BY_ERRNO: dict[int, type[NetlinkError]] = {
    errnos.ENODEV: Gone,
    errnos.ENXIO: Gone,
    errnos.EBUSY: Busy,
    errnos.EAGAIN: Busy,
    errnos.EINTR: Busy,
    errnos.EPERM: PermissionDenied,
    errnos.EACCES: PermissionDenied,
}


def error_for(errno: int, what: str) -> NetlinkError:
    """The error for a kernel's errno, its message `what: <strerror>`."""
    try:
        reason = os.strerror(errno)
    except ValueError:
        reason = f"errno {errno}"
    return _BY_ERRNO.get(errno, NetlinkError)(f"{what}: {reason}", errno)
