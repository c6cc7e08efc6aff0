"""Hand-built rtnetlink messages for the codec and socket tests."""

from __future__ import annotations

import struct

from agent.netlink import codec

NLA_F_NESTED = 0x8000


def attr(atype: int, payload: bytes) -> bytes:
    """An attribute, padded to 4 bytes (its length excludes the padding, as the kernel sends it)."""
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    return raw + bytes(-len(raw) % 4)


def nlmsg(msg_type: int, payload: bytes, seq: int = 7, flags: int = codec.NLM_F_MULTI) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), msg_type, flags, seq, 4242) + payload


def done(seq: int = 7, status: int = 0, flags: int = codec.NLM_F_MULTI) -> bytes:
    return nlmsg(codec.NLMSG_DONE, struct.pack("=i", status), seq, flags)


def error(seq: int = 7, errno: int = 0) -> bytes:
    """NLMSG_ERROR: an ACK for errno 0."""
    return nlmsg(codec.NLMSG_ERROR, struct.pack("=i", -errno) + bytes(16), seq, 0)


STATS64 = (
    # rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped
    11, 22, 5_000_000_000_123, 6_000_000_000_456, 3, 4, 5, 6,
    # multicast, collisions, and 14 more counters newer kernels append
    *range(100, 116),
)
COUNTERS = dict(
    rx_bytes=5_000_000_000_123, rx_packets=11, rx_errors=3, rx_dropped=5,
    tx_bytes=6_000_000_000_456, tx_packets=22, tx_errors=4, tx_dropped=6,
)


def link_payload(
    ifindex: int = 7, name: str = "eth0", *, kind: str = "veth", peer: int = 42, netnsid: int | None = 3,
    up: bool = True, alias: str = "", gso: int | None = 65536, stats: bool = True, extra: bytes = b"",
) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, ifindex, 0x1043 if up else 0x1042, 0)
    body += attr(codec.IFLA_IFNAME, name.encode() + b"\0")
    body += attr(4, struct.pack("=I", 1500))  # IFLA_MTU: not read, skipped
    body += extra
    if peer:
        body += attr(codec.IFLA_LINK, struct.pack("=I", peer))
    body += attr(codec.IFLA_OPERSTATE, bytes([6 if up else 2]))
    if stats:
        body += attr(codec.IFLA_STATS, struct.pack("=8I", *range(1, 9)))  # 32-bit: STATS64 wins
        body += attr(codec.IFLA_STATS64, struct.pack(f"={len(STATS64)}Q", *STATS64))
    if kind:
        linkinfo = attr(codec.IFLA_INFO_KIND, kind.encode() + b"\0") + attr(2, attr(1, struct.pack("=I", 9)))
        body += attr(codec.IFLA_LINKINFO | NLA_F_NESTED, linkinfo)
    if netnsid is not None:
        body += attr(codec.IFLA_LINK_NETNSID, struct.pack("=i", netnsid))
    if gso is not None:
        body += attr(codec.IFLA_GSO_MAX_SIZE, struct.pack("=I", gso))
    if alias:
        body += attr(codec.IFLA_IFALIAS, alias.encode() + b"\0")
    body += attr(26 | NLA_F_NESTED, attr(10, bytes(300)))  # IFLA_AF_SPEC: skipped whole
    return body


def stats_payload(ifindex: int, pad: bool = False, counters: tuple[int, ...] = STATS64) -> bytes:
    """RTM_NEWSTATS with IFLA_STATS_LINK_64 (after a pad attribute, as some architectures send)."""
    body = struct.pack("=BxxxiI", 0, ifindex, 1)
    if pad:
        body += attr(0, b"")
    return body + attr(codec.IFLA_STATS_LINK_64, struct.pack(f"={len(counters)}Q", *counters))


def tbf_options(rate: int, limit: int, buffer: int, rate64: int | None = None) -> bytes:
    qopt = struct.pack("=BBHhHI", 0, 1, 0, 0, 0, rate) + struct.pack("=BBHhHI", 0, 0, 0, 0, 0, 0)
    qopt += struct.pack("=III", limit, buffer, 0)
    return attr(codec.TCA_TBF_PARMS, qopt) + (attr(codec.TCA_TBF_RATE64, struct.pack("=Q", rate64)) if rate64 else b"")


def qdisc_payload(
    ifindex: int = 9, *, kind: str = "tbf", handle: int = 0x50620000, parent: int = 0xFFFFFFFF,
    pkt64: int | None = 7_000_000_000, options: bytes | None = None,
) -> bytes:
    body = struct.pack("=BxxxiIII", 0, ifindex, handle, parent, 1)
    stats2 = attr(codec.TCA_STATS_BASIC, struct.pack("=QI", 9_876_543_210, 2_705_032_704) + bytes(4))
    stats2 += attr(2, bytes(8))  # TCA_STATS_RATE_EST: skipped
    stats2 += attr(codec.TCA_STATS_QUEUE, struct.pack("=5I", 4, 6000, 17, 2, 99))
    if pkt64 is not None:
        stats2 += attr(6, b"")  # TCA_STATS_PAD
        stats2 += attr(codec.TCA_STATS_PKT64, struct.pack("=Q", pkt64))
    body += attr(codec.TCA_KIND, kind.encode() + b"\0")
    if options is None and kind == "tbf":
        options = tbf_options(rate=1_250_000, limit=7500, buffer=62500)
    if options is not None:
        body += attr(codec.TCA_OPTIONS | NLA_F_NESTED, options)
    body += attr(codec.TCA_STATS2 | NLA_F_NESTED, stats2)
    body += attr(3, bytes(36))  # the old TCA_STATS: skipped
    body += attr(250, b"future")  # unknown attribute
    return body


def nsid_payload(nsid: int) -> bytes:
    return struct.pack("=Bxxx", 0) + attr(codec.NETNSA_NSID, struct.pack("=i", nsid))
