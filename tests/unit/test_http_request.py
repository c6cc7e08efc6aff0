"""Request heads in, response heads out: table-driven."""

from __future__ import annotations

import pytest

from agent.service.http_request import BadRequest, Response, head_end, parse_head, response_head


@pytest.mark.parametrize(
    ("buffer", "end"),
    [(b"", -1), (b"GET / HTTP/1.1\r\n", -1), (b"GET / HTTP/1.1\r\n\r\n", 18), (b"GET / HTTP/1.1\n\nrest", 16),
     (b"GET / HTTP/1.1\r\nA: b\r\n\r\nGET", 24)],
)
def test_head_end(buffer: bytes, end: int) -> None:
    assert head_end(buffer) == end


def test_parse_head_reads_method_target_and_joins_repeated_fields() -> None:
    request = parse_head(
        b"GET /metrics?name[]=a HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\naccept:  */* \r\n\r\n"
    )
    assert (request.method, request.target, request.version) == ("GET", "/metrics?name[]=a", "HTTP/1.1")
    assert request.header("accept") == "text/plain, */*"
    assert request.header("missing") == ""
    assert request.keep_alive


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),  # 1.0: one request a connection
    ],
)
def test_keep_alive(head: bytes, keep_alive: bool) -> None:
    assert parse_head(head).keep_alive is keep_alive


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\n\r\n", 400),
        (b"GET / FTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nno-colon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nbad name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 101 + b"\r\n", 431),
    ],
)
def test_parse_head_refuses(head: bytes, status: int) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_head(head)
    assert caught.value.status == status


def test_content_length_zero_is_no_body() -> None:
    assert parse_head(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").method == "GET"


def test_response_head() -> None:
    response = Response(401, "text/plain; charset=utf-8", b"no\n", [("WWW-Authenticate", "Basic")], close=True)
    assert response_head(response, "Thu, 01 Jan 1970 00:00:00 GMT") == (
        b"HTTP/1.1 401 Unauthorized\r\n"
        b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 3\r\n"
        b"Cache-Control: no-store\r\n"
        b"WWW-Authenticate: Basic\r\n"
        b"Connection: close\r\n\r\n"
    )
