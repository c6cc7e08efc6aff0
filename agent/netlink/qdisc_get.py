"""Read one device's root (or ingress) qdisc with a single RTM_GETQDISC request.

A qdisc dump walks every device of the namespace and pyroute2 decodes all of it in Python:
on a host with a few hundred veths that costs ~0.1 s per lookup. The kernel answers a non-dump
get for one (ifindex, parent) directly, so reconciling one pod stays cheap at any node size.
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

from agent.netlink.single_get import (  # noqa: F401  (NLMSG_ERROR: for tests scripting answers)
    NLM_F_ACK,
    NLM_F_ECHO,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    GetError,
    attributes,
    cstr,
    get_one,
)

RTM_NEWQDISC = 36
RTM_GETQDISC = 38
TCA_KIND = 1
TCA_OPTIONS = 2
TCA_TBF_PARMS = 1
TCA_TBF_RATE64 = 4

_TCMSG = struct.Struct("=BxxxiIII")
# struct tc_tbf_qopt: rate and peakrate (struct tc_ratespec, 12 bytes each), limit, buffer, mtu
_TBF_QOPT = struct.Struct("=BBHhHI BBHhHI III".replace(" ", ""))
QdiscGetError = GetError


@dataclass(frozen=True, slots=True)
class RawQdisc:
    kind: str
    handle: int
    parent: int
    tbf_rate_bytes_per_s: int = 0
    tbf_buffer_ticks: int = 0
    tbf_limit_bytes: int = 0


def get_qdisc(sock: socket.socket, ifindex: int, parent: int) -> RawQdisc | None:
    """The qdisc attached at `parent` of `ifindex`; None when there is none or it is one of
    the kernel's built-in placeholders (noop, noqueue).

    Raises QdiscGetError with the errno (ENODEV when the device is gone).
    """
    # The kernel answers a qdisc get through its notification path, which since 6.x sends
    # nothing unless someone listens or the request asks for an echo; and for a built-in qdisc
    # (noop, noqueue) it sends no qdisc at all, so the ACK is what ends the wait.
    return get_one(
        sock,
        RTM_GETQDISC,
        _TCMSG.pack(0, ifindex, 0, parent, 0),
        RTM_NEWQDISC,
        parse_qdisc,
        flags=NLM_F_REQUEST | NLM_F_ECHO | NLM_F_ACK,
        absent=(errno.ENOENT, errno.EINVAL),
    )


def parse_qdisc(data: bytes, start: int, end: int) -> RawQdisc:
    _family, _ifindex, handle, parent, _info = _TCMSG.unpack_from(data, start)
    kind = ""
    options: tuple[int, int] | None = None
    for attr_type, value_start, value_end in attributes(data, start + _TCMSG.size, end):
        if attr_type == TCA_KIND:
            kind = cstr(data, value_start, value_end)
        elif attr_type == TCA_OPTIONS:
            options = (value_start, value_end)
    if kind != "tbf" or options is None:
        return RawQdisc(kind, handle, parent)
    rate = buffer = limit = 0
    rate64 = None
    for attr_type, value, value_end in attributes(data, *options):
        if attr_type == TCA_TBF_PARMS and value_end - value >= _TBF_QOPT.size:
            fields = _TBF_QOPT.unpack_from(data, value)
            rate, limit, buffer = fields[5], fields[12], fields[13]
        elif attr_type == TCA_TBF_RATE64 and value_end - value >= 8:
            (rate64,) = struct.unpack_from("=Q", data, value)
    return RawQdisc(kind, handle, parent, rate64 if rate64 is not None else rate, buffer, limit)
