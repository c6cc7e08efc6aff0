"""Qdisc messages of a known shape decoded by two unpacks give exactly what the attribute walk
gives, whatever the bytes; anything of another shape goes to the walk."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.netlink import fixed_layout
from agent.netlink import stats_parse as sp
from agent.netlink.errors import NetlinkError
from agent.netlink.fixed_layout import FixedLayout, LayoutCache
from tests.unit.test_netlink_parse import EXPECTED_QDISC, NLA_F_NESTED, attr, qdisc_payload


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch: pytest.MonkeyPatch) -> LayoutCache:
    cache = LayoutCache()
    monkeypatch.setattr(sp, "_QDISC_LAYOUTS", cache)
    return cache


def kernel_ordered_qdisc(kind: bytes = b"tbf\0", pkt64: int | None = 7_000_000_000) -> bytes:
    """The order Linux sends: TCA_KIND, TCA_OPTIONS, TCA_STATS2 with BASIC, PKT64, QUEUE."""
    tcmsg = struct.pack("=BxxxiIII", 0, 9, 0x50620000, 0xFFFFFFFF, 1)
    stats2 = attr(sp.TCA_STATS_BASIC, struct.pack("=QI", 9_876_543_210, 2_705_032_704) + bytes(4))
    if pkt64 is not None:
        stats2 += attr(sp.TCA_STATS_PKT64, struct.pack("=Q", pkt64))
    stats2 += attr(sp.TCA_STATS_QUEUE, struct.pack("=5I", 4, 6000, 17, 2, 99))
    attrs = attr(sp.TCA_KIND, kind) + attr(2 | NLA_F_NESTED, attr(1, bytes(36)))
    attrs += attr(sp.TCA_STATS2 | NLA_F_NESTED, stats2) + attr(3, bytes(36))
    return tcmsg + attrs


@pytest.mark.parametrize("build", [qdisc_payload, kernel_ordered_qdisc], ids=["pkt64-last", "kernel-order"])
def test_a_second_message_of_a_shape_is_decoded_by_its_layout_to_the_same(build, empty_cache) -> None:
    payload = build()
    assert sp.parse_qdisc(payload) == EXPECTED_QDISC  # walked, shape remembered
    assert len(empty_cache) == 1
    assert empty_cache.unpack(payload, 0, len(payload)) is not None
    assert sp.parse_qdisc(payload) == EXPECTED_QDISC  # by the layout


def test_new_counter_values_come_through_the_layout(empty_cache) -> None:
    sp.parse_qdisc(kernel_ordered_qdisc())
    moved = bytearray(kernel_ordered_qdisc(pkt64=8_000_000_000))
    queue_at = bytes(moved).index(struct.pack("=5I", 4, 6000, 17, 2, 99))
    struct.pack_into("=5I", moved, queue_at, 5, 7000, 18, 3, 100)
    qdisc = sp.parse_qdisc(bytes(moved))
    assert len(empty_cache) == 1  # no new shape: the layout decoded it
    assert (qdisc.packets, qdisc.backlog_packets, qdisc.backlog_bytes, qdisc.drops) == (8_000_000_000, 5, 7000, 18)
    assert (qdisc.requeues, qdisc.overlimits) == (3, 100)


def test_a_32_bit_packet_count_without_pkt64_is_its_own_shape() -> None:
    sp.parse_qdisc(kernel_ordered_qdisc())
    assert sp.parse_qdisc(kernel_ordered_qdisc(pkt64=None)).packets == 2_705_032_704
    assert sp.parse_qdisc(kernel_ordered_qdisc(pkt64=None)).packets == 2_705_032_704


def test_another_kind_of_the_same_length_shares_the_layout_but_keeps_its_name(empty_cache) -> None:
    assert sp.parse_qdisc(kernel_ordered_qdisc(kind=b"tbf\0")).kind == "tbf"
    assert sp.parse_qdisc(kernel_ordered_qdisc(kind=b"htb\0")).kind == "htb"
    assert len(empty_cache) == 1


def test_same_length_other_attribute_order_is_walked() -> None:
    sp.parse_qdisc(kernel_ordered_qdisc())
    tcmsg = struct.pack("=BxxxiIII", 0, 9, 0x50620000, 0xFFFFFFFF, 1)
    stats2 = attr(sp.TCA_STATS_QUEUE, struct.pack("=5I", 4, 6000, 17, 2, 99))
    stats2 += attr(sp.TCA_STATS_PKT64, struct.pack("=Q", 7_000_000_000))
    stats2 += attr(sp.TCA_STATS_BASIC, struct.pack("=QI", 9_876_543_210, 2_705_032_704) + bytes(4))
    attrs = attr(sp.TCA_KIND, b"tbf\0") + attr(sp.TCA_STATS2 | NLA_F_NESTED, stats2)
    attrs += attr(2 | NLA_F_NESTED, attr(1, bytes(36))) + attr(3, bytes(36))
    shuffled = tcmsg + attrs
    assert len(shuffled) == len(kernel_ordered_qdisc())
    assert sp.parse_qdisc(shuffled) == EXPECTED_QDISC


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_layout_and_walk_agree_on_any_bytes_of_a_known_length(data: st.DataObject) -> None:
    sp.parse_qdisc(kernel_ordered_qdisc())
    message = bytearray(kernel_ordered_qdisc())
    for _ in range(data.draw(st.integers(1, 6))):
        message[data.draw(st.integers(0, len(message) - 1))] = data.draw(st.integers(0, 255))

    def outcome(parse):
        try:
            return parse(bytes(message), 0, len(message))
        except NetlinkError:
            return "NetlinkError"

    assert outcome(sp.parse_qdisc) == outcome(sp._walk_qdisc)


def test_the_cache_stays_bounded() -> None:
    cache = LayoutCache()
    for i in range(fixed_layout.MAX_LAYOUTS_PER_LENGTH + 3):
        cache.add(FixedLayout(64, [(20 + 4 * i, 8, 1)], [(4, "i")]))
    assert len(cache) == fixed_layout.MAX_LAYOUTS_PER_LENGTH
    for length in range(fixed_layout.MAX_LENGTHS + 1):
        cache.add(FixedLayout(100 + length, [(20, 8, 1)], [(4, "i")]))
    assert len(cache) <= fixed_layout.MAX_LENGTHS


def test_fields_given_out_of_offset_order_come_back_in_the_given_order() -> None:
    layout = FixedLayout(16, [(0, 8, 1)], [(12, "I"), (8, "HH")])
    message = struct.pack("=HH4xHHI", 8, 1, 5, 6, 7)
    cache = LayoutCache()
    cache.add(layout)
    assert cache.unpack(message, 0, 16) == (7, 5, 6)
    other_header = struct.pack("=HH4xHHI", 8, 2, 5, 6, 7)
    assert cache.unpack(other_header, 0, 16) is None
