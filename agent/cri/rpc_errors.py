"""Turn a gRPC failure into the CriError subclass that tells the caller what to do next."""

from __future__ import annotations

import grpc

from agent.cri.errors import (
    CriError,
    CriNotCri,
    CriNotFound,
    CriPermissionDenied,
    CriUnavailable,
    one_line,
)

MAX_DETAILS_CHARS = 300

_UNAVAILABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,  # the runtime went away mid-stream
        grpc.StatusCode.ABORTED,
    }
)
# What gRPC says when the peer answers but does not speak gRPC (e.g. an HTTP/1 server). A peer
# that accepts and stays silent looks like an overloaded runtime, so it stays CriUnavailable.
_NOT_GRPC_HINTS = ("http1.x", "failed parsing http/2", "deserializing response", "content-type")


def classify_status(code: grpc.StatusCode | None, details: str) -> type[CriError]:
    """The CriError subclass for a gRPC status code and its details text."""
    lowered = details.lower()
    if "permission denied" in lowered and code in (grpc.StatusCode.UNAVAILABLE, None):
        return CriPermissionDenied
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return CriPermissionDenied
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return CriNotCri
    if code == grpc.StatusCode.NOT_FOUND:
        return CriNotFound
    if code in (
        grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN
    ) and any(hint in lowered for hint in _NOT_GRPC_HINTS):
        return CriNotCri
    if code in _UNAVAILABLE_CODES:
        return CriUnavailable
    return CriError


def error_from_status(
    endpoint: object, method: str, code: grpc.StatusCode | None, details: str, timeout_s: float | None
) -> CriError:
    """A CriError with a one-line message naming the endpoint, the call and the cause."""
    details = one_line(details or "")[:MAX_DETAILS_CHARS]
    code_name = code.name if code is not None else "UNKNOWN"
    kind = classify_status(code, details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        cause = f"no answer within {timeout_s:g} s (DEADLINE_EXCEEDED)"
    elif code == grpc.StatusCode.UNIMPLEMENTED:
        cause = f"not a CRI v1 runtime (UNIMPLEMENTED: {details})"
    elif kind is CriNotCri:
        cause = f"does not speak CRI gRPC ({code_name}: {details})"
    else:
        cause = f"{code_name}: {details}"
    return kind(f"CRI endpoint {endpoint}: {method}: {cause}")


def error_from_rpc(
    endpoint: object, method: str, err: grpc.RpcError, timeout_s: float | None
) -> CriError:
    """error_from_status for a raised grpc.RpcError (which carries code() and details())."""
    code = err.code() if callable(getattr(err, "code", None)) else None
    details = err.details() if callable(getattr(err, "details", None)) else str(err)
    return error_from_status(endpoint, method, code, details or "", timeout_s)
