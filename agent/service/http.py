"""HTTP endpoint: /metrics (Prometheus text or OpenMetrics, gzip), /healthz, /readyz.

A scrape only renders what the registry's collectors hold (the sampler's latest Snapshot), so
each request is cheap and scrapers are served concurrently, one daemon thread each.
"""

from __future__ import annotations

import logging
import selectors
import socket
import socketserver
import ssl
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable, Iterator
from urllib.parse import parse_qs, urlsplit

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger(__name__)

Check = Callable[[], "tuple[bool, str]"]

# Bounds a slow or stalled client (including a TLS handshake) to one thread for this long.
CONNECTION_TIMEOUT_S = 10.0
GZIP_LEVEL = 6
"""zlib's default: nearly the size of level 9 at a fraction of the CPU per scrape."""
GZIP_WBITS = 16 + zlib.MAX_WBITS
"""zlib's window bits for a gzip container (what gzip.compress writes)."""

Encoder = Callable[[Collector], bytes]


class _Families:
    """A collector of the given families only: lets an exposition encoder format part of a
    registry."""

    def __init__(self, *families: Metric) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def encode_by_family(encoder: Encoder, registry: Collector) -> Iterator[bytes]:
    """`encoder(registry)` in pieces, one metric family each (their concatenation is the same
    document). prometheus_client's encoders hold every line of the response as a str, then the
    joined str, then its bytes: ~3 MiB at 250 pods, which a render would leave behind as heap
    fragmentation; a family at a time holds one family's lines at most."""
    trailer = encoder(_Families())  # what the format ends every document with (OpenMetrics: # EOF)
    for family in registry.collect():
        piece = encoder(_Families(family))
        yield piece[: len(piece) - len(trailer)] if trailer else piece
    if trailer:
        yield trailer


def render_body(encoder: Encoder, registry: Collector, compress: bool) -> bytes:
    """The /metrics body; gzip'ed piece by piece when `compress`, so the uncompressed text of
    the whole response never exists at once."""
    if not compress:
        return b"".join(encode_by_family(encoder, registry))
    gzipper = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
    parts = [gzipper.compress(piece) for piece in encode_by_family(encoder, registry)]
    parts.append(gzipper.flush())
    return b"".join(parts)


class MetricsServerError(Exception):
    """The metrics endpoint cannot start: bad address, port in use, unusable TLS files."""


def parse_address(address: str) -> tuple[str, int]:
    """("host", port) from "host:port", ":port" (all addresses) or "[v6addr]:port"."""
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise MetricsServerError(f"listen address {address!r} has no port (want host:port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise MetricsServerError(f"listen address {address!r}: put IPv6 hosts in brackets")
    try:
        port = int(port_text)
    except ValueError:
        raise MetricsServerError(f"listen address {address!r}: port is not a number") from None
    if not 0 <= port <= 65535:
        raise MetricsServerError(f"listen address {address!r}: port out of range")
    return host, port


def _tls_context(
    certfile: str | None, keyfile: str | None, client_cafile: str | None
) -> ssl.SSLContext | None:
    if certfile is None:
        if keyfile is not None or client_cafile is not None:
            raise MetricsServerError("TLS key or client CA given without a certificate file")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
        if client_cafile is not None:
            context.load_verify_locations(cafile=client_cafile)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise MetricsServerError(f"cannot load TLS files: {exc}") from exc
    return context


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(
        self,
        host: str,
        port: int,
        family: socket.AddressFamily,
        app: MetricsServer,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.address_family = family
        self.app = app
        self.tls = tls
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            # ":port" means every address: accept IPv4 too on the IPv6 socket.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # Not HTTPServer.server_bind: its getfqdn() is a reverse DNS lookup that can hang.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request, client_address) -> None:  # type: ignore[override]
        # Runs in the connection's own thread: a slow TLS handshake blocks nobody else.
        request.settimeout(CONNECTION_TIMEOUT_S)
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            self.shutdown_request(conn)

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        # Clients hanging up mid-response are routine; never print tracebacks to stderr.
        log.debug("request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "podbw"
    sys_version = ""
    timeout = CONNECTION_TIMEOUT_S

    def do_GET(self) -> None:
        self._route(send_body=True)

    def do_HEAD(self) -> None:
        self._route(send_body=False)

    def _route(self, send_body: bool) -> None:
        url = urlsplit(self.path)
        app = self.server.app
        if url.path == "/metrics":
            self._metrics(app.registry, parse_qs(url.query), send_body)
        elif url.path == "/healthz":
            self._check(app.healthy, send_body)
        elif url.path == "/readyz":
            self._check(app.ready, send_body)
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n", send_body)

    def _metrics(
        self, registry: CollectorRegistry, params: dict[str, list[str]], send_body: bool
    ) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        compress = gzip_accepted(self.headers.get("Accept-Encoding", ""))
        filtered = "name[]" in params
        if filtered:
            registry = registry.restricted_registry(params["name[]"])  # type: ignore[assignment]

        def render() -> bytes:
            return render_body(encoder, registry, compress)

        try:
            if filtered:
                body = render()
            else:
                body = self.server.app.rendered(content_type, compress, render)
        except Exception:
            log.exception("rendering metrics failed")
            self._send(500, "text/plain; charset=utf-8", b"rendering metrics failed\n", send_body)
            return
        headers = {"Content-Encoding": "gzip"} if compress else {}
        self._send(200, content_type, body, send_body, headers)

    def _check(self, check: Check, send_body: bool) -> None:
        try:
            ok, reason = check()
        except Exception as exc:
            log.exception("health check failed")
            ok, reason = False, f"check failed: {exc}"
        text = "ok" if ok else (reason or "not ok")
        body = (text + "\n").encode("utf-8", "replace")
        self._send(200 if ok else 503, "text/plain; charset=utf-8", body, send_body)

    def _send(
        self,
        status: int,
        content_type: str,
        body: bytes,
        send_body: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib's name)
        log.debug("%s " + format, self.address_string(), *args)


class MetricsServer:
    """The agent's HTTP endpoint, in its own threads; start() binds, stop() ends within 1 s."""

    def __init__(
        self,
        address: str,
        registry: CollectorRegistry,
        healthy: Check,
        ready: Check,
        certfile: str | None = None,
        keyfile: str | None = None,
        client_cafile: str | None = None,
        render_key: Callable[[], object] | None = None,
    ) -> None:
        self.address = address
        self.registry = registry
        self._render_key = render_key
        """Identity of what /metrics shows (the latest snapshot): while it is the same object,
        every scrape gets the bytes rendered for the first one, so N scrapers cost one render
        per sample interval instead of N, and never starve the sampler."""
        self._render_lock = threading.Lock()
        self._rendered: dict[tuple[str, bool], bytes] = {}
        self._rendered_for: object = None
        self.healthy = healthy
        self.ready = ready
        self._host, self._port = parse_address(address)
        self._tls = _tls_context(certfile, keyfile, client_cafile)
        self._server: _Server | None = None
        self._wake: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def rendered(self, content_type: str, compress: bool, render: Callable[[], bytes]) -> bytes:
        if self._render_key is None:
            return render()
        with self._render_lock:  # concurrent scrapers wait for one render instead of each doing it
            key = self._render_key()
            if key is None or key is not self._rendered_for:
                self._rendered = {}
                self._rendered_for = key
            variant = (content_type, compress)
            body = self._rendered.get(variant)
            if body is None or key is None:
                body = render()
                self._rendered[variant] = body
            return body

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); the configured one before start()."""
        if self._server is None:
            return self._port
        return int(self._server.server_address[1])

    @property
    def tls(self) -> bool:
        return self._tls is not None

    def start(self) -> None:
        if self._server is not None:
            raise MetricsServerError("metrics server already started")
        server = self._bind()
        # A non-blocking listener: a connection that vanishes between select and accept must
        # not park the accept loop.
        server.socket.setblocking(False)
        wake_r, wake_w = socket.socketpair()
        self._server, self._wake = server, wake_w
        self._thread = threading.Thread(
            target=_accept_loop, args=(server, wake_r), name="podbw-http", daemon=True
        )
        self._thread.start()
        scheme = "https" if self._tls else "http"
        log.info("serving metrics on %s://%s/metrics (port %d)", scheme, self.address, self.port)

    def _bind(self) -> _Server:
        host = self._host
        try:
            if not host:
                try:
                    return _Server("::", self._port, socket.AF_INET6, self, self._tls)
                except OSError:  # no IPv6 on this node
                    return _Server("0.0.0.0", self._port, socket.AF_INET, self, self._tls)
            infos = socket.getaddrinfo(host, self._port, type=socket.SOCK_STREAM)
            family, _, _, _, sockaddr = infos[0]
            return _Server(sockaddr[0], self._port, family, self, self._tls)
        except OSError as exc:
            raise MetricsServerError(f"cannot listen on {self.address}: {exc}") from exc

    def stop(self) -> None:
        """Stop accepting at once; requests in flight finish in their daemon threads."""
        server, self._server = self._server, None
        if server is None:
            return
        wake, self._wake = self._wake, None
        if wake is not None:
            wake.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        server.server_close()
        if wake is not None:
            wake.close()


def _accept_loop(server: _Server, wake: socket.socket) -> None:
    # Instead of serve_forever(), whose poll interval would delay stop() and wake the agent
    # several times a second for nothing: block until a connection or the stop byte arrives.
    with wake, selectors.DefaultSelector() as selector:
        selector.register(server.socket, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        while True:
            events = selector.select()
            if any(key.fileobj is wake for key, _ in events):
                return
            server.handle_request()
