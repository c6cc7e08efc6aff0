"""rtnetlink on the wire: constants, requests, message framing, and the one decoder of each record
podbw reads (links, qdiscs with their statistics, RTM_GETSTATS counters, namespace ids).

Pure: bytes in, records out. Only the attributes podbw uses are decoded; the rest are skipped by
length. Malformed input raises NetlinkError, never IndexError or struct.error.
"""

from __future__ import annotations

import struct
from typing import Iterator

from agent.model.kernel import Link, Qdisc
from agent.model.tbf import TbfKernelParams
from agent.netlink.errors import NetlinkError

# <linux/netlink.h>
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_ECHO = 0x8
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED and NLA_F_NET_BYTEORDER

# <linux/rtnetlink.h>
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWQDISC = 36
RTM_GETQDISC = 38
RTM_NEWNSID = 88
RTM_GETNSID = 90
RTM_NEWSTATS = 92
RTM_GETSTATS = 94

# <linux/if_link.h>, <linux/if.h>
IFLA_IFNAME = 3
IFLA_LINK = 5
IFLA_STATS = 7
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_STATS64 = 23
IFLA_EXT_MASK = 29
IFLA_LINK_NETNSID = 37
IFLA_GSO_MAX_SIZE = 41
IFLA_INFO_KIND = 1
IFLA_STATS_LINK_64 = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFF_UP = 0x1

# <linux/rtnetlink.h>, <linux/gen_stats.h>, <linux/pkt_sched.h>, <linux/net_namespace.h>
TCA_KIND = 1
TCA_OPTIONS = 2
TCA_STATS2 = 7
TCA_STATS_BASIC = 1
TCA_STATS_QUEUE = 3
TCA_STATS_PKT64 = 8
TCA_TBF_PARMS = 1
TCA_TBF_RATE64 = 4
NETNSA_NSID = 1
NETNSA_FD = 3
NETNSA_NSID_NOT_ASSIGNED = -1

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info
IF_STATS_MSG = struct.Struct("=BxxxiI")  # family, ifindex, filter_mask
RTGENMSG = struct.Struct("=Bxxx")  # family, padded to 4
RTATTR = struct.Struct("=HH")  # len, type
S32 = struct.Struct("=i")
U32 = struct.Struct("=I")
U64 = struct.Struct("=Q")
# rtnl_link_stats64 begins with these 8 counters on every kernel; later ones were appended.
LINK_STATS64_HEAD = struct.Struct("=8Q")
LINK_STATS32_HEAD = struct.Struct("=8I")
GNET_STATS_BASIC = struct.Struct("=QI")  # bytes, packets (u32; TCA_STATS_PKT64 when it wraps)
GNET_STATS_QUEUE = struct.Struct("=5I")  # qlen, backlog, drops, requeues, overlimits
# struct tc_tbf_qopt: rate and peakrate (struct tc_ratespec, 12 bytes each), limit, buffer, mtu
TC_TBF_QOPT = struct.Struct("=BBHhHIBBHhHIIII")

LinkCounters = tuple[int, int, int, int, int, int, int, int]
"""rx_bytes, rx_packets, rx_errors, rx_dropped, tx_bytes, tx_packets, tx_errors, tx_dropped."""


# ---- framing -------------------------------------------------------------------------------

def request(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), msg_type, flags, seq, 0) + body


def attr(attr_type: int, value: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    raw = RTATTR.pack(RTATTR.size + len(value), attr_type) + value
    return raw + bytes(-len(raw) % 4)


def messages(datagram: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of each message in one received datagram."""
    off, length = 0, len(datagram)
    while length - off >= NLMSGHDR.size:
        msg_len, msg_type, flags, seq, _pid = NLMSGHDR.unpack_from(datagram, off)
        if msg_len < NLMSGHDR.size or off + msg_len > length:
            raise NetlinkError(f"truncated netlink message (nlmsg_len {msg_len}) at offset {off}")
        yield msg_type, flags, seq, datagram[off + NLMSGHDR.size : off + msg_len]
        off += (msg_len + 3) & ~3
    if off < length:
        raise NetlinkError(f"truncated netlink header at offset {off}")


def status(payload: bytes) -> int:
    """The errno (positive; 0 for success) carried by NLMSG_ERROR or NLMSG_DONE."""
    if len(payload) < S32.size:
        return 0
    return -S32.unpack_from(payload)[0]


def attributes(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, value start, value end) of each attribute in buf[start:end]."""
    off = start
    while end - off >= RTATTR.size:
        alen, atype = RTATTR.unpack_from(buf, off)
        if alen < RTATTR.size or off + alen > end:
            raise NetlinkError(f"truncated attribute {atype & NLA_TYPE_MASK} at offset {off}")
        yield atype & NLA_TYPE_MASK, off + RTATTR.size, off + alen
        off += (alen + 3) & ~3


def _cstr(buf: bytes, start: int, end: int) -> str:
    return buf[start:end].split(b"\0", 1)[0].decode("utf-8", "replace")


def _need(start: int, end: int, size: int, what: str) -> None:
    if end - start < size:
        raise NetlinkError(f"{what} is {end - start} bytes, expected at least {size}")


# ---- requests ------------------------------------------------------------------------------

def dump_links(seq: int, with_stats: bool = False) -> bytes:
    body = IFINFOMSG.pack(0, 0, 0, 0, 0)
    if not with_stats:  # statistics are most of a link message
        body += attr(IFLA_EXT_MASK, U32.pack(RTEXT_FILTER_SKIP_STATS))
    return request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def dump_link_stats(seq: int) -> bytes:
    """Every link's struct rtnl_link_stats64 and nothing else: ~200 bytes a link."""
    body = IF_STATS_MSG.pack(0, 0, 1 << (IFLA_STATS_LINK_64 - 1))
    return request(RTM_GETSTATS, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def dump_qdiscs(seq: int) -> bytes:
    return request(RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP, seq, TCMSG.pack(0, 0, 0, 0, 0))


def get_link(seq: int, ifindex: int = 0, name: str = "") -> bytes:
    """One device by ifindex (or, with 0, by name), without its statistics."""
    body = IFINFOMSG.pack(0, 0, ifindex, 0, 0)
    if not ifindex:
        body += attr(IFLA_IFNAME, name.encode() + b"\0")
    body += attr(IFLA_EXT_MASK, U32.pack(RTEXT_FILTER_SKIP_STATS))
    return request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq, body)


def get_qdisc(seq: int, ifindex: int, parent: int) -> bytes:
    # The kernel answers a qdisc get through its notification path, which sends nothing unless
    # the request asks for an echo; the ACK that follows ends the wait.
    body = TCMSG.pack(0, ifindex, 0, parent, 0)
    return request(RTM_GETQDISC, NLM_F_REQUEST | NLM_F_ECHO | NLM_F_ACK, seq, body)


def get_nsid(seq: int, netns_fd: int) -> bytes:
    body = RTGENMSG.pack(0) + attr(NETNSA_FD, U32.pack(netns_fd))
    return request(RTM_GETNSID, NLM_F_REQUEST | NLM_F_ACK, seq, body)


# ---- records -------------------------------------------------------------------------------

def decode_link(payload: bytes) -> Link:
    """An RTM_NEWLINK message: ifinfomsg and its attributes."""
    _need(0, len(payload), IFINFOMSG.size, "RTM_NEWLINK")
    _family, _type, ifindex, flags, _change = IFINFOMSG.unpack_from(payload)
    name = kind = alias = ""
    peer_ifindex = gso_max_size = oper_state = 0
    peer_netnsid = -1
    counters: LinkCounters = (0,) * 8  # type: ignore[assignment]
    have_stats64 = False
    for atype, start, end in attributes(payload, IFINFOMSG.size, len(payload)):
        if atype == IFLA_IFNAME:
            name = _cstr(payload, start, end)
        elif atype == IFLA_LINK:
            _need(start, end, U32.size, "IFLA_LINK")
            peer_ifindex = U32.unpack_from(payload, start)[0]
        elif atype == IFLA_LINK_NETNSID:
            _need(start, end, S32.size, "IFLA_LINK_NETNSID")
            peer_netnsid = S32.unpack_from(payload, start)[0]
        elif atype == IFLA_LINKINFO:
            for inner, istart, iend in attributes(payload, start, end):
                if inner == IFLA_INFO_KIND:
                    kind = _cstr(payload, istart, iend)
        elif atype == IFLA_OPERSTATE and end > start:
            oper_state = payload[start]
        elif atype == IFLA_GSO_MAX_SIZE:
            _need(start, end, U32.size, "IFLA_GSO_MAX_SIZE")
            gso_max_size = U32.unpack_from(payload, start)[0]
        elif atype == IFLA_IFALIAS:
            alias = _cstr(payload, start, end)
        elif atype == IFLA_STATS64:
            _need(start, end, LINK_STATS64_HEAD.size, "IFLA_STATS64")
            counters = _ordered(LINK_STATS64_HEAD.unpack_from(payload, start))
            have_stats64 = True
        elif atype == IFLA_STATS and not have_stats64:  # kernels before 2.6.35 only
            _need(start, end, LINK_STATS32_HEAD.size, "IFLA_STATS")
            counters = _ordered(LINK_STATS32_HEAD.unpack_from(payload, start))
    return Link(
        ifindex, name, kind, peer_ifindex, peer_netnsid, bool(flags & IFF_UP), oper_state, gso_max_size, alias,
        *counters,
    )


def _ordered(head: tuple[int, ...]) -> LinkCounters:
    """rtnl_link_stats' order (packets first, bytes, errors, dropped; rx then tx) in Link's."""
    rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped = head
    return rx_bytes, rx_packets, rx_errors, rx_dropped, tx_bytes, tx_packets, tx_errors, tx_dropped


def decode_link_counters(payload: bytes) -> tuple[int, LinkCounters]:
    """(ifindex, counters) of an RTM_NEWSTATS message asked for IFLA_STATS_LINK_64 only."""
    _need(0, len(payload), IF_STATS_MSG.size, "RTM_NEWSTATS")
    ifindex = IF_STATS_MSG.unpack_from(payload)[1]
    for atype, start, end in attributes(payload, IF_STATS_MSG.size, len(payload)):
        if atype == IFLA_STATS_LINK_64:
            _need(start, end, LINK_STATS64_HEAD.size, "IFLA_STATS_LINK_64")
            return ifindex, _ordered(LINK_STATS64_HEAD.unpack_from(payload, start))
    raise NetlinkError(f"RTM_NEWSTATS for ifindex {ifindex} carries no IFLA_STATS_LINK_64")


def decode_qdisc(payload: bytes) -> Qdisc:
    """An RTM_NEWQDISC message: tcmsg, kind, TCA_STATS2 and, for a TBF, its parameters."""
    _need(0, len(payload), TCMSG.size, "RTM_NEWQDISC")
    _family, ifindex, handle, parent, _info = TCMSG.unpack_from(payload)
    kind = ""
    nbytes = packets = qlen = backlog = drops = requeues = overlimits = 0
    packets64: int | None = None
    options: tuple[int, int] | None = None
    for atype, start, end in attributes(payload, TCMSG.size, len(payload)):
        if atype == TCA_KIND:
            kind = _cstr(payload, start, end)
        elif atype == TCA_OPTIONS:
            options = (start, end)
        elif atype == TCA_STATS2:
            for inner, istart, iend in attributes(payload, start, end):
                if inner == TCA_STATS_BASIC:
                    _need(istart, iend, GNET_STATS_BASIC.size, "TCA_STATS_BASIC")
                    nbytes, packets = GNET_STATS_BASIC.unpack_from(payload, istart)
                elif inner == TCA_STATS_QUEUE:
                    _need(istart, iend, GNET_STATS_QUEUE.size, "TCA_STATS_QUEUE")
                    qlen, backlog, drops, requeues, overlimits = GNET_STATS_QUEUE.unpack_from(payload, istart)
                elif inner == TCA_STATS_PKT64:
                    _need(istart, iend, U64.size, "TCA_STATS_PKT64")
                    packets64 = U64.unpack_from(payload, istart)[0]
    tbf = _decode_tbf(payload, *options) if kind == "tbf" and options is not None else None
    return Qdisc(
        ifindex, handle, parent, kind, nbytes, packets if packets64 is None else packets64,
        drops, overlimits, requeues, backlog, qlen, tbf,
    )


def _decode_tbf(payload: bytes, start: int, end: int) -> TbfKernelParams | None:
    params: tuple[int, ...] | None = None
    rate64: int | None = None
    for atype, vstart, vend in attributes(payload, start, end):
        if atype == TCA_TBF_PARMS:
            _need(vstart, vend, TC_TBF_QOPT.size, "TCA_TBF_PARMS")
            params = TC_TBF_QOPT.unpack_from(payload, vstart)
        elif atype == TCA_TBF_RATE64:
            _need(vstart, vend, U64.size, "TCA_TBF_RATE64")
            rate64 = U64.unpack_from(payload, vstart)[0]
    if params is None:
        return None
    rate, limit, buffer = params[5], params[12], params[13]
    return TbfKernelParams(rate if rate64 is None else rate64, buffer, limit)


def decode_nsid(payload: bytes) -> int:
    """An RTM_NEWNSID answer's id (NETNSA_NSID_NOT_ASSIGNED when none)."""
    for atype, start, end in attributes(payload, RTGENMSG.size, len(payload)):
        if atype == NETNSA_NSID:
            _need(start, end, S32.size, "NETNSA_NSID")
            return S32.unpack_from(payload, start)[0]
    return NETNSA_NSID_NOT_ASSIGNED
