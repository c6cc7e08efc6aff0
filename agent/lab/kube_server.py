"""The lab's Kubernetes API stand-in: HTTPS on 127.0.0.1 with bearer-token auth, serving the
lab's pods (same UIDs, namespaces and names as its CRI stand-in) for real kubectl and API
clients. Request handling is in kube_api.py; this is the HTTP/TLS plumbing and the process.

    python -m agent.lab.kube_server --state STATE_JSON --dir KUBE_DIR --node-name NAME
        [--port 0] [--ready-file PATH] [--bookmark-interval-s 5] [--min-request-timeout-s 300]
        [--log-level info]

KUBE_DIR holds the CA, server certificate and key, token (kube_pki.py) and the store
(store.json), saved within a second of each change and at once on SIGTERM. Once listening,
the server writes its port to the ready file. A connection's TLS handshake runs in that
connection's thread, so a slow client never holds up the others.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import select
import socket
import signal
import ssl
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from agent.lab.kube_api import KubeApi
from agent.lab.kube_request import Request, Response, WatchResponse, error_response
from agent.lab.kube_pki import KubePki
from agent.lab.kube_status import ApiError, bad_request, request_too_large
from agent.lab.kube_store import KubeStore
from agent.lab.kube_sync import LabStateFollower
from agent.lab.kube_watch import http_chunk

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 3 * 1024 * 1024
"""The apiserver's default limit on a request body."""
HANDSHAKE_TIMEOUT_S = 10.0
IDLE_CONNECTION_TIMEOUT_S = 120.0
STORE_SAVE_INTERVAL_S = 1.0
"""A SIGKILLed server loses at most this much of its API-side changes (SIGTERM saves at once)."""
STORE_FILE = "store.json"
SYNCED_FILE = "synced"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"  # no HTTP/0.9: a malformed request line still gets a status line
    timeout = IDLE_CONNECTION_TIMEOUT_S
    server: KubeHttpServer
    server_version = "podbw-lab-kube-apiserver"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except ApiError as e:
            self.server.api.count(f"error {e.code}")
            self.close_connection = True
            self._send(error_response(e))
            return
        request = Request(self.command, url.path, parse_qs(url.query, keep_blank_values=True), self.headers, body)
        result = self.server.api.handle(request)
        if isinstance(result, WatchResponse):
            self._stream(result, started)
            return
        self._send(result)
        log.debug("%s %s?%s -> %d (%.1f ms)", self.command, url.path, url.query, result.status, (time.monotonic() - started) * 1e3)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise bad_request(f"invalid Content-Length {length_text!r}") from None
        if length > MAX_BODY_BYTES:
            raise request_too_large(MAX_BODY_BYTES)
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise bad_request("malformed chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(body)
            if len(body) + size > MAX_BODY_BYTES:
                raise request_too_large(MAX_BODY_BYTES)
            body += self.rfile.read(size)
            self.rfile.readline(16)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (malformed request line or headers) as Status objects too."""
        self.close_connection = True
        self.server.api.count(f"error {code}")
        phrase = HTTPStatus(code).phrase
        self._send(error_response(ApiError(code, phrase.replace(" ", "").replace("-", ""), message or phrase)))
        log.debug("%s: %d %s", self.address_string(), code, message or phrase)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-cache, private")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _stream(self, watch: WatchResponse, started: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()

        def write(data: bytes) -> None:
            self.wfile.write(http_chunk(data))
            self.wfile.flush()

        def client_gone() -> bool:
            # An HTTP/1.1 client sends nothing while it reads a response: anything readable is
            # its close (EOF, or a TLS close_notify).
            try:
                readable, _, _ = select.select([self.connection], [], [], 0)
            except (OSError, ValueError):
                return True
            return bool(readable)

        log.debug("%s: started", watch.description)
        try:
            why = watch.stream.run(write, client_gone)
            if why == "client gone":
                self.close_connection = True
            else:
                write(b"")
        except (OSError, ValueError) as e:  # the client went away (ValueError: write to a closed file)
            why = f"client gone ({e.__class__.__name__})"
            self.close_connection = True
        log.debug("%s: ended after %.1f s, %d events: %s", watch.description, time.monotonic() - started,
                  watch.stream.events_sent, why)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        log.debug("%s %s", self.address_string(), format % args)


class KubeHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], api: KubeApi, tls: ssl.SSLContext) -> None:
        self.api = api
        self.tls = tls
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Headers and body leave in separate writes: without NODELAY, Nagle holds the body until
        # the client's delayed ACK, 40 ms on every response.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log.debug("TLS handshake with %s failed: %s", client_address, e)
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        except (OSError, ssl.SSLError) as e:
            log.debug("connection from %s: %s", client_address, e)
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("connection from %s failed", client_address)


def tls_context(pki: KubePki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.set_alpn_protocols(["http/1.1"])  # no HTTP/2: Go clients then speak HTTP/1.1
    return context


def bind(api: KubeApi, pki: KubePki, port: int) -> KubeHttpServer:
    """Listen on 127.0.0.1:port; a port now taken by someone else falls back to a free one."""
    try:
        return KubeHttpServer(("127.0.0.1", port), api, tls_context(pki))
    except OSError as e:
        if port == 0 or e.errno != errno.EADDRINUSE:
            raise
        log.warning("port %d is taken; listening on a free port instead (clients must reread the kubeconfig)", port)
        return KubeHttpServer(("127.0.0.1", 0), api, tls_context(pki))


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(text)
    os.replace(tmp, path)


def _save_loop(store: KubeStore, path: str, stop: threading.Event) -> None:
    while not stop.wait(STORE_SAVE_INTERVAL_S):
        if store.dirty:
            try:
                store.save(path)
            except OSError as e:
                log.warning("saving the API store to %s failed: %s", path, e)


def load_store(path: str) -> KubeStore:
    try:
        return KubeStore.load(path)
    except ValueError as e:
        aside = f"{path}.unreadable"
        log.error("%s; starting with an empty store (the old one is kept as %s)", e, aside)
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        return KubeStore()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.lab.kube_server", description="The podbw lab's Kubernetes API stand-in.")
    parser.add_argument("--state", required=True, help="the lab's state file (state.json)")
    parser.add_argument("--dir", required=True, help="directory with the CA, certificate, key, token and store")
    parser.add_argument("--node-name", required=True, help="spec.nodeName of the lab's pods")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--ready-file", help="write the port here once listening")
    parser.add_argument("--bookmark-interval-s", type=float, default=5.0, help="seconds between watch bookmarks")
    parser.add_argument("--min-request-timeout-s", type=float, default=300.0,
                        help="a watch without timeoutSeconds ends after this × [1, 2) seconds")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    pki = KubePki(args.dir)
    store_path = os.path.join(args.dir, STORE_FILE)
    try:
        store = load_store(store_path)
        follower = LabStateFollower(store, args.state, args.node_name, os.path.join(args.dir, SYNCED_FILE))
        follower.sync_once()  # the first list already holds the lab's pods
        api = KubeApi(store, pki.token(), args.bookmark_interval_s, args.min_request_timeout_s)
        server = bind(api, pki, args.port)
    except (OSError, ssl.SSLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    port = server.server_address[1]
    api.server_address = f"127.0.0.1:{port}"
    threads = [
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="kube-http", daemon=True),
        threading.Thread(target=follower.run, args=(stop,), name="kube-lab-state", daemon=True),
        threading.Thread(target=_save_loop, args=(store, store_path, stop), name="kube-store-save", daemon=True),
    ]
    for thread in threads:
        thread.start()
    if args.ready_file:
        _write_atomically(args.ready_file, f"{port}\n")
    log.info("Kubernetes API stand-in on https://127.0.0.1:%d for node %s (resourceVersion %d, state %s)",
             port, args.node_name, store.rv, args.state)
    try:
        while not stop.wait(0.5):  # a timed wait lets the signal handler run promptly
            pass
    finally:
        store.stop()  # ends the watch streams
        server.shutdown()
        server.server_close()
        store.save(store_path)
    log.info("stopped at resourceVersion %d", store.rv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
