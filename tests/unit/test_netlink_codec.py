"""agent.netlink.codec: requests, framing and every decoder, on hand-built bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model.kernel import Link, Qdisc
from agent.model.tbf import TbfKernelParams
from agent.netlink import codec
from agent.netlink.errors import NetlinkError
from tests.unit.netlink_wire import (
    COUNTERS,
    attr,
    done,
    link_payload,
    nlmsg,
    nsid_payload,
    qdisc_payload,
    stats_payload,
    tbf_options,
)

EXPECTED_LINK = Link(
    ifindex=7, name="eth0", kind="veth", peer_ifindex=42, peer_netnsid=3, admin_up=True, oper_state=6,
    gso_max_size=65536, alias="", **COUNTERS,
)
EXPECTED_QDISC = Qdisc(
    ifindex=9, handle=0x50620000, parent=0xFFFFFFFF, kind="tbf", bytes=9_876_543_210, packets=7_000_000_000,
    drops=17, overlimits=99, requeues=2, backlog_bytes=6000, backlog_packets=4,
    tbf=TbfKernelParams(rate_bytes_per_s=1_250_000, buffer_ticks=62500, limit_bytes=7500),
)


# ---- links ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (link_payload(), EXPECTED_LINK),
        (link_payload(alias="podbw cri=x", up=False), EXPECTED_LINK._replace(alias="podbw cri=x", admin_up=False, oper_state=2)),
        # A link dump without statistics (the names the counters are joined to).
        (link_payload(stats=False), EXPECTED_LINK._replace(**{k: 0 for k in COUNTERS})),
        # No peer, no kind, no GSO size: the defaults.
        (link_payload(1, "lo", kind="", peer=0, netnsid=None, gso=None, stats=False),
         Link(1, "lo", admin_up=True, oper_state=6)),
        # Unknown and nested-flagged attributes are skipped.
        (link_payload(extra=attr(999, b"\xff" * 13) + attr(0x3FF0 | 0x8000, attr(1, b"xx"))), EXPECTED_LINK),
    ],
    ids=["veth", "ifb-down-alias", "no-stats", "defaults", "unknown-attributes"],
)
def test_decode_link(payload: bytes, expected: Link) -> None:
    assert codec.decode_link(payload) == expected


def test_32_bit_counters_only_when_no_64_bit_ones() -> None:
    old_kernel = link_payload(stats=False, extra=attr(codec.IFLA_STATS, struct.pack("=8I", *range(1, 9))))
    link = codec.decode_link(old_kernel)
    assert (link.rx_packets, link.tx_packets, link.rx_bytes, link.tx_bytes) == (1, 2, 3, 4)


@pytest.mark.parametrize("pad", [False, True])
def test_decode_link_counters(pad: bool) -> None:
    ifindex, counters = codec.decode_link_counters(stats_payload(5, pad=pad))
    assert ifindex == 5
    assert counters == tuple(COUNTERS[name] for name in Link._fields[9:])


def test_link_counters_without_the_stats_attribute_raise() -> None:
    with pytest.raises(NetlinkError, match="no IFLA_STATS_LINK_64"):
        codec.decode_link_counters(struct.pack("=BxxxiI", 0, 5, 1))


# ---- qdiscs --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (qdisc_payload(), EXPECTED_QDISC),
        # Without PKT64 the 32-bit packet count stands.
        (qdisc_payload(pkt64=None), EXPECTED_QDISC._replace(packets=2_705_032_704)),
        # A 64-bit rate above the 32-bit field.
        (qdisc_payload(options=tbf_options(0xFFFFFFFF, 1, 1, rate64=10**10)),
         EXPECTED_QDISC._replace(tbf=TbfKernelParams(10**10, 1, 1))),
        # Other kinds carry no TBF parameters, whatever their options say.
        (qdisc_payload(kind="ingress", handle=0xFFFF0000, parent=0xFFFFFFF1, options=attr(1, bytes(36))),
         EXPECTED_QDISC._replace(kind="ingress", handle=0xFFFF0000, parent=0xFFFFFFF1, tbf=None)),
        # A TBF whose options lack TCA_TBF_PARMS.
        (qdisc_payload(options=b""), EXPECTED_QDISC._replace(tbf=None)),
    ],
    ids=["tbf", "no-pkt64", "rate64", "ingress", "no-parms"],
)
def test_decode_qdisc(payload: bytes, expected: Qdisc) -> None:
    assert codec.decode_qdisc(payload) == expected


def test_decode_nsid() -> None:
    assert codec.decode_nsid(nsid_payload(4)) == 4
    assert codec.decode_nsid(struct.pack("=Bxxx", 0)) == codec.NETNSA_NSID_NOT_ASSIGNED


# ---- malformed input: NetlinkError, nothing else -------------------------------------------

@pytest.mark.parametrize(
    ("decode", "payload", "message"),
    [
        (codec.decode_link, link_payload()[:10], "RTM_NEWLINK"),
        (codec.decode_link, struct.pack("=BxHiII", 0, 1, 3, 0, 0) + attr(codec.IFLA_STATS64, bytes(40)), "IFLA_STATS64"),
        (codec.decode_link, struct.pack("=BxHiII", 0, 1, 3, 0, 0) + attr(codec.IFLA_LINK, b"\x01"), "IFLA_LINK"),
        (codec.decode_qdisc, struct.pack("=BxxxiIII", 0, 1, 0, 0, 0) + attr(codec.TCA_STATS2, attr(codec.TCA_STATS_QUEUE, bytes(8))),
         "TCA_STATS_QUEUE"),
        (codec.decode_qdisc, qdisc_payload(options=attr(codec.TCA_TBF_PARMS, bytes(8))), "TCA_TBF_PARMS"),
        (codec.decode_link_counters, struct.pack("=BxxxiI", 0, 5, 1) + attr(codec.IFLA_STATS_LINK_64, bytes(16)),
         "IFLA_STATS_LINK_64"),
    ],
)
def test_short_fields_raise(decode, payload: bytes, message: str) -> None:
    with pytest.raises(NetlinkError, match=message):
        decode(payload)


@pytest.mark.parametrize("decode, payload", [(codec.decode_link, link_payload()), (codec.decode_qdisc, qdisc_payload())])
def test_an_attribute_longer_than_its_message_raises(decode, payload: bytes) -> None:
    header = 16 if decode is codec.decode_link else 20
    broken = bytearray(payload)
    struct.pack_into("=H", broken, header, 0x7FFF)
    with pytest.raises(NetlinkError, match="truncated attribute"):
        decode(bytes(broken))
    struct.pack_into("=H", broken, header, 2)  # shorter than an attribute header
    with pytest.raises(NetlinkError, match="truncated attribute"):
        decode(bytes(broken))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_corrupted_bytes_never_raise_anything_but_netlink_error(data: st.DataObject) -> None:
    datagram = bytearray(nlmsg(codec.RTM_NEWLINK, link_payload()) + nlmsg(codec.RTM_NEWQDISC, qdisc_payload()) + done())
    for _ in range(data.draw(st.integers(1, 4))):
        datagram[data.draw(st.integers(0, len(datagram) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(datagram)))
    decoders = {codec.RTM_NEWLINK: codec.decode_link, codec.RTM_NEWQDISC: codec.decode_qdisc}
    try:
        for msg_type, _flags, _seq, payload in codec.messages(bytes(datagram[:cut])):
            if msg_type in decoders:
                decoders[msg_type](payload)
            codec.decode_nsid(payload)
            codec.status(payload)
            if len(payload) >= 8:
                codec.decode_link_counters(payload)
    except NetlinkError:
        pass


# ---- framing and requests ------------------------------------------------------------------

def test_messages_of_one_datagram() -> None:
    datagram = nlmsg(codec.RTM_NEWQDISC, qdisc_payload(ifindex=1), seq=3) + done(seq=3, status=-95)
    (first_type, _, first_seq, first), (last_type, _, _, last) = codec.messages(datagram)
    assert (first_type, first_seq, codec.decode_qdisc(first).ifindex) == (codec.RTM_NEWQDISC, 3, 1)
    assert (last_type, codec.status(last)) == (codec.NLMSG_DONE, 95)


@pytest.mark.parametrize("cut", [1, 15, 17, 40])
def test_a_cut_datagram_raises(cut: int) -> None:
    with pytest.raises(NetlinkError, match="truncated netlink"):
        list(codec.messages(nlmsg(codec.RTM_NEWLINK, link_payload())[:cut]))


@pytest.mark.parametrize(
    ("request_bytes", "msg_type", "flags"),
    [
        (codec.dump_links(12), codec.RTM_GETLINK, codec.NLM_F_REQUEST | codec.NLM_F_DUMP),
        (codec.dump_link_stats(12), codec.RTM_GETSTATS, codec.NLM_F_REQUEST | codec.NLM_F_DUMP),
        (codec.dump_qdiscs(12), codec.RTM_GETQDISC, codec.NLM_F_REQUEST | codec.NLM_F_DUMP),
        (codec.get_link(12, 5), codec.RTM_GETLINK, codec.NLM_F_REQUEST | codec.NLM_F_ACK),
        (codec.get_qdisc(12, 5, 0xFFFFFFFF), codec.RTM_GETQDISC, codec.NLM_F_REQUEST | codec.NLM_F_ECHO | codec.NLM_F_ACK),
        (codec.get_nsid(12, 9), codec.RTM_GETNSID, codec.NLM_F_REQUEST | codec.NLM_F_ACK),
    ],
)
def test_request_headers(request_bytes: bytes, msg_type: int, flags: int) -> None:
    assert struct.unpack_from("=IHHII", request_bytes) == (len(request_bytes), msg_type, flags, 12, 0)


def test_get_link_by_name_skips_statistics() -> None:
    body = codec.get_link(1, name="eth0")[16:]
    assert struct.unpack_from("=BxHiII", body)[2] == 0
    attrs = {atype: body[start:end] for atype, start, end in codec.attributes(body, 16, len(body))}
    assert attrs[codec.IFLA_IFNAME] == b"eth0\0"
    assert attrs[codec.IFLA_EXT_MASK] == struct.pack("=I", codec.RTEXT_FILTER_SKIP_STATS)
    by_index = codec.get_link(1, 5)[16:]
    assert [atype for atype, _, _ in codec.attributes(by_index, 16, len(by_index))] == [codec.IFLA_EXT_MASK]
