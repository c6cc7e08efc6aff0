"""Errors of the Kubernetes API adapter: one type per thing the caller does next, each message one
line. Library errors (httpx2, lightkube, msgspec) are mapped by `classify` and never leave the
adapter."""

from __future__ import annotations

MAX_MESSAGE_CHARS = 300
"""An API Status message may quote an object; the log line needs its start."""


class KubeError(Exception):
    """Any failure talking to the API server: the message names the request and the cause."""


class KubeUnavailable(KubeError):
    """Temporary: connection refused or reset, timeout, 429, 5xx. Retry after a backoff."""


class KubeGone(KubeError):
    """410 Gone: the resourceVersion asked for is too old. Relist, then watch from the list's."""


class KubeForbidden(KubeError):
    """401 or 403: the token is wrong or the ServiceAccount lacks a permission (RBAC)."""


class KubeConfigError(KubeError):
    """No usable configuration: kubeconfig or ServiceAccount files missing or malformed."""


def one_line(text: object) -> str:
    """Whitespace collapsed and cut to MAX_MESSAGE_CHARS, so a cause fits one log line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= MAX_MESSAGE_CHARS else flat[:MAX_MESSAGE_CHARS] + "..."


def for_status(code: int) -> type[KubeError]:
    """The error type for an HTTP status (or an API Status object's code)."""
    if code == 410:
        return KubeGone
    if code in (401, 403):
        return KubeForbidden
    if code == 429 or code >= 500:
        return KubeUnavailable
    return KubeError


def classify(what: str, exc: BaseException) -> KubeError:
    """The KubeError for an exception raised by the client library while doing `what`."""
    import httpx2
    import msgspec
    from lightkube import ApiError, ConfigError

    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, ApiError):
        # A Status from a watch's ERROR event has no HTTP response: its code says it all.
        status = exc.status
        code = status.code or (exc.response.status_code if exc.response is not None else 0)
        reason = f" {status.reason}" if status.reason else ""
        message = f": {status.message}" if status.message else ""
        return for_status(code)(one_line(f"{what}: {code}{reason}{message}"))
    if isinstance(exc, httpx2.HTTPStatusError):
        code = exc.response.status_code
        return for_status(code)(one_line(f"{what}: HTTP {code} {exc.response.reason_phrase}"))
    if isinstance(exc, (httpx2.UnsupportedProtocol, httpx2.InvalidURL)):
        return KubeConfigError(one_line(f"{what}: {exc}"))
    if isinstance(exc, (httpx2.TransportError, OSError)):
        return KubeUnavailable(one_line(f"{what}: {type(exc).__name__}: {exc or 'connection failed'}"))
    if isinstance(exc, ConfigError):
        return KubeConfigError(one_line(f"{what}: {exc}"))
    if isinstance(exc, (msgspec.DecodeError, msgspec.ValidationError, ValueError)):
        return KubeError(one_line(f"{what}: malformed answer: {exc}"))
    return KubeError(one_line(f"{what}: {type(exc).__name__}: {exc}"))
