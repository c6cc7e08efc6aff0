"""Parsers of flag and environment text: each returns the value or raises ValueError with a
one-line reason that quotes the text (cut short, escaped: it may come from anywhere)."""

from __future__ import annotations

import math
import os
from typing import Callable

SHOWN_CHARS = 80
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def shown(text: str) -> str:
    """`text` quoted and escaped for an error message, at most SHOWN_CHARS of it."""
    cut = text[:SHOWN_CHARS]
    return repr(cut) + ("..." if len(text) > SHOWN_CHARS else "")


def seconds_between(low_s: float, high_s: float, low_included: bool = True) -> Callable[[str], float]:
    """A number of seconds in [low_s, high_s] (or (low_s, high_s] when not `low_included`)."""
    low = f"{'at least' if low_included else 'more than'} {low_s:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{shown(text)} is not a number of seconds") from None
        in_range = (value >= low_s if low_included else value > low_s) and value <= high_s
        if not math.isfinite(value) or not in_range:
            raise ValueError(f"{shown(text)}: must be {low} and at most {high_s:g} seconds")
        return value

    return parse


def integer_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{shown(text)} is not an integer") from None
        if not low <= value <= high:
            raise ValueError(f"{shown(text)}: must be between {low} and {high}")
        return value

    return parse


def one_of(*choices: str, aliases: dict[str, str] | None = None) -> Callable[[str], str]:
    """One of `choices`; `aliases` maps other accepted spellings to a choice."""
    accepted = {choice: choice for choice in choices} | (aliases or {})

    def parse(text: str) -> str:
        try:
            return accepted[text]
        except KeyError:
            raise ValueError(f"invalid choice {shown(text)} (choose from {', '.join(choices)})") from None

    return parse


def boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{shown(text)} is not a boolean (use true or false)")


def optional_file(text: str) -> str | None:
    """A file that may appear later ("" for none); a directory there is an error."""
    if not text:
        return None
    if os.path.isdir(text):
        raise ValueError(f"{shown(text)} is a directory, not a file")
    return text


def directory(text: str) -> str:
    """A directory path; it may appear later, but nothing else may be there."""
    if not text:
        raise ValueError("empty path")
    if os.path.exists(text) and not os.path.isdir(text):
        raise ValueError(f"{shown(text)} is not a directory")
    return text
