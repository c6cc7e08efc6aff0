"""The HTTP endpoint's event loop: a fixed number of threads, whatever the clients do.

One selector thread accepts connections, runs TLS handshakes and reads request heads without
blocking, and writes responses; a small pool of workers, made at start, turns complete requests
into responses. A slow or idle client costs a slot in a bounded connection table, never a
thread, and loses it at its deadline: the whole request head (TLS handshake included) must
arrive within `header_timeout_s`, a kept-alive connection may idle `idle_timeout_s` between
requests, and a response must be read within `write_timeout_s`. When the table is full, a new
client evicts the oldest connection that is not being served instead of being refused.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable

from agent.service.http_request import (
    BadRequest,
    HttpDate,
    Response,
    error_response,
    head_end,
    parse_head,
    response_head,
)
from agent.service.http_stats import HttpStats
from agent.service.http_workers import Handler, WorkerPool

log = logging.getLogger(__name__)

TlsProvider = Callable[[], "ssl.SSLContext | None"]
"""Asked at every accept: the TLS context for the new connection, None for plain HTTP."""

SEND_CHUNK_BYTES = 256 * 1024
JOIN_BODY_BELOW_BYTES = 64 * 1024
"""Smaller bodies go out in one send with their head."""
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_PEER_GONE_BEFORE_ACCEPT = (errno.ECONNABORTED, errno.EPROTO, errno.EPERM)
_LISTENER = "listener"
_WAKE = "wake"


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int = 128
    """Connections held at once; far above what scrapers and probes of one node need."""
    header_timeout_s: float = 5.0
    """Time from accept (or from the first byte after an idle keep-alive) to the end of the
    request head, TLS handshake included."""
    idle_timeout_s: float = 120.0
    """Keep-alive between requests: longer than common scrape intervals, so scrapers reuse it."""
    write_timeout_s: float = 30.0
    """Time for the client to read a whole response."""
    max_head_bytes: int = 16 * 1024
    workers: int = 3
    """Threads that render responses; a request reaches them only once its head is complete."""
    accept_backoff_s: float = 0.1
    """Pause of accept() after it fails (out of file descriptors), instead of spinning."""
    accept_batch: int = 64
    """Accepts per wakeup, so reads of connections already open are not starved."""


class _Conn:
    __slots__ = ("sock", "peer", "handshaking", "inbuf", "out", "keep_alive", "queue", "events")

    def __init__(self, sock: socket.socket, peer: object) -> None:
        self.sock: socket.socket | None = sock
        self.peer = peer
        self.handshaking = False
        self.inbuf = bytearray()
        self.out: list[memoryview] | None = None
        self.keep_alive = False
        self.queue: _DeadlineQueue | None = None
        self.events = 0


class _DeadlineQueue:
    """Connections in one state, in the order they entered it. They all get the same timeout,
    so the first one is also the first to expire and the oldest to evict."""

    def __init__(self, timeout_s: float, drop_reason: str | None) -> None:
        self.timeout_s = timeout_s
        self.drop_reason = drop_reason
        """Counted when a connection expires here; None when expiry is routine."""
        self._items: OrderedDict[_Conn, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, conn: _Conn, now: float) -> None:
        if conn.queue is not None:
            conn.queue.remove(conn)
        self._items[conn] = now + self.timeout_s
        conn.queue = self

    def remove(self, conn: _Conn) -> None:
        self._items.pop(conn, None)
        conn.queue = None

    def oldest(self) -> _Conn | None:
        return next(iter(self._items), None)

    def first_deadline(self) -> float | None:
        for deadline in self._items.values():
            return deadline
        return None

    def expired(self, now: float) -> list[_Conn]:
        out = []
        for conn, deadline in self._items.items():
            if deadline > now:
                break
            out.append(conn)
        return out


class EventLoop:
    """Serves `listener` (bound, listening) until stop(); runs in the thread that calls run()."""

    def __init__(
        self,
        listener: socket.socket,
        handler: Handler,
        tls: TlsProvider,
        stats: HttpStats,
        limits: ServerLimits,
    ) -> None:
        self._listener = listener
        self._tls = tls
        self._stats = stats
        self._limits = limits
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = False
        self._done: deque[tuple[_Conn, Response]] = deque()
        self._pool: WorkerPool[_Conn] = WorkerPool(limits.workers, handler, self._on_done)
        self._conns: set[_Conn] = set()
        self._new = _DeadlineQueue(limits.header_timeout_s, "header_timeout")
        """Accepted, no complete request yet (handshaking or reading the first head)."""
        self._idle = _DeadlineQueue(limits.idle_timeout_s, None)
        """Served, waiting for the next request."""
        self._head = _DeadlineQueue(limits.header_timeout_s, "header_timeout")
        """Served, reading the next request's head."""
        self._writing = _DeadlineQueue(limits.write_timeout_s, "write_timeout")
        self._queues = (self._new, self._idle, self._head, self._writing)
        """Also the order of eviction; requests with a worker are in none and never evicted."""
        self._accept_paused_until: float | None = None
        self._accept_failing = False
        self._date = HttpDate()

    # ---- life cycle (other threads) -------------------------------------------------------

    def start_workers(self) -> None:
        self._pool.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # a wakeup is already pending, or the loop has ended

    def _on_done(self, conn: _Conn, response: Response) -> None:
        self._done.append((conn, response))
        self._wake()

    # ---- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        try:
            while not self._stopping:
                events = self._selector.select(self._timeout_s(time.monotonic()))
                now = time.monotonic()
                for key, _mask in events:
                    if key.data is _WAKE:
                        self._drain_wake()
                    else:
                        self._guarded(key.data, now)
                self._finish_done(now)
                self._expire(now)
                self._resume_accept(now)
                self._stats.set_open_connections(len(self._conns))
        finally:
            for conn in list(self._conns):
                self._close(conn)
            self._stats.set_open_connections(0)
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()
            self._pool.stop(timeout_s=0.5)

    def _guarded(self, what: _Conn | str, now: float) -> None:
        # A bug met by one client must cost that client its connection, never the endpoint.
        try:
            if what is _LISTENER:
                self._accept(now)
            elif isinstance(what, _Conn) and what.sock is not None:  # not closed earlier in this batch
                self._on_ready(what, now)
        except Exception:
            log.exception("HTTP: serving %s failed", "accept" if what is _LISTENER else getattr(what, "peer", what))
            if isinstance(what, _Conn):
                self._close(what)

    def _timeout_s(self, now: float) -> float | None:
        deadlines = [d for d in (q.first_deadline() for q in self._queues) if d is not None]
        if self._accept_paused_until is not None:
            deadlines.append(self._accept_paused_until)
        if not deadlines:
            return None  # nothing to time out: sleep until a client or stop() comes
        return max(0.0, min(deadlines) - now)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    # ---- accepting -------------------------------------------------------------------------

    def _accept(self, now: float) -> None:
        for _ in range(self._limits.accept_batch):
            try:
                sock, peer = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _PEER_GONE_BEFORE_ACCEPT:
                    continue
                self._accept_failed(exc, now)
                return
            if self._accept_failing:
                self._accept_failing = False
                log.info("HTTP: accepting connections again")
            self._admit(sock, peer, now)

    def _accept_failed(self, exc: OSError, now: float) -> None:
        self._stats.accept_error()
        if not self._accept_failing:
            self._accept_failing = True
            log.warning("HTTP: cannot accept connections (%s); retrying every %gs",
                        exc.strerror or exc, self._limits.accept_backoff_s)
        self._selector.unregister(self._listener)
        self._accept_paused_until = now + self._limits.accept_backoff_s
        if exc.errno in _OUT_OF_FDS:
            # Free a descriptor held by a connection that is not being served, so the next
            # accept (a probe, a scrape) can get one.
            victim = self._evictable()
            if victim is not None:
                self._drop(victim, "evicted")

    def _resume_accept(self, now: float) -> None:
        if self._accept_paused_until is not None and now >= self._accept_paused_until:
            self._accept_paused_until = None
            self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)

    def _admit(self, sock: socket.socket, peer: object, now: float) -> None:
        if len(self._conns) >= self._limits.max_connections:
            victim = self._evictable()
            if victim is None:
                self._stats.dropped("refused", peer)
                sock.close()
                return
            self._drop(victim, "evicted")
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock, peer)
        try:
            tls = self._tls()
            if tls is not None:
                conn.sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                conn.handshaking = True
        except (OSError, ValueError) as exc:
            log.debug("HTTP: cannot set up TLS for %s: %s", peer, exc)
            sock.close()
            return
        self._conns.add(conn)
        self._new.add(conn, now)
        if conn.handshaking:
            self._handshake(conn, now)
        else:
            self._interest(conn, selectors.EVENT_READ)

    def _evictable(self) -> _Conn | None:
        for queue in self._queues:
            conn = queue.oldest()
            if conn is not None:
                return conn
        return None

    # ---- per connection --------------------------------------------------------------------

    def _on_ready(self, conn: _Conn, now: float) -> None:
        if conn.handshaking:
            self._handshake(conn, now)
        elif conn.out is not None:
            self._write(conn, now)
        else:
            self._read(conn, now)

    def _handshake(self, conn: _Conn, now: float) -> None:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._interest(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._interest(conn, selectors.EVENT_WRITE)
            return
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError):
            self._close(conn)  # the client hung up (a TCP probe does, at once): not a failure
            return
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            log.debug("HTTP: TLS handshake with %s failed: %s", conn.peer, exc)
            self._drop(conn, "tls_handshake")
            return
        conn.handshaking = False
        self._interest(conn, selectors.EVENT_READ)
        self._read(conn, now)  # the request may have come with the handshake's last flight

    def _read(self, conn: _Conn, now: float) -> None:
        sock = conn.sock
        assert sock is not None
        # Never more than one byte past the head limit: memory is bounded by the table.
        want = max(1, self._limits.max_head_bytes + 1 - len(conn.inbuf))
        try:
            data = sock.recv(want)
            while isinstance(sock, ssl.SSLSocket) and sock.pending() and len(data) < want:
                data += sock.recv(min(sock.pending(), want - len(data)))
        except (BlockingIOError, ssl.SSLWantReadError):
            return
        except ssl.SSLWantWriteError:
            self._interest(conn, selectors.EVENT_WRITE)
            return
        except (OSError, ValueError):
            self._close(conn)  # reset, or garbage on a TLS connection
            return
        if not data:
            self._close(conn)  # the client hung up
            return
        conn.inbuf += data
        self._interest(conn, selectors.EVENT_READ)
        self._take_request(conn, now)

    def _take_request(self, conn: _Conn, now: float) -> None:
        """Hand the head in conn.inbuf to a worker once it is complete."""
        buf = conn.inbuf
        while buf[:2] == b"\r\n":  # blank lines before a request are allowed (RFC 9112 2.2)
            del buf[:2]
        end = head_end(buf)
        if end < 0:
            if len(buf) > self._limits.max_head_bytes:
                self._respond(conn, error_response(431, "request head too large", close=True), now)
            elif buf and conn.queue is self._idle:
                self._head.add(conn, now)  # the next request has begun: its head deadline runs
            return
        if end > self._limits.max_head_bytes:
            self._respond(conn, error_response(431, "request head too large", close=True), now)
            return
        head = bytes(buf[:end])
        del buf[:end]
        try:
            request = parse_head(head)
        except BadRequest as exc:
            log.debug("HTTP: bad request from %s: %s", conn.peer, exc)
            self._respond(conn, error_response(exc.status, str(exc), close=True), now)
            return
        if conn.queue is not None:
            conn.queue.remove(conn)
        self._interest(conn, 0)
        conn.keep_alive = request.keep_alive
        self._pool.submit(conn, request)

    def _finish_done(self, now: float) -> None:
        while self._done:
            conn, response = self._done.popleft()
            if conn.sock is not None:  # not closed while its request was being served
                self._respond(conn, response, now)

    def _respond(self, conn: _Conn, response: Response, now: float) -> None:
        self._stats.responded(response.status)
        if not conn.keep_alive:
            response.close = True
        head = response_head(response, self._date.now())
        body = response.body if response.send_body else b""
        if len(body) < JOIN_BODY_BELOW_BYTES:
            conn.out = [memoryview(head + body)]
        else:
            conn.out = [memoryview(head), memoryview(body)]
        conn.keep_alive = not response.close
        self._writing.add(conn, now)
        self._write(conn, now)

    def _write(self, conn: _Conn, now: float) -> None:
        sock, out = conn.sock, conn.out
        assert sock is not None and out is not None
        while out:
            view = out[0]
            try:
                sent = sock.send(view[:SEND_CHUNK_BYTES])
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._interest(conn, selectors.EVENT_WRITE)
                return
            except ssl.SSLWantReadError:
                self._interest(conn, selectors.EVENT_READ)
                return
            except (OSError, ValueError):
                self._close(conn)  # the client hung up mid-response: routine
                return
            if sent == len(view):
                out.pop(0)
            else:
                out[0] = view[sent:]
        conn.out = None
        if not conn.keep_alive:
            self._close(conn)
            return
        self._idle.add(conn, now)
        self._interest(conn, selectors.EVENT_READ)
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            self._read(conn, now)  # bytes OpenSSL already holds raise no event
        elif conn.inbuf:
            self._take_request(conn, now)  # a pipelined request

    def _interest(self, conn: _Conn, events: int) -> None:
        if events == conn.events:
            return
        if events == 0:
            self._selector.unregister(conn.sock)  # type: ignore[arg-type]
        elif conn.events == 0:
            self._selector.register(conn.sock, events, conn)  # type: ignore[arg-type]
        else:
            self._selector.modify(conn.sock, events, conn)  # type: ignore[arg-type]
        conn.events = events

    def _expire(self, now: float) -> None:
        for queue in self._queues:
            for conn in queue.expired(now):
                if queue.drop_reason is None:
                    self._close(conn)
                else:
                    self._drop(conn, queue.drop_reason)

    def _drop(self, conn: _Conn, reason: str) -> None:
        self._stats.dropped(reason, conn.peer)
        self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if conn.queue is not None:
            conn.queue.remove(conn)
        if conn.sock is None:
            return
        if conn.events:
            self._selector.unregister(conn.sock)
            conn.events = 0
        try:
            conn.sock.close()
        except OSError:
            pass
        conn.sock = None
        conn.out = None
        self._conns.discard(conn)


class ThreadedEventLoop:
    """An EventLoop in its own thread: start() returns at once, stop() ends it within 1 s."""

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=loop.run, name="podbw-http", daemon=True)

    def start(self) -> None:
        self._loop.start_workers()
        self._thread.start()

    def stop(self, timeout_s: float = 1.0) -> None:
        self._loop.stop()
        self._thread.join(timeout_s)
