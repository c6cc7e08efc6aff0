"""How a rejected value is shown in an error message: short, one line, unambiguous, and cheap
whatever the value's size (a YAML alias bomb is a 370-byte file whose repr() never ends)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping

SHOWN_CHARS = 40
"""Annotation values are user input of any size; a log line needs only enough to find it."""

_MAX_INT_BITS = 128
"""Larger ints are described, not printed: int-to-text costs grow with the square of the digits."""

_CONTAINERS = (list, tuple, set, frozenset, dict, Mapping)


def quote_value(value: object) -> str:
    """repr()-like text of the value cut to SHOWN_CHARS, built only as far as it is shown, so
    any object costs O(SHOWN_CHARS): huge, deeply nested and self-referencing ones too."""
    if isinstance(value, str):
        if len(value) <= SHOWN_CHARS:
            return repr(value)
        return repr(value[:SHOWN_CHARS]) + f"... ({len(value)} chars)"
    pieces: list[str] = []
    used = 0
    for piece in _pieces(value):
        pieces.append(piece)
        used += len(piece)
        if used > SHOWN_CHARS:
            break
    shown = "".join(pieces)
    if len(shown) > SHOWN_CHARS:
        shown = shown[:SHOWN_CHARS] + "..."
    return f"{shown} ({_describe_type(value)})"


def _describe_type(value: object) -> str:
    name = type(value).__name__
    if isinstance(value, _CONTAINERS):
        count = len(value)  # type: ignore[arg-type]
        return f"{name} of {count} item{'' if count == 1 else 's'}"
    return name


def _pieces(value: object) -> Iterator[str]:
    """The text of value, piece by piece; every piece is at least one character long, so the
    caller's budget bounds the number of steps and the nesting the generators reach."""
    if isinstance(value, (dict, Mapping)):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            if index:
                yield ", "
            yield from _pieces(key)
            yield ": "
            yield from _pieces(item)
        yield "}"
    elif isinstance(value, (list, tuple, set, frozenset)):
        opening, closing = {list: "[]", tuple: "()"}.get(type(value), "{}")
        yield opening
        for index, item in enumerate(value):
            if index:
                yield ", "
            yield from _pieces(item)
        yield closing
    else:
        yield _scalar(value)


def _scalar(value: object) -> str:
    if isinstance(value, str):
        return repr(value[: SHOWN_CHARS + 1])
    if isinstance(value, (bytes, bytearray)):
        return repr(bytes(value[: SHOWN_CHARS + 1]))
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _MAX_INT_BITS:
        return f"<int of {value.bit_length()} bits>"
    if value is None or isinstance(value, (bool, int, float, datetime.date, datetime.time, datetime.timedelta)):
        return repr(value)
    return f"<{type(value).__name__}>"  # an arbitrary object's repr() may be of any size
