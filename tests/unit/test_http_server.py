"""The HTTP event loop against real sockets on loopback: deadlines, the bounded connection
table and its eviction, keep-alive, pipelining, fixed threads, TLS handshakes in the loop, and
running out of file descriptors (issue 17, item 5)."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from agent.service.http import MetricsServer
from agent.service.http_server import ServerLimits
from tests.unit.http_helpers import client_context, closed_by_peer, get, raw_connect, wait_for

PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: podbw\r\n"


def stat(server: MetricsServer, name: str, **labels: str) -> float:
    """A sample of the server's own families (read from them alone: other collectors may block)."""
    for family in server.stats.collect():
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def open_connections(server: MetricsServer) -> float:
    return stat(server, "podbw_http_connections")


def dropped(server: MetricsServer, reason: str) -> float:
    return stat(server, "podbw_http_connections_dropped_total", reason=reason)


def slow_clients(server: MetricsServer, count: int) -> list[socket.socket]:
    """`count` connections that sent part of a request head, once the server holds them all."""
    socks = []
    for _ in range(count):
        sock = raw_connect(server.port)
        sock.sendall(PARTIAL_HEAD)
        socks.append(sock)
    wait_for(lambda: open_connections(server) >= count, what=f"{count} connections in the table")
    return socks


@pytest.fixture
def sockets():
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from a blocking socket, reading no byte
    past it: pipelined responses may arrive in one segment."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        assert chunk, f"closed before a response: {head!r}"
        head += chunk
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        assert chunk, f"closed within a response body: {head + body!r}"
        body += chunk
    return head + body


def test_a_slow_request_head_is_cut_at_the_header_deadline(start_server, sockets) -> None:
    server = start_server(limits=ServerLimits(header_timeout_s=0.3))
    sock = raw_connect(server.port)
    sockets.append(sock)
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")

    def cut() -> bool:
        with contextlib.suppress(OSError):
            sock.send(b"X")  # a byte now and then, as slowloris does: it does not extend the deadline
        return closed_by_peer(sock)

    wait_for(cut, what="the slow connection to be closed")
    assert dropped(server, "header_timeout") == 1.0
    assert get(server.port, "/healthz")[0] == 200


def test_a_full_table_evicts_its_oldest_incomplete_request_for_a_newcomer(start_server, sockets) -> None:
    server = start_server(limits=ServerLimits(max_connections=4, header_timeout_s=60))
    sockets += slow_clients(server, 4)
    status, _, body = get(server.port, "/healthz")
    assert (status, body) == (200, b"ok\n")
    assert closed_by_peer(sockets[0]), "the oldest slow connection makes room"
    assert not any(closed_by_peer(s) for s in sockets[1:])
    assert dropped(server, "evicted") == 1.0


def test_requests_being_served_are_never_evicted(start_server, sockets) -> None:
    gate = threading.Event()

    class Slow:
        def collect(self):
            gate.wait(10)
            yield GaugeMetricFamily("podbw_test_slow", "test", value=1)

    registry = CollectorRegistry()
    registry.register(Slow())
    server = start_server(registry=registry, limits=ServerLimits(max_connections=1))
    busy = raw_connect(server.port)
    sockets.append(busy)
    busy.sendall(b"GET /metrics HTTP/1.1\r\nHost: podbw\r\n\r\n")
    wait_for(lambda: open_connections(server) == 1, what="the scrape in the table")
    newcomer = raw_connect(server.port)
    sockets.append(newcomer)
    wait_for(lambda: dropped(server, "refused") == 1.0, what="the newcomer refused")
    assert closed_by_peer(newcomer)
    gate.set()
    assert read_response(busy).startswith(b"HTTP/1.1 200 OK\r\n")


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(start_server, sockets) -> None:
    server = start_server(limits=ServerLimits(idle_timeout_s=0.3))
    sock = raw_connect(server.port)
    sockets.append(sock)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: podbw\r\n\r\n")
    assert read_response(sock).endswith(b"\r\n\r\nok\n")
    wait_for(lambda: closed_by_peer(sock), what="the idle connection to be closed")
    assert sum(dropped(server, r) for r in ("header_timeout", "evicted", "refused", "write_timeout")) == 0


def test_pipelined_requests_are_answered_in_order(start_server, sockets) -> None:
    server = start_server()
    sock = raw_connect(server.port)
    sockets.append(sock)
    sock.sendall(
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n"
        b"HEAD /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    first, second = read_response(sock), read_response(sock)
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b"ok\n")
    assert second.startswith(b"HTTP/1.1 404 ")
    third = b""
    while chunk := sock.recv(65536):
        third += chunk
    assert third.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in third
    assert third.endswith(b"\r\n\r\n"), "HEAD: no body"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"garbage\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", b"400"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"505"),
        (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", b"431"),
        (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20000, b"431"),
    ],
)
def test_bad_requests_get_an_error_and_a_close(start_server, sockets, request_bytes: bytes, status: bytes) -> None:
    server = start_server()
    sock = raw_connect(server.port)
    sockets.append(sock)
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        sock.sendall(request_bytes)
    answer = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:100]
    assert b"Connection: close" in answer
    assert get(server.port, "/healthz")[0] == 200


def test_http_threads_are_fixed_however_many_clients_connect(start_server, sockets) -> None:
    before = threading.active_count()
    server = start_server()
    started = threading.active_count()
    assert started - before == 1 + ServerLimits().workers  # the loop and its workers
    sockets += slow_clients(server, 60)
    for _ in range(20):
        assert get(server.port, "/metrics")[0] == 200
    assert threading.active_count() == started


def test_stop_ends_every_thread_and_connection(checks, sockets) -> None:
    from tests.unit.http_helpers import make_registry

    server = MetricsServer("127.0.0.1:0", make_registry(), lambda: checks.healthy, lambda: checks.ready)
    server.start()
    try:
        sockets += slow_clients(server, 20)
    finally:
        server.stop()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("podbw-http")]
    assert all(closed_by_peer(s) for s in sockets)


def test_clients_hanging_up_mid_response_leave_no_trace(start_server, capfd: pytest.CaptureFixture) -> None:
    server = start_server()
    for _ in range(20):
        sock = raw_connect(server.port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.close()  # with linger 0: a reset
    assert get(server.port, "/healthz")[0] == 200
    assert capfd.readouterr().err == ""


# --- TLS in the loop -------------------------------------------------------------------------


def test_stalled_tls_handshakes_cost_no_thread_and_are_cut(start_server, sockets, pki: Path) -> None:
    server = start_server(
        certfile=str(pki / "server.crt"), keyfile=str(pki / "server.key"),
        limits=ServerLimits(header_timeout_s=0.5),
    )
    threads = threading.active_count()
    for _ in range(10):  # connect and say nothing: the handshake never starts
        sockets.append(raw_connect(server.port))
    half = raw_connect(server.port)  # start one and stall it half way
    sockets.append(half)
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    status, _, body = get(server.port, "/healthz", context=client_context(pki, False))
    assert (status, body) == (200, b"ok\n")
    assert threading.active_count() == threads
    wait_for(lambda: all(closed_by_peer(s) for s in sockets), what="the stalled handshakes to be cut")
    assert dropped(server, "header_timeout") == 11.0


def test_plain_http_on_the_tls_port_is_dropped(start_server, sockets, pki: Path) -> None:
    server = start_server(certfile=str(pki / "server.crt"), keyfile=str(pki / "server.key"))
    sock = raw_connect(server.port)
    sockets.append(sock)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    wait_for(lambda: closed_by_peer(sock), what="the plain client to be dropped")
    assert dropped(server, "tls_handshake") == 1.0
    ssl_sock = client_context(pki, False).wrap_socket(raw_connect(server.port), server_hostname="127.0.0.1")
    sockets.append(ssl_sock)
    ssl_sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    assert read_response(ssl_sock).endswith(b"ok\n")


# --- out of file descriptors ----------------------------------------------------------------


@contextlib.contextmanager
def out_of_file_descriptors():
    """Until the block ends, this process cannot open another file descriptor (EMFILE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 32, hard))
    fillers = []
    try:
        while True:
            try:
                fillers.append(os.dup(0))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_accept_backs_off_while_out_of_file_descriptors_and_recovers(start_server, sockets) -> None:
    backoff_s = 0.05
    server = start_server(limits=ServerLimits(accept_backoff_s=backoff_s))
    clients = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(3)]
    sockets += clients
    with out_of_file_descriptors():
        started = time.monotonic()
        for client in clients:  # connect() needs no new descriptor on this side; accept() does
            client.settimeout(10)
            client.connect(("127.0.0.1", server.port))
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_for(lambda: stat(server, "podbw_http_accept_errors_total") >= 2, what="accept to fail twice")
        time.sleep(0.5)
        failed = stat(server, "podbw_http_accept_errors_total")
        elapsed_s = time.monotonic() - started
    # Backing off, not spinning: at most about one failed accept per back-off period.
    assert failed <= elapsed_s / backoff_s + 5, (failed, elapsed_s)
    for client in clients:
        assert read_response(client).endswith(b"ok\n")
    assert get(server.port, "/healthz")[0] == 200


def test_a_tcp_probe_on_the_tls_port_is_no_failure(start_server, pki: Path) -> None:
    server = start_server(certfile=str(pki / "server.crt"), keyfile=str(pki / "server.key"))
    for _ in range(3):
        raw_connect(server.port).close()  # what a kubelet tcpSocket probe does
    status, _, _ = get(server.port, "/healthz", context=client_context(pki, False))
    assert status == 200
    wait_for(lambda: open_connections(server) <= 1, what="the probes' connections to close")
    assert dropped(server, "tls_handshake") == 0.0


def test_pipelined_request_held_inside_openssl_is_not_forgotten(start_server, sockets, pki: Path) -> None:
    # The server reads at most up to the head limit; the rest of a TLS record stays decrypted in
    # OpenSSL, where no socket event announces it.
    server = start_server(certfile=str(pki / "server.crt"), keyfile=str(pki / "server.key"))
    tls = client_context(pki, False).wrap_socket(raw_connect(server.port), server_hostname="127.0.0.1")
    sockets.append(tls)
    tls.sendall(b"GET /healthz HTTP/1.1\r\n")
    record = bytearray(b"Host: a\r\n\r\n" + b"GET /readyz HTTP/1.1\r\nHost: a\r\nX-Pad: ")
    record += b"p" * (16384 - len(record) - 4) + b"\r\n\r\n"
    assert len(record) == 16384 == ServerLimits().max_head_bytes  # one full TLS record
    tls.sendall(record)
    assert read_response(tls).endswith(b"\r\n\r\nok\n")
    assert read_response(tls).endswith(b"\r\n\r\nok\n")
