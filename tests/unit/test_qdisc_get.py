import errno
import struct

import pytest

from agent.netlink.qdisc_get import (
    NLMSG_ERROR,
    RTM_NEWQDISC,
    TCA_KIND,
    TCA_OPTIONS,
    TCA_TBF_PARMS,
    TCA_TBF_RATE64,
    QdiscGetError,
    get_qdisc,
    parse_qdisc,
)


def attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def tbf_qdisc(rate: int, limit: int, buffer: int, rate64: int | None = None) -> bytes:
    qopt = struct.pack("=BBHhHI", 0, 1, 0, 0, 0, rate) + struct.pack("=BBHhHI", 0, 0, 0, 0, 0, 0)
    qopt += struct.pack("=III", limit, buffer, 0)
    options = attr(TCA_TBF_PARMS, qopt) + (attr(TCA_TBF_RATE64, struct.pack("=Q", rate64)) if rate64 else b"")
    tcmsg = struct.pack("=BxxxiIII", 0, 7, 0x50620000, 0xFFFFFFFF, 2)
    return tcmsg + attr(TCA_KIND, b"tbf\0") + attr(99, b"unknown") + attr(TCA_OPTIONS, options)


def test_parse_tbf_parameters() -> None:
    body = tbf_qdisc(rate=1_250_000, limit=7500, buffer=62500)
    qdisc = parse_qdisc(body, 0, len(body))
    assert (qdisc.kind, qdisc.handle, qdisc.parent) == ("tbf", 0x50620000, 0xFFFFFFFF)
    assert (qdisc.tbf_rate_bytes_per_s, qdisc.tbf_limit_bytes, qdisc.tbf_buffer_ticks) == (1_250_000, 7500, 62500)


def test_rate64_overrides_the_32_bit_rate() -> None:
    body = tbf_qdisc(rate=0xFFFFFFFF, limit=1, buffer=1, rate64=10**10)
    assert parse_qdisc(body, 0, len(body)).tbf_rate_bytes_per_s == 10**10


def test_other_kinds_carry_no_tbf_parameters() -> None:
    body = struct.pack("=BxxxiIII", 0, 7, 0x10000, 0xFFFFFFFF, 2) + attr(TCA_KIND, b"htb\0") + attr(TCA_OPTIONS, b"\0" * 8)
    qdisc = parse_qdisc(body, 0, len(body))
    assert qdisc.kind == "htb" and qdisc.tbf_rate_bytes_per_s == 0


class ScriptedSocket:
    """Answers the next request with the given messages (sequence numbers filled in)."""

    def __init__(self, *messages: tuple[int, bytes]) -> None:
        self.messages = messages
        self.seq = 0

    def send(self, data: bytes) -> None:
        self.seq = struct.unpack_from("=IHHII", data)[3]

    def recv(self, size: int) -> bytes:
        out = b""
        for msg_type, body in self.messages:
            out += struct.pack("=IHHII", 16 + len(body), msg_type, 0, self.seq, 0) + body
        return out


def ack(code: int = 0) -> tuple[int, bytes]:
    return NLMSG_ERROR, struct.pack("=i", code) + b"\0" * 16


def test_get_returns_the_qdisc_before_the_ack() -> None:
    sock = ScriptedSocket((RTM_NEWQDISC, tbf_qdisc(125_000, 5000, 10)), ack())
    assert get_qdisc(sock, 7, 0xFFFFFFFF).tbf_rate_bytes_per_s == 125_000


def test_builtin_or_missing_qdisc_is_none_and_a_gone_device_an_error() -> None:
    assert get_qdisc(ScriptedSocket(ack()), 7, 0xFFFFFFFF) is None
    assert get_qdisc(ScriptedSocket(ack(-errno.ENOENT)), 7, 0xFFFFFFF1) is None
    with pytest.raises(QdiscGetError) as caught:
        get_qdisc(ScriptedSocket(ack(-errno.ENODEV)), 7, 0xFFFFFFFF)
    assert caught.value.errno == errno.ENODEV
