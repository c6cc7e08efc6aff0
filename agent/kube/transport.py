"""The HTTP transport under lightkube's client: adds what lightkube does not ask for itself.

- `allowWatchBookmarks=true` on every watch: the server then moves a quiet watch's
  resourceVersion on, so resuming it after a timeout does not find the version compacted (410).
- The ServiceAccount token, read again whenever it rotated (TokenFile), on every request.
- TCP keepalive: a watch has no read timeout, so a server that vanished without a FIN or RST
  (a partition, a dead node) is found out in about a minute.
- close() ends a watch blocked on a quiet stream at once: closing a socket does not wake a
  read() blocked on it in another thread, shutting it down does.
"""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, Any

import httpx2

from agent.kube.config import ApiConfig, TokenFile

if TYPE_CHECKING:
    from lightkube import Client

KEEPALIVE_IDLE_S = 30
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_PROBES = 3
SOCKET_OPTIONS = (
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S),
    (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S),
    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES),
)


class ApiTransport(httpx2.BaseTransport):
    def __init__(self, inner: httpx2.BaseTransport, token: TokenFile | None = None) -> None:
        self._inner = inner
        self._token = token
        self._lock = threading.Lock()
        self._watch_sockets: list[Any] = []
        self._closed = False

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        params = request.url.params
        watch = params.get("watch") == "true"
        if watch and "allowWatchBookmarks" not in params:
            request.url = request.url.copy_add_param("allowWatchBookmarks", "true")
        if self._token is not None:
            request.headers["Authorization"] = self._token.bearer()
        response = self._inner.handle_request(request)
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if watch and stream is not None else None
        if sock is not None:
            with self._lock:
                # Earlier watches of this client have ended (one watch at a time): keep the last few.
                self._watch_sockets = [*self._watch_sockets[-3:], sock]
                closed = self._closed
            if closed:
                _shut(sock)
        return response

    def close(self) -> None:
        with self._lock:
            sockets, self._watch_sockets, self._closed = self._watch_sockets, [], True
        for sock in sockets:
            _shut(sock)
        self._inner.close()


def _shut(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # closed already


def make_client(api: ApiConfig, request_timeout_s: float) -> Client:
    """A lightkube client for `api`; every request but a watch's read ends within request_timeout_s."""
    from lightkube import Client
    from lightkube.config.client_adapter import verify_cluster
    from lightkube.config.models import User

    config = api.config
    verify = verify_cluster(config.cluster, config.user or User(), config.abs_file, trust_env=False)
    inner = httpx2.HTTPTransport(verify=verify, socket_options=SOCKET_OPTIONS, trust_env=False)
    token = TokenFile(api.token_file) if api.token_file else None
    return Client(
        config=config,
        timeout=httpx2.Timeout(request_timeout_s),
        transport=ApiTransport(inner, token),
        trust_env=False,  # no proxy from the environment between a node and its API server
        lazy=True,
    )
