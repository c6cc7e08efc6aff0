"""A scripted Kubernetes API on loopback (stdlib HTTP/1.1, optionally TLS) for tests that drive the
real client library: each list or watch request of a resource takes the next scripted answer.

A watch answer is a 200 with a chunked stream of JSON lines (the API's watch framing), then either
the end of the stream (the server's timeoutSeconds ran out), an abrupt close (a reset), or a
stream held open until the test releases it; or an error status with a Status body. Every
request is recorded (path, query, Authorization) for assertions."""

from __future__ import annotations

import json
import queue
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

RECORDED = Path(__file__).parent / "kube_recorded"

PATHS = {"/api/v1/pods": "pods", "/api/v1/namespaces": "namespaces"}


def recorded(name: str) -> bytes:
    return (RECORDED / name).read_bytes()


def recorded_lines(name: str) -> list[bytes]:
    return [line for line in recorded(name).splitlines() if line.strip()]


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    """A list's body, or an error's Status."""
    lines: list[bytes] = field(default_factory=list)
    """A watch's events."""
    end: str = "close"
    """After a watch's lines: `close` (the stream ends as at timeoutSeconds), `reset` (the
    connection drops mid-stream), `hold` (open until release() or stop(), sending what push()
    sends meanwhile)."""


@dataclass(frozen=True)
class Request:
    resource: str
    watch: bool
    query: dict[str, str]
    authorization: str


class FakeApi:
    def __init__(self, tls: tuple[str, str] | None = None, port: int = 0) -> None:
        self._lists: dict[str, deque[Answer]] = {"pods": deque(), "namespaces": deque()}
        self._watches: dict[str, deque[Answer]] = {"pods": deque(), "namespaces": deque()}
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.tokens: set[str] | None = None
        """Bearer tokens accepted (None: any, or none)."""
        self._released = threading.Event()
        self._stopped = threading.Event()
        self._pushed: dict[str, queue.Queue[bytes]] = {"pods": queue.Queue(), "namespaces": queue.Queue()}
        self.connections: set = set()
        """Sockets of the connections open now: stop() drops them, as a dying server does."""
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> FakeApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)

    def release(self) -> None:
        """End the watches held open now (later ones are held again)."""
        with self._lock:
            released, self._released = self._released, threading.Event()
        released.set()

    def push(self, resource: str, event: dict) -> None:
        """Send a watch event on the resource's held watch (or the next one held)."""
        self._pushed[resource].put(json.dumps(event).encode())

    def on_list(self, resource: str, *answers: Answer) -> None:
        with self._lock:
            self._lists[resource].extend(answers)

    def on_watch(self, resource: str, *answers: Answer) -> None:
        with self._lock:
            self._watches[resource].extend(answers)

    def requested(self, resource: str, watch: bool) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.resource == resource and r.watch == watch]

    def next_answer(self, request: Request) -> tuple[Answer, threading.Event]:
        """The answer, and the event that ends it if it is held: taken with the request recorded,
        so a release() after a request is seen ends that request's hold."""
        with self._lock:
            self.requests.append(request)
            released = self._released
            if self.tokens is not None and request.authorization.removeprefix("Bearer ") not in self.tokens:
                return Answer(401, _status(401, "Unauthorized", "Unauthorized")), released
            queue_ = (self._watches if request.watch else self._lists)[request.resource]
            if len(queue_) > 1:
                return queue_.popleft(), released
            if queue_:
                return queue_[0], released  # the last answer repeats
        # Nothing scripted: an empty list, or a watch that stays quiet.
        if request.watch:
            return Answer(lines=[], end="hold"), released
        return Answer(body=json.dumps({"kind": "List", "metadata": {"resourceVersion": "1"}, "items": []}).encode()), released

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def hold(self, resource: str, released: threading.Event, send) -> None:
        while not released.is_set() and not self._stopped.is_set():
            try:
                send(self._pushed[resource].get(timeout=0.05))
            except queue.Empty:
                pass


def _status(code: int, reason: str, message: str) -> bytes:
    return json.dumps(
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
         "reason": reason, "code": code}
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: FakeApi

    def log_message(self, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.api._lock:
            self.api.connections.add(self.connection)

    def finish(self) -> None:
        with self.api._lock:
            self.api.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass  # dropped by stop()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        resource = PATHS.get(url.path)
        if resource is None:
            self._send(404, _status(404, "NotFound", f"{url.path} is not served here"))
            return
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        request = Request(resource, query.get("watch") in ("true", "1"), query, self.headers.get("Authorization", ""))
        answer, released = self.api.next_answer(request)
        if answer.status != 200 or not request.watch:
            self._send(answer.status, answer.body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for line in answer.lines:
                self._chunk(line + b"\n")
            if answer.end == "reset":
                self.close_connection = True
                self.wfile.flush()
                self.connection.close()
                return
            if answer.end == "hold":
                self.api.hold(resource, released, lambda line: self._chunk(line + b"\n"))
                if self.api.stopped:
                    return
            self._chunk(b"")
        except OSError:
            self.close_connection = True  # the client went away (closed its client)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def kubeconfig(path: Path, server: str, token: str = "test-token") -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        f"clusters:\n- name: test\n  cluster:\n    server: {server}\n"
        f"users:\n- name: test\n  user:\n    token: {token}\n"
        "contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n"
    )
    return path
