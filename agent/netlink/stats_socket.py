"""Fast link/qdisc statistics reader: one raw rtnetlink socket per pod namespace, kept open.

The socket is opened inside the namespace by a short-lived thread (run_in_netns) and stays
bound to it; no fork, and a missing namespace is never created.

Lifetime caveat, measured on Linux 6.18: an open netlink socket holds a reference on its
network namespace. After the pin is unmounted (`ip netns del`, CRI-O's sandbox removal) the
namespace, and any veth still inside it, stays alive and dumps keep succeeding for as long as
the socket is open. So a dump cannot tell that a pod is gone; instead every dump first checks
that the pin path still leads to the namespace the socket was opened in (one stat() call), and
if not, closes the socket (releasing the namespace) and raises NetnsGone. A vanished namespace
therefore always surfaces as NetnsGone, never as an empty result.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Callable, Iterable

from agent.model.snapshot import LinkStats, QdiscStats
from agent.netlink.errors import DumpInterrupted, NetlinkError
from agent.netlink.netns import NetnsGone, run_in_netns
from agent.netlink.stats_parse import (
    RTM_GETLINK,
    RTM_GETQDISC,
    RTM_NEWLINK,
    RTM_NEWQDISC,
    DumpChunk,
    RecordParser,
    dump_request,
    parse_dump_chunk,
    parse_link,
    parse_qdisc,
)

NETLINK_ROUTE = 0
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
DEFAULT_RCVBUF_BYTES = 1 << 20
# The kernel fills dump datagrams up to 32 KiB (or our largest recv size, whichever is
# smaller); 64 KiB never truncates, and MSG_TRUNC reports it if it ever did.
RECV_BUFFER_BYTES = 64 * 1024
DEFAULT_TIMEOUT_S = 5.0
MAX_DUMP_RETRIES = 3
"""Repeats of a dump flagged NLM_F_DUMP_INTR before giving up with DumpInterrupted."""

NetnsIdentity = tuple[int, int]  # (st_dev, st_ino) of the namespace file


def _open_raw_socket(rcvbuf_bytes: int, timeout_s: float) -> tuple[socket.socket, NetnsIdentity]:
    """Runs inside the target namespace (run_in_netns): the socket binds to it at creation."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        try:
            # FORCE ignores net.core.rmem_max (needs CAP_NET_ADMIN, which the agent has).
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf_bytes)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
        sock.settimeout(timeout_s)
        st = os.stat("/proc/thread-self/ns/net")
    except BaseException:
        sock.close()
        raise
    return sock, (st.st_dev, st.st_ino)


class StatsSocket:
    """Link and qdisc statistics of one network namespace over a persistent netlink socket.

    netns_path None reads the agent's own namespace. Construction raises NetnsGone when the
    path is not a live namespace. Safe to share between threads (one dump at a time).
    Every call on a closed socket, or after the namespace went away, raises NetnsGone.
    """

    def __init__(
        self,
        netns_path: str | None = None,
        *,
        rcvbuf_bytes: int = DEFAULT_RCVBUF_BYTES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._init_state(netns_path, rcvbuf_bytes, timeout_s)
        self._reopen()

    @classmethod
    def adopt(
        cls,
        sock: socket.socket,
        netns_path: str | None = None,
        netns_id: NetnsIdentity | None = None,
    ) -> StatsSocket:
        """Wrap an already-open netlink socket (or a test double with send/recv_into/close).

        Without netns_id the pin identity check is skipped.
        """
        self = cls.__new__(cls)
        self._init_state(netns_path, DEFAULT_RCVBUF_BYTES, DEFAULT_TIMEOUT_S)
        self._sock, self._netns_id = sock, netns_id
        return self

    def _init_state(self, netns_path: str | None, rcvbuf_bytes: int, timeout_s: float) -> None:
        self.netns_path = netns_path
        self._rcvbuf_bytes = rcvbuf_bytes
        self._timeout_s = timeout_s
        self._lock = threading.RLock()  # re-entered by close() on NetnsGone
        self._seq = 0
        self._closed = False
        self._buf = bytearray(RECV_BUFFER_BYTES)
        self._sock: socket.socket | None = None
        self._netns_id: NetnsIdentity | None = None

    # -- public API ----------------------------------------------------------------------------

    def links(self) -> list[LinkStats]:
        """Every interface of the namespace (loopback included) with its 64-bit counters."""
        return self._dump(RTM_GETLINK, RTM_NEWLINK, parse_link)

    def qdiscs(self) -> list[QdiscStats]:
        """Every visible qdisc of the namespace (root, child and ingress) with TCA_STATS2."""
        return self._dump(RTM_GETQDISC, RTM_NEWQDISC, parse_qdisc)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the socket, releasing the kernel's reference on the namespace. Idempotent.

        Waits for a dump in progress in another thread, so its fd is never closed under it.
        """
        with self._lock:
            self._closed = True
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> StatsSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"StatsSocket({self.netns_path or '<own netns>'}, {state})"

    # -- internals -----------------------------------------------------------------------------

    def _where(self) -> str:
        return self.netns_path or "the agent's own namespace"

    def _reopen(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._sock, self._netns_id = run_in_netns(
            self.netns_path, lambda: _open_raw_socket(self._rcvbuf_bytes, self._timeout_s)
        )

    def _gone(self, reason: str) -> NetnsGone:
        self.close()
        return NetnsGone(f"network namespace {self._where()} is gone: {reason}")

    def _check_alive(self) -> None:
        """Raise NetnsGone unless the pin still leads to the namespace the socket lives in."""
        if self.netns_path is None or self._netns_id is None:
            return
        try:
            st = os.stat(self.netns_path)
        except OSError as exc:
            raise self._gone(f"stat failed ({exc.strerror})") from None
        if (st.st_dev, st.st_ino) != self._netns_id:
            raise self._gone("the path no longer holds the namespace this socket was opened in")

    def _dump(self, request_type: int, record_type: int, parse_record: RecordParser) -> list:
        with self._lock:
            if self._closed:
                raise NetnsGone(f"stats socket for {self._where()} is closed")
            self._check_alive()
            if self._sock is None:
                self._reopen()  # the previous dump failed midway; start on a clean socket
            for _attempt in range(1 + MAX_DUMP_RETRIES):
                chunk = self._dump_once(request_type, record_type, parse_record)
                if not chunk.interrupted:
                    return chunk.records
            what = "link" if request_type == RTM_GETLINK else "qdisc"
            raise DumpInterrupted(
                f"{what} dump in {self._where()} was interrupted by concurrent changes "
                f"{1 + MAX_DUMP_RETRIES} times in a row"
            )

    def _dump_once(
        self, request_type: int, record_type: int, parse_record: RecordParser
    ) -> DumpChunk:
        sock = self._sock
        assert sock is not None
        self._seq = (self._seq % 0xFFFFFFFF) + 1
        chunk = DumpChunk()
        try:
            sock.send(dump_request(request_type, self._seq))
            while not chunk.done:
                length = sock.recv_into(self._buf, len(self._buf), socket.MSG_TRUNC)
                if length == 0:
                    raise NetlinkError(f"netlink socket of {self._where()} returned no data")
                parse_dump_chunk(self._buf, length, self._seq, record_type, parse_record, chunk)
        except OSError as exc:
            self._drop_socket()
            if self._closed:
                raise NetnsGone(f"stats socket for {self._where()} was closed") from None
            self._check_alive()
            raise NetlinkError(f"netlink I/O in {self._where()} failed: {exc}") from exc
        except BaseException:
            # A half-read dump leaves the kernel's dump running on this socket (the next
            # request would get EBUSY): start over on a fresh socket next time.
            self._drop_socket()
            raise
        return chunk

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


SocketFactory = Callable[[str | None], StatsSocket]


class StatsSocketPool:
    """One StatsSocket per namespace path, opened on first use and reused. Thread-safe.

    None is the agent's own namespace; retain() keeps it. A socket that closed itself because
    its namespace went away is replaced on the next get() (which raises NetnsGone if the path
    is still not a namespace).
    """

    def __init__(self, factory: SocketFactory = StatsSocket) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._sockets: dict[str | None, StatsSocket] = {}

    def get(self, netns_path: str | None) -> StatsSocket:
        with self._lock:
            sock = self._sockets.get(netns_path)
            if sock is not None and not sock.closed:
                return sock
            self._sockets.pop(netns_path, None)
            sock = self._factory(netns_path)
            self._sockets[netns_path] = sock
            return sock

    def forget(self, netns_path: str | None) -> None:
        """Close and drop the socket of one namespace (no-op when there is none)."""
        with self._lock:
            sock = self._sockets.pop(netns_path, None)
        if sock is not None:
            sock.close()

    def retain(self, paths: Iterable[str]) -> None:
        """Close the sockets of every namespace not in paths (the agent's own is kept).

        Call with the current pod set each cycle: an open socket keeps a deleted namespace
        alive, so stale ones must not linger.
        """
        keep = set(paths)
        with self._lock:
            stale = [p for p in self._sockets if p is not None and p not in keep]
            closing = [self._sockets.pop(p) for p in stale]
        for sock in closing:
            sock.close()

    def close_all(self) -> None:
        with self._lock:
            closing = list(self._sockets.values())
            self._sockets.clear()
        for sock in closing:
            sock.close()

    def paths(self) -> list[str | None]:
        """Namespaces with an open socket (None = the agent's own)."""
        with self._lock:
            return list(self._sockets)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sockets)

    def __enter__(self) -> StatsSocketPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_all()
