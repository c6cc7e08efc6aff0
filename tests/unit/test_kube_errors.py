"""Every client-library failure becomes one KubeError subclass with a one-line message."""

from __future__ import annotations

import httpx2
import msgspec
import pytest
from lightkube import ApiError, ConfigError
from lightkube.core.internal_models import meta_v1

from agent.kube.errors import (
    MAX_MESSAGE_CHARS,
    KubeConfigError,
    KubeError,
    KubeForbidden,
    KubeGone,
    KubeUnavailable,
    classify,
)
from tests.unit.kube_api_server import recorded

REQUEST = httpx2.Request("GET", "https://10.96.0.1/api/v1/pods")


def http_error(code: int, body: bytes = b"") -> httpx2.HTTPStatusError:
    response = httpx2.Response(code, request=REQUEST, content=body, headers={"Content-Type": "application/json"})
    return httpx2.HTTPStatusError("boom", request=REQUEST, response=response)


def api_error(body: bytes) -> ApiError:
    response = httpx2.Response(400, request=REQUEST, content=body, headers={"Content-Type": "application/json"})
    return ApiError(request=REQUEST, response=response)


CASES = [
    ("410 as a watch ERROR event", ApiError(status=meta_v1.Status.from_dict(
        {"status": "Failure", "message": "too old resource version: 1200 (1350)", "reason": "Expired", "code": 410})),
     KubeGone, "watch pods: 410 Expired: too old resource version: 1200 (1350)"),
    ("410 as an HTTP status (watch start)", http_error(410), KubeGone, "watch pods: HTTP 410 Gone"),
    ("403 Status from a list", api_error(recorded("status_403.json")), KubeForbidden, "watch pods: 403 Forbidden: pods is forbidden"),
    ("401", http_error(401), KubeForbidden, "HTTP 401 Unauthorized"),
    ("429", http_error(429), KubeUnavailable, "HTTP 429"),
    ("503", http_error(503), KubeUnavailable, "HTTP 503"),
    ("404", http_error(404), KubeError, "HTTP 404 Not Found"),
    ("connection refused", httpx2.ConnectError("[Errno 111] Connection refused"), KubeUnavailable,
     "watch pods: ConnectError: [Errno 111] Connection refused"),
    ("connect timeout", httpx2.ConnectTimeout("timed out"), KubeUnavailable, "ConnectTimeout: timed out"),
    ("read timeout", httpx2.ReadTimeout("timed out"), KubeUnavailable, "ReadTimeout"),
    ("reset mid-stream", httpx2.RemoteProtocolError("peer closed connection without sending complete message body"),
     KubeUnavailable, "RemoteProtocolError"),
    ("an OS error", ConnectionResetError(104, "Connection reset by peer"), KubeUnavailable, "ConnectionResetError"),
    ("bad server URL", httpx2.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'."),
     KubeConfigError, "unsupported protocol"),
    ("lightkube config", ConfigError("Configuration file /nope not found"), KubeConfigError, "/nope not found"),
    ("not JSON", msgspec.DecodeError("JSON is malformed: invalid character"), KubeError, "malformed answer"),
    ("anything else", RuntimeError("Cannot send a request, as the client has been closed."), KubeError,
     "RuntimeError: Cannot send a request"),
]


@pytest.mark.parametrize("exc, kind, text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(exc: BaseException, kind: type, text: str) -> None:
    err = classify("watch pods", exc)
    assert type(err) is kind
    assert text in str(err) and "\n" not in str(err)


def test_a_long_multiline_cause_is_one_short_line() -> None:
    err = classify("list pods", httpx2.ConnectError("first\nsecond " + "x" * 1000))
    assert "\n" not in str(err) and len(str(err)) <= MAX_MESSAGE_CHARS + 3
    assert str(err).startswith("list pods: ConnectError: first second")


def test_a_kube_error_passes_through() -> None:
    gone = KubeGone("x")
    assert classify("list", gone) is gone
