"""Which id a namespace has as seen from the socket's own namespace (RTM_GETNSID).

A veth's IFLA_LINK_NETNSID names its peer's namespace by such an id, so asking the host for the
id of a pod's namespace is how a host veth is proven to lead into that pod.
"""

from __future__ import annotations

import os
import socket
import struct

from agent.netlink.single_get import attr, attributes, get_one

RTM_NEWNSID = 88
RTM_GETNSID = 90
NETNSA_NSID = 1
NETNSA_FD = 3
NETNSA_NSID_NOT_ASSIGNED = -1

_RTGENMSG = struct.Struct("=Bxxx")  # family, padded to 4 bytes
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")


def get_nsid(sock: socket.socket, netns_path: str) -> int | None:
    """The id the socket's namespace gives the namespace pinned at netns_path; None when it has
    none (no device links the two). Raises OSError when the pin cannot be opened."""
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        payload = _RTGENMSG.pack(socket.AF_UNSPEC) + attr(NETNSA_FD, _U32.pack(fd))
        nsid = get_one(sock, RTM_GETNSID, payload, RTM_NEWNSID, _parse_nsid)
    finally:
        os.close(fd)
    return None if nsid is None or nsid == NETNSA_NSID_NOT_ASSIGNED else nsid


def _parse_nsid(data: bytes, start: int, end: int) -> int:
    for attr_type, value, value_end in attributes(data, start + _RTGENMSG.size, end):
        if attr_type == NETNSA_NSID and value_end - value >= 4:
            return _S32.unpack_from(data, value)[0]
    return NETNSA_NSID_NOT_ASSIGNED
