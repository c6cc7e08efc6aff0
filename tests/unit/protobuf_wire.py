"""Hand-built protobuf wire bytes for the CRI tests, written independently of the protobuf
library so that they can check what it parses."""

from __future__ import annotations


def varint(value: int) -> bytes:
    """A base-128 varint; a negative value as protobuf sends an int64: ten bytes of two's
    complement."""
    value &= 2**64 - 1
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes | int) -> bytes:
    """One wire field: an int as varint (type 0), bytes as length-delimited (type 2)."""
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload
