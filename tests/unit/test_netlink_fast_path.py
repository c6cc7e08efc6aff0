"""The sampler's cheap statistics path: RTM_GETSTATS counters with cached names, requests
sent together, reuse of unchanged records, GIL-holding I/O, and reuse of idle pod samples."""

from __future__ import annotations

import errno
import os
import socket
import struct

import pytest

from agent.metrics.sampler import Sampler
from agent.model.direction import Direction
from agent.model.health import HealthRecorder
from agent.model.pod import Pod
from agent.model.snapshot import LinkStats
from agent.netlink import held_gil
from agent.netlink import stats_parse as sp
from agent.netlink.errors import NetlinkError
from agent.netlink.stats_socket import StatsSocket
from tests.unit.test_netlink_parse import attr, done, nlmsg, qdisc_payload

STATS64_NEWER = tuple(range(100, 116))  # fields newer kernels append after the first 8


def stats_payload(ifindex: int, counters: tuple[int, ...], *, pad: bool = False) -> bytes:
    """RTM_NEWSTATS payload; counters in rtnl_link_stats64 order (rx_packets, tx_packets, ...)."""
    head = struct.pack("=BxxxiI", 0, ifindex, 1)
    attrs = attr(0, bytes(4)) if pad else b""  # IFLA_STATS_UNSPEC, the 64-bit alignment pad
    attrs += attr(sp.IFLA_STATS_LINK_64, struct.pack("=24Q", *counters, *STATS64_NEWER))
    return head + attrs


def link_info(ifindex: int, name: str) -> bytes:
    ifinfomsg = struct.pack("=BxHiII", 0, 1, ifindex, 0x1043, 0)
    return ifinfomsg + attr(sp.IFLA_IFNAME, name.encode() + b"\0")


# -- pure parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize("pad", [False, True], ids=["counters-first (one unpack)", "pad-first (walked)"])
def test_link_counters_are_returned_in_linkstats_order(pad: bool) -> None:
    payload = stats_payload(7, (11, 22, 5_000, 6_000, 3, 4, 5, 6), pad=pad)
    assert sp.parse_link_counters(payload) == (7, 5_000, 11, 3, 5, 6_000, 22, 4, 6)
    # The same from inside a larger buffer (as the reader passes a datagram and offsets).
    framed = b"\xff" * 12 + payload + b"\xee" * 20
    assert sp.parse_link_counters(framed, 12, 12 + len(payload)) == (7, 5_000, 11, 3, 5, 6_000, 22, 4, 6)


def test_stats_message_without_link_64_says_unsupported() -> None:
    with pytest.raises(NetlinkError) as info:
        sp.parse_link_counters(struct.pack("=BxxxiI", 0, 3, 1) + attr(5, bytes(8)))
    assert info.value.errno == errno.EOPNOTSUPP


@pytest.mark.parametrize("pad", [False, True])
def test_every_truncated_stats_message_raises_netlink_error(pad: bool) -> None:
    payload = stats_payload(2, tuple(range(8)), pad=pad)
    for cut in range(len(payload)):
        with pytest.raises(NetlinkError):
            sp.parse_link_counters(payload[:cut])
        with pytest.raises(NetlinkError):  # cut short by `end`, with bytes after it in the buffer
            sp.parse_link_counters(payload, 0, cut)


def test_requests_layout() -> None:
    req = sp.stats_request(9)
    assert struct.unpack_from("=IHHII", req) == (28, sp.RTM_GETSTATS, 0x301, 9, 0)
    assert struct.unpack_from("=BxxxiI", req, 16) == (0, 0, 1)  # IFLA_STATS_LINK_64 only
    info = sp.link_info_request(4)
    assert struct.unpack_from("=IHHII", info) == (40, sp.RTM_GETLINK, 0x301, 4, 0)
    assert struct.unpack_from("=HHI", info, 32) == (8, sp.IFLA_EXT_MASK, sp.RTEXT_FILTER_SKIP_STATS)


def test_split_datagram_sorts_messages_by_sequence_and_records_errors() -> None:
    a, b = sp.DumpChunk(), sp.DumpChunk()
    chunks = {1: (sp.RTM_NEWSTATS, a), 2: (sp.RTM_NEWQDISC, b)}
    data = nlmsg(sp.RTM_NEWSTATS, b"first...", seq=1) + nlmsg(sp.RTM_NEWQDISC, b"skip", seq=3)
    data += nlmsg(sp.RTM_NEWSTATS, b"second..", seq=1, flags=sp.NLM_F_MULTI | sp.NLM_F_DUMP_INTR)
    data += done(seq=1) + nlmsg(sp.NLMSG_ERROR, struct.pack("=i", -errno.EBUSY) + bytes(16), 2, 0)
    sp.split_datagram(data, len(data), chunks)
    assert a.records == [b"first...", b"second.."] and a.done and a.interrupted and a.error is None
    assert b.records == [] and b.done and b.error is not None and b.error.errno == errno.EBUSY


def test_split_datagram_rejects_broken_framing() -> None:
    data = nlmsg(sp.RTM_NEWSTATS, b"x" * 8, seq=1)
    for cut in range(1, len(data)):
        with pytest.raises(NetlinkError):
            sp.split_datagram(data[:cut], cut, {1: (sp.RTM_NEWSTATS, sp.DumpChunk())})


# -- the socket, against a scripted kernel ----------------------------------------------------


class FakeKernel:
    """Answers the requests in each send() as rtnetlink would, one datagram per reply part."""

    def __init__(self) -> None:
        self.links = {1: "lo", 2: "eth0"}
        self.counters = {1: (1,) * 8, 2: (10, 20, 1_000, 2_000, 0, 0, 0, 0)}
        self.qdiscs = [qdisc_payload(ifindex=2)]
        self.sends: list[list[int]] = []  # message types of each send
        self.busy_second_dump = False
        self.no_getstats = False
        self.info_dumps = 0
        self.pending: list[bytes] = []
        self.closed = False

    def send(self, data: bytes) -> int:
        types, off = [], 0
        while off < len(data):
            length, mtype, _flags, seq = struct.unpack_from("=IHHI", data, off)
            types.append(mtype)
            self._answer(mtype, seq, first=(off == 0))
            off += length
        self.sends.append(types)
        return len(data)

    def _answer(self, mtype: int, seq: int, first: bool) -> None:
        if not first and self.busy_second_dump:
            self.pending.append(nlmsg(sp.NLMSG_ERROR, struct.pack("=i", -errno.EBUSY) + bytes(16), seq, 0))
            return
        if mtype == sp.RTM_GETSTATS:
            if self.no_getstats:
                self.pending.append(nlmsg(sp.NLMSG_ERROR, struct.pack("=i", -errno.EOPNOTSUPP) + bytes(16), seq, 0))
                return
            body = b"".join(nlmsg(sp.RTM_NEWSTATS, stats_payload(i, c), seq) for i, c in self.counters.items())
            self.pending.append(body + done(seq))
        elif mtype == sp.RTM_GETQDISC:
            self.pending.append(b"".join(nlmsg(sp.RTM_NEWQDISC, q, seq) for q in self.qdiscs))
            self.pending.append(done(seq))
        elif mtype == sp.RTM_GETLINK:
            self.info_dumps += 1
            body = b"".join(nlmsg(sp.RTM_NEWLINK, link_info(i, n), seq) for i, n in self.links.items())
            self.pending.append(body + done(seq))

    def recv_into(self, buf: bytearray, nbytes: int, flags: int = 0) -> int:
        data = self.pending.pop(0)
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.closed = True


def fast_socket(kernel: FakeKernel) -> StatsSocket:
    return StatsSocket.adopt(kernel, stats_dump=True)  # type: ignore[arg-type]


def test_links_and_qdiscs_in_one_send_with_names_from_the_info_dump() -> None:
    kernel = FakeKernel()
    stats = fast_socket(kernel)
    links, qdiscs = stats.links_and_qdiscs()
    assert kernel.sends[0] == [sp.RTM_GETSTATS, sp.RTM_GETQDISC]
    assert [(link.ifindex, link.name) for link in links] == [(1, "lo"), (2, "eth0")]
    eth0 = links[1]
    assert (eth0.rx_bytes, eth0.rx_packets, eth0.tx_bytes, eth0.tx_packets) == (1_000, 10, 2_000, 20)
    assert [q.ifindex for q in qdiscs] == [2] and qdiscs[0].kind == "tbf"
    assert kernel.info_dumps == 1

    # Nothing changed: no info dump, and the very same objects come back.
    again_links, again_qdiscs = stats.links_and_qdiscs()
    assert kernel.info_dumps == 1 and len(kernel.sends) == 3
    assert all(a is b for a, b in zip(links + qdiscs, again_links + again_qdiscs))

    # Counters move: a new eth0 record, lo's stays the same object.
    kernel.counters[2] = (11, 21, 1_500, 2_500, 0, 0, 0, 0)
    moved, _ = stats.links_and_qdiscs()
    assert moved[0] is links[0] and moved[1] is not links[1] and moved[1].rx_bytes == 1_500


def test_a_new_interface_is_named_at_once_and_a_vanished_one_left_out() -> None:
    kernel = FakeKernel()
    stats = fast_socket(kernel)
    stats.links()
    kernel.links[3] = "net1"
    kernel.counters[3] = (0,) * 8
    assert [link.name for link in stats.links()] == ["lo", "eth0", "net1"]
    assert kernel.info_dumps == 2
    # Counted, then deleted before the names were read: not reported without a name.
    kernel.counters[4] = (0,) * 8
    assert [link.name for link in stats.links()] == ["lo", "eth0", "net1"]


def test_second_dump_refused_as_busy_is_sent_again_alone() -> None:
    kernel = FakeKernel()
    stats = fast_socket(kernel)
    stats.links()  # learn names first
    kernel.sends.clear()
    kernel.busy_second_dump = True
    links, qdiscs = stats.links_and_qdiscs()
    assert kernel.sends == [[sp.RTM_GETSTATS, sp.RTM_GETQDISC], [sp.RTM_GETQDISC]]
    assert [link.name for link in links] == ["lo", "eth0"] and len(qdiscs) == 1
    assert not kernel.closed


def test_kernel_without_getstats_falls_back_to_full_link_dumps_for_good() -> None:
    kernel = FakeKernel()
    kernel.no_getstats = True
    stats = fast_socket(kernel)
    links = stats.links()
    assert [link.name for link in links] == ["lo", "eth0"]
    assert kernel.sends == [[sp.RTM_GETSTATS], [sp.RTM_GETLINK]] and not kernel.closed
    kernel.sends.clear()
    stats.links_and_qdiscs()
    assert sp.RTM_GETSTATS not in {t for send in kernel.sends for t in send}


# -- GIL-holding I/O --------------------------------------------------------------------------


def test_held_gil_io_sends_and_takes_every_queued_datagram_in_one_call() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        b.settimeout(2)
        batch = held_gil.RecvBatch(slots=3, slot_bytes=64)
        for text in (b"one", b"two", b"three", b"four"):
            assert held_gil.send(a, text) == len(text)
        got = batch.receive(b)
        assert [bytes(batch.data[off:off + n]) for off, n in got] == [b"one", b"two", b"three"]
        assert [off for off, _ in got] == [0, 64, 128]
        assert [bytes(batch.data[off:off + n]) for off, n in batch.receive(b)] == [b"four"]

        held_gil.send(a, b"x" * 100)
        with pytest.raises(OSError) as info:  # longer than a slot: never silently cut
            batch.receive(b)
        assert info.value.errno == errno.EMSGSIZE

        b.settimeout(0.05)
        with pytest.raises(TimeoutError):  # nothing queued: waits like the socket module
            batch.receive(b)
    finally:
        a.close()
        b.close()


def test_identity_is_os_stat_dev_and_ino(tmp_path) -> None:
    path = tmp_path / "f"
    path.touch()
    st = os.stat(path)
    assert held_gil.identity(str(path)) == (st.st_dev, st.st_ino)
    with pytest.raises(FileNotFoundError):
        held_gil.identity(str(tmp_path / "missing"))


# -- the sampler reuses an idle pod's sample ----------------------------------------------------


class SameObjectsSocket:
    def __init__(self) -> None:
        self.result = [LinkStats(1, "lo"), LinkStats(2, "eth0", rx_bytes=5, tx_bytes=5)]

    def links(self) -> list[LinkStats]:
        return list(self.result)

    def qdiscs(self) -> list:
        return []


class OnePodPool:
    def __init__(self, sock: SameObjectsSocket) -> None:
        self.sock = sock

    def get(self, path):
        return self.sock

    def forget(self, path) -> None:
        pass

    def retain(self, paths) -> None:
        pass


def test_idle_pod_sample_is_reused_and_a_busy_one_rebuilt() -> None:
    pod = Pod("sb", "uid", "default", "idle", "/var/run/netns/idle")
    sock = SameObjectsSocket()
    now = [10.0]
    sampler = Sampler(lambda: [pod], lambda: {}, OnePodPool(sock), HealthRecorder(),  # type: ignore[arg-type]
                      clock=lambda: now[0])
    sampler.sample_once()
    now[0] = 11.0
    second = sampler.sample_once().pods[0]
    now[0] = 12.0
    third = sampler.sample_once().pods[0]
    assert third is second  # same links, zero rates, same peaks: nothing to rebuild
    sock.result = [sock.result[0], LinkStats(2, "eth0", rx_bytes=1_005, tx_bytes=5)]
    now[0] = 13.0
    fourth = sampler.sample_once().pods[0]
    assert fourth is not third
    assert fourth.directions[Direction.INGRESS].throughput_bytes_per_s == 1_000.0
    assert fourth.directions[Direction.EGRESS] is third.directions[Direction.EGRESS]
