"""Log lines as node_exporter (promslog) writes them, on stderr, one line per record:

    time=2026-01-02T03:04:05.678Z level=WARN source=agent/shaping/reconciler.py:415 msg="..." pod=web

`logfmt` quotes and escapes every value that needs it; `json` writes one object per line. Fields
passed with `extra=` (see agent.model.log_fields) follow `msg` as fields of their own.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import threading
import time
from typing import Any

from agent.service.settings import LogSettings

PYTHON_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
MAX_VALUE_CHARS = 4096
"""Longer values are cut: a huge annotation must not make a huge line."""
BASE_KEYS = ("time", "level", "source", "msg")
RENAMED_PREFIX = "field_"
"""An `extra=` key that is also a base key is written with this prefix, never over the base one."""
UNCUT_KEYS = frozenset({"exception", "stack"})
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep
_NEEDS_QUOTES = re.compile(r'[\s="\\]')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def level_name(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARN"
    return "INFO" if levelno >= logging.INFO else "DEBUG"


def timestamp(created_s: float) -> str:
    """RFC 3339 in UTC with milliseconds, as promslog writes it."""
    millis = int(created_s * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created_s)) + f".{millis:03d}Z"


def source(record: logging.LogRecord) -> str:
    """`agent/discovery/discovery.py:181` for podbw's files (unambiguous), the base name for others."""
    path = record.pathname
    shown = path[len(_PACKAGE_PARENT) :] if path.startswith(_PACKAGE_PARENT) else os.path.basename(path)
    return f"{shown}:{record.lineno}"


def cut(text: str) -> str:
    if len(text) <= MAX_VALUE_CHARS:
        return text
    return f"{text[:MAX_VALUE_CHARS]}...({len(text) - MAX_VALUE_CHARS} more chars)"


class StructuredFormatter(logging.Formatter):
    """The fields of a record in order: base keys, `extra=` fields, then any exception."""

    def fields(self, record: logging.LogRecord) -> list[tuple[str, Any]]:
        fields: list[tuple[str, Any]] = [
            ("time", timestamp(record.created)),
            ("level", level_name(record.levelno)),
            ("source", source(record)),
            ("msg", record.getMessage()),
        ]
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                key = _BAD_KEY_CHARS.sub("_", key) or "_"
                fields.append((RENAMED_PREFIX + key if key in BASE_KEYS else key, value))
        if record.exc_info:
            fields.append(("exception", self.formatException(record.exc_info)))
        if record.stack_info:
            fields.append(("stack", record.stack_info))
        return fields


class LogfmtFormatter(StructuredFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={logfmt_value(value, key in UNCUT_KEYS)}" for key, value in self.fields(record))


class JsonFormatter(StructuredFormatter):
    def format(self, record: logging.LogRecord) -> str:
        # ensure_ascii: lone surrogates (undecodable file names) stay encodable on any stderr.
        return json.dumps({key: json_value(value, key in UNCUT_KEYS) for key, value in self.fields(record)})


def logfmt_value(value: Any, whole: bool = False) -> str:
    text = as_text(value)
    if not whole:
        text = cut(text)
    if text and text.isprintable() and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + "".join(_escaped(c) for c in text) + '"'


def _escaped(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def json_value(value: Any, whole: bool = False) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    text = as_text(value)
    return text if whole else cut(text)


def as_text(value: Any) -> str:
    # str.__str__: a str-valued Enum (Direction.INGRESS) is written as its value, "ingress".
    return str.__str__(value) if isinstance(value, str) else str(value)


def configure(settings: LogSettings, default_level: str) -> None:
    """Log to stderr in `settings.format` at `settings.level` (else `default_level`). Warnings
    and uncaught exceptions become log lines too, so JSON output stays one object per line.
    Leaves logging alone when the process already set it up (pytest's capture, an embedding)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else LogfmtFormatter())
    root.addHandler(handler)
    root.setLevel(PYTHON_LEVELS[settings.level or default_level])
    # apscheduler logs every job run at INFO: one line per second is noise, not an event.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # httpx2 logs every API request (each watch, each Event) at INFO; podbw logs what they mean.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
    logging.getLogger("agent").critical("uncaught exception", exc_info=(kind, error, traceback))


def _log_uncaught_in_thread(hook: threading.ExceptHookArgs) -> None:
    if hook.exc_type is SystemExit:
        return
    thread = hook.thread.name if hook.thread is not None else "?"
    logging.getLogger("agent").critical(
        "uncaught exception in thread %s", thread, exc_info=(hook.exc_type, hook.exc_value, hook.exc_traceback)
    )
