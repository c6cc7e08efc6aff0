"""Read one device's root (or ingress) qdisc with a single RTM_GETQDISC request.

A qdisc dump walks every device of the namespace and pyroute2 decodes all of it in Python:
on a host with a few hundred veths that costs ~0.1 s per lookup. The kernel answers a non-dump
get for one (ifindex, parent) directly, so reconciling one pod stays cheap at any node size.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from dataclasses import dataclass

RTM_NEWQDISC = 36
RTM_GETQDISC = 38
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_ECHO = 0x8
TCA_KIND = 1
TCA_OPTIONS = 2
TCA_TBF_PARMS = 1
TCA_TBF_RATE64 = 4
NLA_TYPE_MASK = 0x3FFF

_NLMSGHDR = struct.Struct("=IHHII")
_TCMSG = struct.Struct("=BxxxiIII")
_NLATTR = struct.Struct("=HH")
# struct tc_tbf_qopt: rate and peakrate (struct tc_ratespec, 12 bytes each), limit, buffer, mtu
_TBF_QOPT = struct.Struct("=BBHhHI BBHhHI III".replace(" ", ""))
_seq = itertools.count(1)


@dataclass(frozen=True, slots=True)
class RawQdisc:
    kind: str
    handle: int
    parent: int
    tbf_rate_bytes_per_s: int = 0
    tbf_buffer_ticks: int = 0
    tbf_limit_bytes: int = 0


class QdiscGetError(OSError):
    pass


def get_qdisc(sock: socket.socket, ifindex: int, parent: int) -> RawQdisc | None:
    """The qdisc attached at `parent` of `ifindex`; None when there is none or it is one of
    the kernel's built-in placeholders (noop, noqueue).

    Raises QdiscGetError with the errno (ENODEV when the device is gone).
    """
    seq = next(_seq) & 0x7FFFFFFF
    payload = _TCMSG.pack(0, ifindex, 0, parent, 0)
    # The kernel answers a qdisc get through its notification path, which since 6.x sends
    # nothing unless someone listens or the request asks for an echo; and for a built-in qdisc
    # (noop, noqueue) it sends no qdisc at all, so the ACK is what ends the wait.
    flags = NLM_F_REQUEST | NLM_F_ECHO | NLM_F_ACK
    sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(payload), RTM_GETQDISC, flags, seq, 0) + payload)
    found: RawQdisc | None = None
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, msg_type, _flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                raise QdiscGetError(errno.EPROTO, "malformed netlink answer")
            body = offset + _NLMSGHDR.size
            end = offset + length
            offset += (length + 3) & ~3
            if msg_seq != seq:
                continue  # a late answer to an earlier request
            if msg_type == NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", data, body)
                if code in (0, -errno.ENOENT, -errno.EINVAL):
                    return found  # the ACK follows the qdisc, if there was one to show
                raise QdiscGetError(-code, os.strerror(-code))
            if msg_type == RTM_NEWQDISC:
                found = parse_qdisc(data, body, end)
        # the answer continues in the next datagram


def parse_qdisc(data: bytes, start: int, end: int) -> RawQdisc:
    _family, _ifindex, handle, parent, _info = _TCMSG.unpack_from(data, start)
    kind = ""
    options: tuple[int, int] | None = None
    pos = start + _TCMSG.size
    while pos + _NLATTR.size <= end:
        attr_len, attr_type = _NLATTR.unpack_from(data, pos)
        if attr_len < _NLATTR.size:
            break
        value_start, value_end = pos + _NLATTR.size, min(pos + attr_len, end)
        attr_type &= NLA_TYPE_MASK
        if attr_type == TCA_KIND:
            kind = data[value_start:value_end].split(b"\0", 1)[0].decode("ascii", "replace")
        elif attr_type == TCA_OPTIONS:
            options = (value_start, value_end)
        pos += (attr_len + 3) & ~3
    if kind != "tbf" or options is None:
        return RawQdisc(kind, handle, parent)
    rate = buffer = limit = 0
    rate64 = None
    pos, options_end = options
    while pos + _NLATTR.size <= options_end:
        attr_len, attr_type = _NLATTR.unpack_from(data, pos)
        if attr_len < _NLATTR.size:
            break
        value = pos + _NLATTR.size
        attr_type &= NLA_TYPE_MASK
        if attr_type == TCA_TBF_PARMS and attr_len - _NLATTR.size >= _TBF_QOPT.size:
            fields = _TBF_QOPT.unpack_from(data, value)
            rate, limit, buffer = fields[5], fields[12], fields[13]
        elif attr_type == TCA_TBF_RATE64 and attr_len - _NLATTR.size >= 8:
            (rate64,) = struct.unpack_from("=Q", data, value)
        pos += (attr_len + 3) & ~3
    return RawQdisc(kind, handle, parent, rate64 if rate64 is not None else rate, buffer, limit)
