"""Single RTM_GETLINK: request layout and the few attributes the reconciler reads."""

import errno
import struct

import pytest

from agent.netlink.link_get import (
    IFLA_EXT_MASK,
    IFLA_GSO_MAX_SIZE,
    IFLA_IFALIAS,
    IFLA_IFNAME,
    IFLA_INFO_KIND,
    IFLA_LINK,
    IFLA_LINK_NETNSID,
    IFLA_LINKINFO,
    RTEXT_FILTER_SKIP_STATS,
    RTM_GETLINK,
    RTM_NEWLINK,
    get_link,
    parse_link,
)
from agent.netlink.single_get import NLMSG_ERROR, GetError, attr


def link_message(
    index: int, name: str, kind: str = "", peer: int = 0, netnsid: int | None = None, gso: int | None = None, alias: str = ""
) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, 0, 0)
    body += attr(IFLA_IFNAME, name.encode() + b"\0")
    body += attr(99, b"\x01\x02\x03")  # an attribute this reader does not know
    if peer:
        body += attr(IFLA_LINK, struct.pack("=I", peer))
    if netnsid is not None:
        body += attr(IFLA_LINK_NETNSID, struct.pack("=i", netnsid))
    if gso is not None:
        body += attr(IFLA_GSO_MAX_SIZE, struct.pack("=I", gso))
    if alias:
        body += attr(IFLA_IFALIAS, alias.encode() + b"\0")
    if kind:
        body += attr(IFLA_LINKINFO | 0x8000, attr(IFLA_INFO_KIND, kind.encode() + b"\0") + attr(2, b"data"))
    return body


class ScriptedSocket:
    """Records the request; answers it with the given messages (its sequence number filled in),
    after a stale message of an earlier request."""

    def __init__(self, *messages: tuple[int, bytes]) -> None:
        self.messages = messages
        self.request = b""

    def send(self, data: bytes) -> None:
        self.request = data

    def recv(self, size: int) -> bytes:
        seq = struct.unpack_from("=IHHII", self.request)[3]
        stale = link_message(1, "stale")
        out = struct.pack("=IHHII", 16 + len(stale), RTM_NEWLINK, 0, seq - 1, 0) + stale
        for msg_type, body in self.messages:
            out += struct.pack("=IHHII", 16 + len(body), msg_type, 0, seq, 0) + body
        return out


def ack(code: int = 0) -> tuple[int, bytes]:
    return NLMSG_ERROR, struct.pack("=i", code) + b"\0" * 16


def test_parse_reads_name_kind_peer_netnsid_and_gso() -> None:
    body = link_message(7, "veth1234", "veth", peer=2, netnsid=5, gso=35865)
    link = parse_link(body, 0, len(body))
    assert (link.index, link.name, link.kind, link.link_index, link.link_netnsid, link.gso_max_size) == (
        7, "veth1234", "veth", 2, 5, 35865,
    )


def test_parse_reads_the_alias() -> None:
    body = link_message(12, "podbw0123456789", "ifb", alias="podbw cri=none netns=/x")
    assert parse_link(body, 0, len(body)).alias == "podbw cri=none netns=/x"


def test_absent_attributes_have_neutral_values() -> None:
    body = link_message(1, "lo")
    link = parse_link(body, 0, len(body))
    assert (link.kind, link.link_index, link.link_netnsid, link.gso_max_size, link.alias) == ("", 0, -1, 0, "")


def test_truncated_attribute_stops_the_walk_without_reading_past_the_message() -> None:
    body = link_message(7, "eth0", gso=1000)
    broken = body + struct.pack("=HH", 2, IFLA_LINK)  # a length shorter than its own header
    link = parse_link(broken + b"\xff" * 8, 0, len(broken))
    assert link.name == "eth0" and link.gso_max_size == 1000


def test_get_by_index_asks_without_statistics() -> None:
    sock = ScriptedSocket((RTM_NEWLINK, link_message(7, "eth0", "veth", peer=9)), ack())
    link = get_link(sock, 7)
    assert link is not None and (link.name, link.link_index) == ("eth0", 9)
    length, msg_type = struct.unpack_from("=IH", sock.request)
    assert msg_type == RTM_GETLINK and length == len(sock.request)
    assert struct.unpack_from("=i", sock.request, 16 + 4)[0] == 7
    assert attr(IFLA_EXT_MASK, struct.pack("=I", RTEXT_FILTER_SKIP_STATS)) in sock.request
    assert attr(IFLA_IFNAME, b"eth0\0") not in sock.request


def test_get_by_name_sends_the_name() -> None:
    sock = ScriptedSocket((RTM_NEWLINK, link_message(12, "podbw0123456789")), ack())
    link = get_link(sock, name="podbw0123456789")
    assert link is not None and link.index == 12
    assert attr(IFLA_IFNAME, b"podbw0123456789\0") in sock.request
    assert struct.unpack_from("=i", sock.request, 16 + 4)[0] == 0


def test_missing_device_is_none_and_other_errors_raise() -> None:
    assert get_link(ScriptedSocket(ack(-errno.ENODEV)), 7) is None
    with pytest.raises(GetError) as caught:
        get_link(ScriptedSocket(ack(-errno.EPERM)), 7)
    assert caught.value.errno == errno.EPERM
