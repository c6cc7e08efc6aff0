"""One rtnetlink request for one object, answered without a dump.

A dump walks every device of the namespace; on a host with a few hundred veths, decoding that
costs far more than the object wanted. The kernel answers a get for one device directly.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from typing import Callable, Collection, Iterator, TypeVar

NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_ECHO = 0x8
NLA_TYPE_MASK = 0x3FFF

NLMSGHDR = struct.Struct("=IHHII")
NLATTR = struct.Struct("=HH")
_ERRNO = struct.Struct("=i")
_seq = itertools.count(1)

T = TypeVar("T")
Parser = Callable[[bytes, int, int], T]


class GetError(OSError):
    """The kernel refused the request; errno says why (ENODEV: the device is gone)."""


def attr(attr_type: int, value: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    raw = NLATTR.pack(NLATTR.size + len(value), attr_type) + value
    return raw + b"\0" * (-len(raw) % 4)


def get_one(
    sock: socket.socket,
    msg_type: int,
    payload: bytes,
    answer_type: int,
    parse: Parser[T],
    flags: int = NLM_F_REQUEST | NLM_F_ACK,
    absent: Collection[int] = (),
) -> T | None:
    """Send one request and parse the `answer_type` message it returns; None when the kernel
    sent none, or answered with an errno in `absent`. The request asks for an ACK, which is
    what ends the wait (it follows the answer). Other errors raise GetError."""
    seq = next(_seq) & 0x7FFFFFFF
    sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(payload), msg_type, flags, seq, 0) + payload)
    found: T | None = None
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset + NLMSGHDR.size <= len(data):
            length, kind, _flags, msg_seq, _pid = NLMSGHDR.unpack_from(data, offset)
            if length < NLMSGHDR.size:
                raise GetError(errno.EPROTO, "malformed netlink answer")
            body = offset + NLMSGHDR.size
            end = min(offset + length, len(data))
            offset += (length + 3) & ~3
            if msg_seq != seq:
                continue  # a late answer to an earlier request
            if kind == NLMSG_ERROR:
                (code,) = _ERRNO.unpack_from(data, body)
                if code == 0 or -code in absent:
                    return found
                raise GetError(-code, os.strerror(-code))
            if kind == answer_type:
                found = parse(data, body, end)
        # the answer continues in the next datagram


def attributes(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, value start, value end) of each attribute in data[pos:end]; a truncated one ends
    the walk (values never reach past `end`)."""
    while pos + NLATTR.size <= end:
        attr_len, attr_type = NLATTR.unpack_from(data, pos)
        if attr_len < NLATTR.size:
            return
        yield attr_type & NLA_TYPE_MASK, pos + NLATTR.size, min(pos + attr_len, end)
        pos += (attr_len + 3) & ~3


def cstr(data: bytes, start: int, end: int) -> str:
    return data[start:end].split(b"\0", 1)[0].decode("utf-8", "replace")
