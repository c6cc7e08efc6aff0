"""How a rejected value is shown in an error message: short, one line, unambiguous."""

from __future__ import annotations

SHOWN_CHARS = 40
"""Annotation values are user input of any size; a log line needs only enough to find it."""


def quote_value(value: object) -> str:
    """repr() of the value (escapes newlines and odd characters), cut to SHOWN_CHARS."""
    if isinstance(value, str):
        if len(value) <= SHOWN_CHARS:
            return repr(value)
        return repr(value[:SHOWN_CHARS]) + f"... ({len(value)} chars)"
    shown = repr(value)
    if len(shown) > SHOWN_CHARS:
        shown = shown[:SHOWN_CHARS] + "..."
    return f"{shown} ({type(value).__name__})"
