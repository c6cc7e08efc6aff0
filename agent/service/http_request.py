"""HTTP/1.x request heads in, responses out: the parsing and formatting the server needs, no I/O.

podbw serves GET and HEAD without bodies, so a request is its head alone.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from email.utils import formatdate

MAX_HEADERS = 100
HEAD_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION = re.compile(r"^HTTP/1\.[01]$")
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


class BadRequest(Exception):
    """A request head podbw cannot serve; answered with `status`, then the connection closes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    """The request target as sent: "/metrics?name[]=x"."""
    version: str
    headers: dict[str, str]
    """Lower-cased names; repeated fields joined with ", "."""
    keep_alive: bool

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    send_body: bool = True
    """False for HEAD: the head says how long the body is, without it."""
    close: bool = False


def head_end(buffer: bytes | bytearray) -> int:
    """The offset just past the blank line that ends the head, -1 if it has not arrived."""
    match = HEAD_END.search(buffer)
    return match.end() if match else -1


def parse_head(head: bytes) -> Request:
    """The request in `head` (request line and fields up to the blank line); BadRequest if it
    is not a well-formed HTTP/1.0 or 1.1 request head."""
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise BadRequest(400, f"malformed request line {lines[0][:80]!r}")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise BadRequest(400, "malformed method")
    if not _VERSION.match(version):
        if version.startswith("HTTP/"):
            raise BadRequest(505, f"unsupported version {version[:20]!r}")
        raise BadRequest(400, "malformed request line")
    fields = [line for line in lines[1:] if line]
    if len(fields) > MAX_HEADERS:
        raise BadRequest(431, f"more than {MAX_HEADERS} header fields")
    headers: dict[str, str] = {}
    for line in fields:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):  # also refuses obsolete line folding
            raise BadRequest(400, f"malformed header field {line[:40]!r}")
        name = name.lower()
        value = value.strip(" \t")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0"):
        raise BadRequest(400, "request bodies are not accepted")
    connection = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    keep_alive = version == "HTTP/1.1" and "close" not in connection
    return Request(method, target, version, headers, keep_alive)


class HttpDate:
    """The Date header's value, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second, self._text = second, formatdate(second, usegmt=True)
        return self._text


def response_head(response: Response, date: str) -> bytes:
    """The status line and header fields of `response`, ending with the blank line."""
    lines = [
        f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}",
        f"Date: {date}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
    ]
    lines += [f"{name}: {value}" for name, value in response.headers]
    if response.close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_response(status: int, message: str, close: bool = False) -> Response:
    return Response(status, "text/plain; charset=utf-8", (message + "\n").encode(), close=close)
