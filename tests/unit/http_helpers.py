"""Clients and fixtures' parts for the tests of the HTTP endpoint on loopback."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from pathlib import Path
from typing import Callable, TypeVar

from prometheus_client import CollectorRegistry

from agent.metrics.collector import PodbwCollector
from agent.model.health import HealthRecorder

T = TypeVar("T")


class Checks:
    """Mutable health/readiness answers the tests flip."""

    def __init__(self) -> None:
        self.healthy = (True, "")
        self.ready = (True, "")


def make_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    health = HealthRecorder()
    health.set_discovery_up("cri", True)
    registry.register(PodbwCollector(lambda: None, health.data, version="9.9.9"))
    return registry


def get(
    port: int, path: str, headers: dict[str, str] | None = None, host: str = "127.0.0.1",
    context: ssl.SSLContext | None = None, method: str = "GET",
) -> tuple[int, dict[str, str], bytes]:
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection(host, port, timeout=10)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=10, context=context)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def client_context(pki: Path, with_cert: bool, cert: str = "client") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if with_cert:
        context.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    return context


def raw_connect(port: int, timeout_s: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout_s)


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the server has closed this connection (EOF or reset), False if it is open,
    without waiting."""
    sock.setblocking(False)
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)
    return data == b"" or closed_by_peer(sock)


def wait_for(condition: Callable[[], T], timeout_s: float = 10.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.02)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
