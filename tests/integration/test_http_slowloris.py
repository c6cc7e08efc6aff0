"""Slowloris on the metrics port (issue 17, item 5): the agent process, in a pids cgroup of
1024 like a pod's, under 1500 connections that send their request heads a byte at a time and
come back when they are cut. /healthz must answer within 1 s throughout, /metrics must work,
the sampler must keep sampling, and the agent's thread count must not move."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import secrets
import socket
import threading
import time
import urllib.request
from typing import Iterator

import pytest

from agent.lab.spec import PodSpec
from tests.integration.agent_process import AgentProcess, parse_metrics

pytestmark = pytest.mark.root

PIDS_ROOT = "/sys/fs/cgroup/pids"
PIDS_MAX = 1024
SLOW_CONNECTIONS = 1500
ATTACK_S = 12.0
"""Longer than the 5 s header deadline, so the agent cuts slow heads as well as evicting them."""
TICK_S = 0.5
"""How often each attacking connection sends one more byte (and a cut one reconnects)."""
PROBE_INTERVAL_S = 0.25
HEALTHZ_WITHIN_S = 1.0
NOFILE = 8192


@pytest.fixture
def pids_cgroup() -> Iterator[str]:
    """A cgroup v1 pids group with pids.max = 1024, removed afterwards."""
    if not os.path.exists(os.path.join(PIDS_ROOT, "cgroup.procs")):
        pytest.skip(f"no cgroup v1 pids controller at {PIDS_ROOT}")
    path = os.path.join(PIDS_ROOT, f"podbw-test-{secrets.token_hex(4)}")
    os.mkdir(path)
    try:
        with open(os.path.join(path, "pids.max"), "w") as f:
            f.write(str(PIDS_MAX))
        yield path
    finally:
        # Whatever still runs in it (the agent, if its fixture has not stopped it) goes back.
        with contextlib.suppress(OSError), open(os.path.join(path, "cgroup.procs")) as f:
            for pid in f.read().split():
                with contextlib.suppress(OSError), open(os.path.join(PIDS_ROOT, "cgroup.procs"), "w") as root:
                    root.write(pid)
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                time.sleep(0.1)


@pytest.fixture
def many_files() -> Iterator[None]:
    """Enough descriptors in this process for 1500 sockets (a container usually has more)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < NOFILE:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, max(hard, NOFILE)))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Slowloris:
    """`count` connections to port, each sending a request head one byte per tick, never
    finishing it; a connection the server cuts is opened again at the next tick."""

    HEAD = b"GET /metrics HTTP/1.1\r\nHost: podbw\r\n" + b"X-Slow: " + b"a" * 4000

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.reconnects = 0
        self._socks: dict[socket.socket, int] = {}  # -> bytes of HEAD sent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)

    def __enter__(self) -> Slowloris:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self._socks:
            sock.close()

    def open_now(self) -> int:
        return len(self._socks)

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.port))
        self._socks[sock] = 0

    def _run(self) -> None:
        for _ in range(self.count):
            self._connect()
        while not self._stop.wait(TICK_S):
            for sock, sent in list(self._socks.items()):
                if self._cut(sock):
                    del self._socks[sock]
                    sock.close()
                    self._connect()
                    self.reconnects += 1
                    continue
                with contextlib.suppress(OSError):
                    self._socks[sock] = sent + sock.send(self.HEAD[sent:sent + 1])

    @staticmethod
    def _cut(sock: socket.socket) -> bool:
        try:
            return sock.recv(4096) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True


def status_field(pid: int, field: str) -> int:
    """A number from /proc/<pid>/status: "Threads", "VmRSS" (KiB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field}: line for {pid}")


def threads_of(pid: int) -> int:
    return status_field(pid, "Threads")


def timed_get(agent: AgentProcess, path: str, timeout_s: float) -> tuple[int, float, bytes]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(agent.base_url + path, timeout=timeout_s) as resp:
            body = resp.read()
            return resp.status, time.monotonic() - started, body
    except OSError as exc:  # refused, reset, timed out: what the old server did under attack
        return -1, time.monotonic() - started, repr(exc).encode()


def test_healthz_and_metrics_hold_under_slowloris_in_a_pids_cgroup(
    pids_cgroup, many_files, lab_factory, agent_factory
) -> None:
    lab = lab_factory()
    lab.up([PodSpec("web", "shop", {"kubernetes.io/ingress-bandwidth": "20M"})])
    agent = agent_factory(lab, ["--sample-interval", "0.5"])
    resource.prlimit(agent.pid, resource.RLIMIT_NOFILE, (NOFILE, max(NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
    with open(os.path.join(pids_cgroup, "cgroup.procs"), "w") as f:
        f.write(str(agent.pid))  # moves every thread of the agent into the group
    agent.wait_for_sample("podbw_pods", predicate=lambda v: v == 1)
    time.sleep(1.0)
    idle_threads = threads_of(agent.pid)
    idle_rss_kib = status_field(agent.pid, "VmRSS")
    samples_before = agent.sample("podbw_sample_duration_seconds_count") or 0

    probes: list[tuple[int, float]] = []
    scrapes: list[int] = []
    threads: list[int] = []
    with Slowloris(agent.port, SLOW_CONNECTIONS) as attack:
        deadline = time.monotonic() + ATTACK_S
        while time.monotonic() < deadline:
            status, took_s, _ = timed_get(agent, "/healthz", timeout_s=5.0)
            probes.append((status, took_s))
            threads.append(threads_of(agent.pid))
            if len(probes) % 8 == 0:
                scrapes.append(timed_get(agent, "/metrics", timeout_s=5.0)[0])
            time.sleep(PROBE_INTERVAL_S)
        attack_rss_kib = status_field(agent.pid, "VmRSS")
        held = attack.open_now()
        reconnects = attack.reconnects
        final_status, _, final_body = timed_get(agent, "/metrics", timeout_s=5.0)

    worst_s = max(took for _, took in probes)
    print(f"\nthreads idle {idle_threads}, under attack max {max(threads)};"
          f" /healthz worst {worst_s * 1000:.0f} ms over {len(probes)} probes;"
          f" attacker held {held} sockets, reconnected {reconnects} times;"
          f" RSS idle {idle_rss_kib} KiB, under attack {attack_rss_kib} KiB")
    assert [s for s, _ in probes if s != 200] == [], probes
    assert worst_s < HEALTHZ_WITHIN_S, sorted(took for _, took in probes)[-5:]
    assert scrapes and all(s == 200 for s in scrapes), scrapes
    assert max(threads) <= idle_threads + 2, (idle_threads, threads)
    assert final_status == 200, final_body
    final = parse_metrics(final_body.decode())
    # The attack was real: the table was full, and newcomers evicted slow connections.
    evicted = final[("podbw_http_connections_dropped_total", frozenset({("reason", "evicted")}))]
    assert evicted > 0
    assert final[("podbw_http_connections", frozenset())] <= 128
    # Sampling went on: about two passes a second, not stalled by the attack.
    assert final[("podbw_sample_duration_seconds_count", frozenset())] >= samples_before + ATTACK_S
    assert agent.running
    log = agent.log_text()
    assert "can't start new thread" not in log and "Traceback" not in log, agent.log_tail(40)
