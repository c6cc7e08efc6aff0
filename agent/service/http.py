"""HTTP endpoint: /metrics (Prometheus text or OpenMetrics, gzip), /healthz, /readyz.

A scrape only renders what the registry's collectors hold (the sampler's latest Snapshot), and
scrapes of one snapshot share one render. Connections are served by a fixed set of threads
(http_server.py), so clients, slow or many, can never take the threads or processes the agent
needs to sample and reconcile. TLS, basic auth and extra headers come from an exporter-toolkit
web config (web_config.py), re-read when it or its certificates change.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from prometheus_client.registry import CollectorRegistry

from agent.service.basic_auth import BasicAuth, Verdict
from agent.service.http_negotiation import choose_format, gzip_accepted
from agent.service.http_request import Request, Response, error_response
from agent.service.http_server import EventLoop, ServerLimits, ThreadedEventLoop
from agent.service.http_stats import HttpStats
from agent.service.metrics_body import render_body
from agent.service.web_config import WebConfig, WebConfigError, read_web_config
from agent.service.web_config_source import WebConfigSource

log = logging.getLogger(__name__)

Check = Callable[[], "tuple[bool, str]"]
LISTEN_BACKLOG = 4096
"""As Go servers (node_exporter) take it, capped by net.core.somaxconn: a full backlog drops a
new client's SYN, which it retries only a second later, so a flood of reconnecting slow clients
would delay probes by that second."""
TEXT_PLAIN = "text/plain; charset=utf-8"


class MetricsServerError(Exception):
    """The metrics endpoint cannot start: bad address, port in use, unusable web config."""


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


def web_config_source(web_config_file: str | None) -> WebConfigSource | None:
    """The web config from --web.config.file; None without one (plain HTTP, no auth).
    MetricsServerError when it cannot be loaded."""
    if web_config_file is None:
        return None
    try:
        return WebConfigSource(lambda: read_web_config(web_config_file), web_config_file)
    except WebConfigError as exc:
        raise MetricsServerError(f"web config: {exc}") from None


class MetricsServer:
    """The agent's HTTP endpoint; start() binds, stop() ends it within 1 s. Its own families
    (podbw_http_*, podbw_web_config_*) are exported through `registry`."""

    def __init__(
        self,
        address: str,
        registry: CollectorRegistry,
        healthy: Check,
        ready: Check,
        *,
        web_config_file: str | None = None,
        render_key: Callable[[], object] | None = None,
        limits: ServerLimits = ServerLimits(),
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
        self._limits = limits
        self._host, self._port = parse_address(address)
        self._web = web_config_source(web_config_file)
        self._auth = BasicAuth()
        self.stats = HttpStats()
        registry.register(self.stats)
        if self._web is not None:
            registry.register(self._web)
        self._listener: socket.socket | None = None
        self._loop: ThreadedEventLoop | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); the configured one before start()."""
        if self._listener is None:
            return self._port
        return int(self._listener.getsockname()[1])

    @property
    def tls(self) -> bool:
        return self._web is not None and self._web.uses_tls

    # ---- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._listener is not None:
            raise MetricsServerError("metrics server already started")
        self._listener = self._listen()
        tls = self._web.tls if self._web is not None else (lambda: None)
        self._loop = ThreadedEventLoop(EventLoop(self._listener, self.handle, tls, self.stats, self._limits))
        self._loop.start()
        scheme = "https" if self.tls else "http"
        log.info("serving metrics on %s://%s/metrics (port %d)", scheme, self.address, self.port)

    def _listen(self) -> socket.socket:
        try:
            if not self._host:
                try:
                    return _listening_socket(socket.AF_INET6, ("::", self._port))
                except OSError:  # no IPv6 on this node
                    return _listening_socket(socket.AF_INET, ("0.0.0.0", self._port))
            family, _, _, _, sockaddr = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)[0]
            return _listening_socket(family, sockaddr)
        except OSError as exc:
            raise MetricsServerError(f"cannot listen on {self.address}: {exc}") from exc

    def stop(self) -> None:
        """Close every connection and the port; idempotent."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop(timeout_s=1.0)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    # ---- requests (in the worker threads) ---------------------------------------------------

    def handle(self, request: Request) -> Response:
        config = self._web.config if self._web is not None else None
        response = self._authorized(request, config)
        if config is not None and config.headers:
            response.headers[:0] = config.headers
        return response

    def _authorized(self, request: Request, config: WebConfig | None) -> Response:
        if config is not None and config.basic_auth_users:
            verdict = self._auth.check(request.header("authorization"), config.basic_auth_users)
            if verdict is Verdict.DENIED:
                response = error_response(401, "unauthorized")
                response.headers.append(("WWW-Authenticate", "Basic"))
                return response
            if verdict is Verdict.BUSY:
                response = error_response(429, "busy checking passwords; retry")
                response.headers.append(("Retry-After", "1"))
                return response
        return self._route(request)

    def _route(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            response = error_response(405, "method not allowed")
            response.headers.append(("Allow", "GET, HEAD"))
            return response
        url = urlsplit(request.target)
        if url.path == "/metrics":
            response = self._metrics(request, parse_qs(url.query))
        elif url.path == "/healthz":
            response = _check(self.healthy)
        elif url.path == "/readyz":
            response = _check(self.ready)
        else:
            response = error_response(404, "not found")
        response.send_body = request.method == "GET"
        return response

    def _metrics(self, request: Request, params: dict[str, list[str]]) -> Response:
        fmt = choose_format(request.header("accept"))
        compress = gzip_accepted(request.header("accept-encoding"))
        registry = self.registry
        filtered = "name[]" in params
        if filtered:
            registry = registry.restricted_registry(params["name[]"])  # type: ignore[assignment]

        def render() -> bytes:
            return render_body(fmt.encoder, registry, compress)

        try:
            body = render() if filtered else self.rendered(fmt.content_type, compress, render)
        except Exception:
            log.exception("rendering metrics failed")
            return error_response(500, "rendering metrics failed")
        response = Response(200, fmt.content_type, body, headers=[("Vary", "Accept, Accept-Encoding")])
        if compress:
            response.headers.append(("Content-Encoding", "gzip"))
        return response

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


def _check(check: Check) -> Response:
    try:
        ok, reason = check()
    except Exception as exc:
        log.exception("health check failed")
        ok, reason = False, f"check failed: {exc}"
    text = "ok" if ok else (reason or "not ok")
    return Response(200 if ok else 503, TEXT_PLAIN, (text + "\n").encode("utf-8", "replace"))


def _listening_socket(family: socket.AddressFamily, address: tuple) -> socket.socket:  # type: ignore[type-arg]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and address[0] == "::":
            # ":port" means every address: accept IPv4 too on the IPv6 socket.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
        # Non-blocking: a client that vanishes between select and accept must not park the loop.
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
