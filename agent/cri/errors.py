"""Errors of the CRI adapter: one type per way the runtime can fail us, each message one line."""

from __future__ import annotations


class CriError(Exception):
    """Any failure talking to the CRI runtime; the message names the endpoint and the cause."""


class CriUnavailable(CriError):
    """Temporary: socket missing, connection refused, runtime restarting, deadline exceeded."""


class CriPermissionDenied(CriError):
    """The socket (or a directory on its path) is not accessible to this process."""


class CriNotCri(CriError):
    """Something answers on the socket, but it is not a CRI v1 runtime."""


class CriNotFound(CriError):
    """The runtime does not know the sandbox asked for (it may have just been removed)."""


class CriInfoError(CriError):
    """The runtime's verbose info JSON is malformed."""


def one_line(text: str) -> str:
    """Collapse whitespace so a cause from gRPC or the OS fits on one log line."""
    return " ".join(str(text).split())
