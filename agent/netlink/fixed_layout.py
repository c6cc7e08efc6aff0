"""Decoding messages of a shape seen before with two struct unpacks instead of an attribute walk.

The sampler decodes the same few hundred qdisc messages every second (the host's TBFs, whose
counters a bridge's floods move on every pass). Between two dumps only counter values change;
which attributes come, in which order and with which lengths stays the same. A FixedLayout
records that shape once, from a message the generic walk parsed: the offset and (length, type)
of every attribute header the walk visited, and the offsets of the wanted fields. A later
message of the same length whose headers at those offsets all hold the same values would be
walked along exactly the same path, so its wanted fields are at the same offsets: one unpack
checks the headers, one reads the fields. Anything else (another shape, a malformed message)
goes to the generic walk.
"""

from __future__ import annotations

import struct
from operator import itemgetter
from typing import Callable, Sequence

Buffer = bytes | bytearray | memoryview

MAX_LAYOUTS_PER_LENGTH = 4
MAX_LENGTHS = 256
"""Bounds on what hostile or ever-changing input can make the cache hold."""


def _struct_at(fields: Sequence[tuple[int, str]]) -> struct.Struct:
    """One native-order struct reading each (offset, format) field, in increasing offset order,
    skipping the bytes between them."""
    fmt, at = "=", 0
    for offset, field in sorted(fields):
        if offset < at:
            raise ValueError(f"field at {offset} overlaps the previous one (ends at {at})")
        fmt += f"{offset - at}x{field}" if offset > at else field
        at = offset + struct.calcsize("=" + field)
    return struct.Struct(fmt)


class FixedLayout:
    """The attribute headers of one message shape, and where its wanted fields are."""

    __slots__ = ("length", "headers", "expected", "fields", "reorder")

    def __init__(
        self,
        length: int,
        headers: Sequence[tuple[int, int, int]],
        fields: Sequence[tuple[int, str]],
    ) -> None:
        """length: the message's byte length; headers: (offset, length, type) of every
        attribute header the walk read, types as they are on the wire (flags included);
        fields: (offset, struct format) of each wanted field, unpacked in this order.
        Offsets are from the start of the message."""
        self.length = length
        self.headers = _struct_at([(offset, "HH") for offset, _, _ in sorted(headers)])
        """Reads every attribute header's (length, type), in offset order."""
        self.expected = tuple(v for _, alen, atype in sorted(headers) for v in (alen, atype))
        self.fields = _struct_at(fields)
        self.reorder: Callable[[tuple], tuple] | None = None
        """Puts values read in offset order back in the order fields were given (None: same)."""
        positions, at = [], 0
        for offset, field in fields:
            count = len(struct.unpack("=" + field, bytes(struct.calcsize("=" + field))))
            positions.append((offset, list(range(at, at + count))))
            at += count
        by_offset = [i for _, values in sorted(positions) for i in values]
        if by_offset != sorted(by_offset):
            # value i (given order) sits at by_offset.index(i) among the values read
            self.reorder = itemgetter(*(by_offset.index(i) for i in range(at)))


class LayoutCache:
    """FixedLayouts by message length (a few shapes per length at most)."""

    __slots__ = ("_by_length",)

    def __init__(self) -> None:
        self._by_length: dict[int, list[FixedLayout]] = {}

    def unpack(self, buf: Buffer, start: int, end: int) -> tuple | None:
        """The wanted fields of buf[start:end] by a known layout, or None."""
        layouts = self._by_length.get(end - start)
        if layouts is not None:
            for layout in layouts:
                if layout.headers.unpack_from(buf, start) == layout.expected:
                    values = layout.fields.unpack_from(buf, start)
                    reorder = layout.reorder
                    return values if reorder is None else reorder(values)
        return None

    def add(self, layout: FixedLayout) -> None:
        by_length = self._by_length
        layouts = by_length.get(layout.length)
        if layouts is None:
            if len(by_length) >= MAX_LENGTHS:
                by_length.clear()
            layouts = by_length[layout.length] = []
        if len(layouts) >= MAX_LAYOUTS_PER_LENGTH:
            layouts.pop(0)
        layouts.append(layout)

    def __len__(self) -> int:
        return sum(map(len, self._by_length.values()))
