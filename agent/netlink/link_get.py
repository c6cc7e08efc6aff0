"""Read one device's name, kind, peer, GSO size and alias with a single RTM_GETLINK request.

The reconciler looks up a handful of devices per pod on every resync; pyroute2 decodes each
answer in full (~40 attributes, ~1 ms on this VM), this reads the five it needs.
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

from agent.netlink.single_get import attr, attributes, cstr, get_one

RTM_NEWLINK = 16
RTM_GETLINK = 18
IFLA_IFNAME = 3
IFLA_LINK = 5
IFLA_LINKINFO = 18
IFLA_OPERSTATE = 16
IFLA_IFALIAS = 20
IFLA_INFO_KIND = 1
IFLA_EXT_MASK = 29
IFLA_LINK_NETNSID = 37
IFLA_GSO_MAX_SIZE = 41
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFF_UP = 0x1
IF_OPER_UNKNOWN = 0
IF_OPER_UP = 6

_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")


@dataclass(frozen=True, slots=True)
class RawLink:
    index: int
    name: str
    kind: str
    link_index: int
    """IFLA_LINK: a veth's peer ifindex (in the peer's namespace); 0 when absent."""
    link_netnsid: int
    """IFLA_LINK_NETNSID; -1 when absent."""
    gso_max_size: int
    """IFLA_GSO_MAX_SIZE; 0 when absent."""
    alias: str = ""
    """IFLA_IFALIAS (`ip link set DEV alias TEXT`); "" when absent."""
    admin_up: bool = False
    """IFF_UP: set up by someone (`ip link set DEV up`)."""
    oper_state: int = IF_OPER_UNKNOWN
    """IFLA_OPERSTATE (RFC 2863: 6 up, 2 down; an ifb that is up says 0, unknown)."""


def get_link(sock: socket.socket, index: int = 0, name: str = "") -> RawLink | None:
    """The device with this ifindex (or, with index 0, this name); None when there is none."""
    payload = _IFINFOMSG.pack(0, 0, index, 0, 0)
    if not index:
        payload += attr(IFLA_IFNAME, name.encode() + b"\0")
    # Statistics are most of a link message and nothing here needs them.
    payload += attr(IFLA_EXT_MASK, _U32.pack(RTEXT_FILTER_SKIP_STATS))
    return get_one(sock, RTM_GETLINK, payload, RTM_NEWLINK, parse_link, absent=(errno.ENODEV, errno.ENXIO))


def parse_link(data: bytes, start: int, end: int) -> RawLink:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, start)
    name = kind = alias = ""
    link_index = gso_max_size = 0
    oper_state = IF_OPER_UNKNOWN
    link_netnsid = -1
    for attr_type, value, value_end in attributes(data, start + _IFINFOMSG.size, end):
        if attr_type == IFLA_IFNAME:
            name = cstr(data, value, value_end)
        elif attr_type == IFLA_LINK and value_end - value >= 4:
            link_index = _U32.unpack_from(data, value)[0]
        elif attr_type == IFLA_LINK_NETNSID and value_end - value >= 4:
            link_netnsid = _S32.unpack_from(data, value)[0]
        elif attr_type == IFLA_GSO_MAX_SIZE and value_end - value >= 4:
            gso_max_size = _U32.unpack_from(data, value)[0]
        elif attr_type == IFLA_LINKINFO:
            kind = _info_kind(data, value, value_end)
        elif attr_type == IFLA_IFALIAS:
            alias = cstr(data, value, value_end)
        elif attr_type == IFLA_OPERSTATE and value_end - value >= 1:
            oper_state = data[value]
    return RawLink(index, name, kind, link_index, link_netnsid, gso_max_size, alias, bool(flags & IFF_UP), oper_state)


def _info_kind(data: bytes, pos: int, end: int) -> str:
    for attr_type, value, value_end in attributes(data, pos, end):
        if attr_type == IFLA_INFO_KIND:
            return cstr(data, value, value_end)
    return ""
