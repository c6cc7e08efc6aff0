"""Pure parsing of rtnetlink link/qdisc dumps from hand-built bytes, and the dump retry logic."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model.snapshot import LinkStats, QdiscStats
from agent.netlink import stats_parse as sp
from agent.netlink.errors import DumpInterrupted, NetlinkError
from agent.netlink.netns import NetnsGone
from agent.netlink.stats_socket import MAX_DUMP_RETRIES, StatsSocket, StatsSocketPool

NLA_F_NESTED = 0x8000


# -- builders -------------------------------------------------------------------------------


def attr(atype: int, payload: bytes) -> bytes:
    """An rtattr, padded to 4 bytes (rta_len excludes the padding, as the kernel sends it)."""
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    return raw + bytes(-len(raw) % 4)


def nlmsg(msg_type: int, payload: bytes, seq: int = 7, flags: int = sp.NLM_F_MULTI) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), msg_type, flags, seq, 4242) + payload


def done(seq: int = 7, status: int = 0, flags: int = sp.NLM_F_MULTI) -> bytes:
    return nlmsg(sp.NLMSG_DONE, struct.pack("=i", status), seq, flags)


def error(seq: int = 7, errno: int = 1) -> bytes:
    return nlmsg(sp.NLMSG_ERROR, struct.pack("=i", -errno) + bytes(16), seq, 0)


STATS64 = (
    # rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped
    11, 22, 5_000_000_000_123, 6_000_000_000_456, 3, 4, 5, 6,
    # multicast, collisions, and 14 more counters newer kernels append
    *range(100, 116),
)


def link_payload(ifindex: int = 7, *, extra: bytes = b"", full: bool = True) -> bytes:
    ifinfomsg = struct.pack("=BxHiII", 0, 1, ifindex, 0x1043, 0)
    attrs = attr(sp.IFLA_IFNAME, b"eth0\0")
    attrs += attr(4, struct.pack("=I", 1500))  # IFLA_MTU: unknown to the parser, skipped
    attrs += extra
    if full:
        attrs += attr(sp.IFLA_LINK, struct.pack("=I", 42))
        attrs += attr(sp.IFLA_STATS, struct.pack("=8I", *range(1, 9)))  # 32-bit: must lose
        attrs += attr(sp.IFLA_STATS64, struct.pack(f"={len(STATS64)}Q", *STATS64))
        linkinfo = attr(sp.IFLA_INFO_KIND, b"veth\0") + attr(2, attr(1, struct.pack("=I", 9)))
        attrs += attr(sp.IFLA_LINKINFO, linkinfo)
        attrs += attr(sp.IFLA_LINK_NETNSID, struct.pack("=i", 3))
    attrs += attr(26 | NLA_F_NESTED, attr(10, bytes(300)))  # IFLA_AF_SPEC: skipped whole
    return ifinfomsg + attrs


EXPECTED_LINK = LinkStats(
    ifindex=7, name="eth0", link_ifindex=42, link_netnsid=3, kind="veth",
    rx_bytes=5_000_000_000_123, rx_packets=11, rx_errors=3, rx_dropped=5,
    tx_bytes=6_000_000_000_456, tx_packets=22, tx_errors=4, tx_dropped=6,
)


def qdisc_payload(*, pkt64: int | None = 7_000_000_000, ifindex: int = 9) -> bytes:
    tcmsg = struct.pack("=BxxxiIII", 0, ifindex, 0x50620000, 0xFFFFFFFF, 1)
    stats2 = attr(sp.TCA_STATS_BASIC, struct.pack("=QI", 9_876_543_210, 2_705_032_704) + bytes(4))
    stats2 += attr(2, bytes(8))  # TCA_STATS_RATE_EST: skipped
    stats2 += attr(sp.TCA_STATS_QUEUE, struct.pack("=5I", 4, 6000, 17, 2, 99))
    if pkt64 is not None:
        stats2 += attr(6, b"")  # TCA_STATS_PAD
        stats2 += attr(sp.TCA_STATS_PKT64, struct.pack("=Q", pkt64))
    attrs = attr(sp.TCA_KIND, b"tbf\0")
    attrs += attr(2 | NLA_F_NESTED, attr(1, bytes(36)))  # TCA_OPTIONS: skipped
    attrs += attr(sp.TCA_STATS2 | NLA_F_NESTED, stats2)
    attrs += attr(3, bytes(36))  # old TCA_STATS: skipped
    attrs += attr(250, b"future")  # unknown attribute
    return tcmsg + attrs


EXPECTED_QDISC = QdiscStats(
    ifindex=9, handle=0x50620000, parent=0xFFFFFFFF, kind="tbf", bytes=9_876_543_210,
    packets=7_000_000_000, drops=17, overlimits=99, requeues=2, backlog_bytes=6000,
    backlog_packets=4,
)


def parse_links(data: bytes, seq: int = 7) -> sp.DumpChunk:
    return sp.parse_dump_chunk(data, len(data), seq, sp.RTM_NEWLINK, sp.parse_link)


def parse_qdiscs(data: bytes, seq: int = 7) -> sp.DumpChunk:
    return sp.parse_dump_chunk(data, len(data), seq, sp.RTM_NEWQDISC, sp.parse_qdisc)


# -- records --------------------------------------------------------------------------------


def test_link_message_decodes_the_needed_attributes_and_prefers_stats64() -> None:
    chunk = parse_links(nlmsg(sp.RTM_NEWLINK, link_payload()) + done())
    assert chunk.records == [EXPECTED_LINK]
    assert chunk.done and not chunk.interrupted


def test_link_without_peer_or_linkinfo_gets_defaults() -> None:
    record = sp.parse_link(link_payload(ifindex=1, full=False))
    assert (record.ifindex, record.name, record.link_ifindex, record.link_netnsid, record.kind) == (
        1, "eth0", 0, -1, ""
    )
    assert record.rx_bytes == record.tx_packets == 0


def test_unknown_and_nested_flagged_attributes_are_skipped() -> None:
    extra = attr(999, b"\xff" * 13) + attr(0x3FF0 | NLA_F_NESTED, attr(1, b"xx"))
    assert sp.parse_link(link_payload(extra=extra)) == EXPECTED_LINK


def test_qdisc_message_uses_pkt64_for_packets() -> None:
    chunk = parse_qdiscs(nlmsg(sp.RTM_NEWQDISC, qdisc_payload()) + done())
    assert chunk.records == [EXPECTED_QDISC]


def test_qdisc_without_pkt64_falls_back_to_32_bit_packets() -> None:
    assert sp.parse_qdisc(qdisc_payload(pkt64=None)).packets == 2_705_032_704


def test_several_messages_in_one_datagram() -> None:
    data = b"".join(nlmsg(sp.RTM_NEWQDISC, qdisc_payload(ifindex=i)) for i in (1, 2, 3))
    chunk = parse_qdiscs(data)
    assert [q.ifindex for q in chunk.records] == [1, 2, 3]
    assert not chunk.done


# -- dump framing ---------------------------------------------------------------------------


def test_messages_of_another_sequence_number_are_ignored() -> None:
    data = nlmsg(sp.RTM_NEWLINK, link_payload(ifindex=5), seq=6) + done(seq=6)
    data += nlmsg(sp.RTM_NEWLINK, link_payload())
    chunk = parse_links(data + done())
    assert [r.ifindex for r in chunk.records] == [7]


def test_dump_intr_flag_marks_the_chunk_interrupted() -> None:
    flags = sp.NLM_F_MULTI | sp.NLM_F_DUMP_INTR
    chunk = parse_links(nlmsg(sp.RTM_NEWLINK, link_payload(), flags=flags) + done())
    assert chunk.interrupted and chunk.done


def test_nlmsg_error_raises_with_errno() -> None:
    with pytest.raises(NetlinkError) as info:
        parse_links(error(errno=95))
    assert info.value.errno == 95


def test_done_with_negative_status_raises() -> None:
    with pytest.raises(NetlinkError) as info:
        parse_links(done(status=-4))
    assert info.value.errno == 4


def test_dump_request_layout() -> None:
    req = sp.dump_request(sp.RTM_GETQDISC, 12)
    assert struct.unpack_from("=IHHII", req) == (36, sp.RTM_GETQDISC, 0x301, 12, 0)
    assert len(sp.dump_request(sp.RTM_GETLINK, 1)) == 32


# -- malformed input: always NetlinkError -----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("link", nlmsg(sp.RTM_NEWLINK, link_payload()) + done()),
        ("qdisc", nlmsg(sp.RTM_NEWQDISC, qdisc_payload()) + done()),
    ],
)
def test_every_truncation_raises_netlink_error(kind: str, message: bytes) -> None:
    parse = parse_links if kind == "link" else parse_qdiscs
    first_len = struct.unpack_from("=I", message)[0]
    for cut in range(1, first_len):
        with pytest.raises(NetlinkError):
            parse(message[:cut])


def test_attribute_longer_than_its_message_raises() -> None:
    payload = bytearray(link_payload())
    struct.pack_into("=H", payload, 16, 0x7FFF)  # IFLA_IFNAME's rta_len
    with pytest.raises(NetlinkError, match="truncated"):
        sp.parse_link(bytes(payload))


def test_attribute_length_below_header_raises() -> None:
    payload = bytearray(qdisc_payload())
    struct.pack_into("=H", payload, 20, 2)  # TCA_KIND's rta_len
    with pytest.raises(NetlinkError):
        sp.parse_qdisc(bytes(payload))


def test_short_fixed_size_attributes_raise() -> None:
    short_stats = attr(sp.IFLA_STATS64, bytes(40))
    with pytest.raises(NetlinkError, match="IFLA_STATS64"):
        sp.parse_link(struct.pack("=BxHiII", 0, 1, 3, 0, 0) + short_stats)
    short_queue = attr(sp.TCA_STATS2, attr(sp.TCA_STATS_QUEUE, bytes(8)))
    with pytest.raises(NetlinkError, match="TCA_STATS_QUEUE"):
        sp.parse_qdisc(struct.pack("=BxxxiIII", 0, 1, 0, 0, 0) + short_queue)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_corrupted_bytes_never_raise_anything_but_netlink_error(data: st.DataObject) -> None:
    message = bytearray(
        nlmsg(sp.RTM_NEWLINK, link_payload()) + nlmsg(sp.RTM_NEWQDISC, qdisc_payload()) + done()
    )
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(message) - 1))
        message[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(message)))
    for parse in (parse_links, parse_qdiscs):
        try:
            parse(bytes(message[:cut]))
        except NetlinkError:
            pass


# -- the dump loop over a fake socket ---------------------------------------------------------


class FakeNetlinkSocket:
    """Answers each dump request with the next scripted list of datagrams (seq patched in)."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.pending: list[bytes] = []
        self.closed = False

    def send(self, data: bytes) -> int:
        self.requests.append(data)
        seq = struct.unpack_from("=I", data, 8)[0]
        self.pending = [self._with_seq(d, seq) for d in self.answers.pop(0)]
        return len(data)

    @staticmethod
    def _with_seq(datagram: bytes, seq: int) -> bytes:
        out, off = bytearray(datagram), 0
        while off < len(out):
            struct.pack_into("=I", out, off + 8, seq)
            off += (struct.unpack_from("=I", out, off)[0] + 3) & ~3
        return bytes(out)

    def recv_into(self, buf: bytearray, nbytes: int, flags: int = 0) -> int:
        assert flags & socket.MSG_TRUNC
        data = self.pending.pop(0)
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.closed = True


INTR = sp.NLM_F_MULTI | sp.NLM_F_DUMP_INTR


def interrupted_link_dump() -> list[bytes]:
    return [nlmsg(sp.RTM_NEWLINK, link_payload(ifindex=1), flags=INTR), done(flags=INTR)]


def clean_link_dump() -> list[bytes]:
    return [nlmsg(sp.RTM_NEWLINK, link_payload()), done()]


def test_interrupted_dump_is_retried_until_consistent() -> None:
    fake = FakeNetlinkSocket([interrupted_link_dump(), interrupted_link_dump(), clean_link_dump()])
    stats = StatsSocket.adopt(fake)  # type: ignore[arg-type]
    assert stats.links() == [EXPECTED_LINK]
    seqs = [struct.unpack_from("=I", r, 8)[0] for r in fake.requests]
    assert len(seqs) == 3 and len(set(seqs)) == 3  # a fresh sequence number per attempt


def test_dump_interrupted_every_time_gives_up_after_max_retries() -> None:
    fake = FakeNetlinkSocket([interrupted_link_dump() for _ in range(1 + MAX_DUMP_RETRIES)])
    stats = StatsSocket.adopt(fake)  # type: ignore[arg-type]
    with pytest.raises(DumpInterrupted):
        stats.links()
    assert len(fake.requests) == 1 + MAX_DUMP_RETRIES


def test_stale_answer_of_an_earlier_request_is_skipped() -> None:
    stale = nlmsg(sp.RTM_NEWQDISC, qdisc_payload(ifindex=1), seq=0)
    fake = FakeNetlinkSocket([[nlmsg(sp.RTM_NEWQDISC, qdisc_payload()), done()]])
    fake_send = fake.send

    def send_then_prepend_stale(data: bytes) -> int:
        n = fake_send(data)
        fake.pending.insert(0, stale)  # not re-sequenced: carries seq 0
        return n

    fake.send = send_then_prepend_stale  # type: ignore[method-assign]
    assert StatsSocket.adopt(fake).qdiscs() == [EXPECTED_QDISC]  # type: ignore[arg-type]


def test_kernel_error_mid_dump_raises_and_drops_the_socket() -> None:
    fake = FakeNetlinkSocket([[error(errno=22)]])
    stats = StatsSocket.adopt(fake)  # type: ignore[arg-type]
    with pytest.raises(NetlinkError) as info:
        stats.qdiscs()
    assert info.value.errno == 22
    assert fake.closed  # a half-read dump would leave the kernel's dump busy on it


def test_closed_socket_raises_netns_gone() -> None:
    stats = StatsSocket.adopt(FakeNetlinkSocket([]))  # type: ignore[arg-type]
    with stats:
        pass
    assert stats.closed
    with pytest.raises(NetnsGone):
        stats.links()


# -- pool bookkeeping (the integration test repeats this with real namespaces) ----------------


def test_pool_reuses_replaces_closed_and_retains() -> None:
    opened: list[StatsSocket] = []

    def factory(path: str | None) -> StatsSocket:
        sock = StatsSocket.adopt(FakeNetlinkSocket([]), path)  # type: ignore[arg-type]
        opened.append(sock)
        return sock

    pool = StatsSocketPool(factory)
    a, b, own = pool.get("/ns/a"), pool.get("/ns/b"), pool.get(None)
    assert pool.get("/ns/a") is a and len(opened) == 3
    a.close()  # as after NetnsGone
    a2 = pool.get("/ns/a")
    assert a2 is not a and not a2.closed
    pool.retain(["/ns/a"])
    assert b.closed and not a2.closed and not own.closed
    assert set(pool.paths()) == {"/ns/a", None}
    pool.forget("/ns/a")
    assert a2.closed
    pool.close_all()
    assert own.closed and len(pool) == 0
