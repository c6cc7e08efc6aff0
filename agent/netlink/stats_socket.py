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

Cost (the sampler reads every pod namespace every second; see bench/collect.py):
- Counters come from RTM_GETSTATS asking for IFLA_STATS_LINK_64 only, ~200 bytes per link,
  instead of a full RTM_GETLINK message (~40 attributes) per link. Names, peers and kinds come
  from a link dump without statistics, repeated only when an interface appears or the cached
  one is older than LINK_INFO_MAX_AGE_S.
- Records whose bytes did not change since the previous call (idle links, noqueue qdiscs)
  are returned as the same immutable objects instead of being decoded again.
- Socket I/O and the pin check hold the GIL (agent.netlink.held_gil): with many scrapers
  rendering /metrics, each GIL hand-back would otherwise cost the sampler up to 5 ms.
- One receive buffer per thread, not per socket (64 KiB x hundreds of namespaces).
"""

from __future__ import annotations

import errno
import os
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable

from agent.model.snapshot import LinkStats, QdiscStats
from agent.netlink import held_gil
from agent.netlink.errors import DumpInterrupted, NetlinkError
from agent.netlink.netns import NetnsGone, run_in_netns
from agent.netlink.stats_parse import (
    RTM_GETLINK,
    RTM_GETQDISC,
    RTM_NEWLINK,
    RTM_NEWQDISC,
    RTM_NEWSTATS,
    DumpChunk,
    dump_request,
    link_info_request,
    parse_link,
    parse_link_counters,
    parse_qdisc,
    split_datagram,
    stats_request,
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
LINK_INFO_MAX_AGE_S = 60.0
"""Names, peers and kinds are re-read at least this often (jittered per socket by +-50 %, so
that hundreds of sockets opened together do not all re-read in the same pass)."""
# Answers of a kernel that does not know RTM_GETSTATS (before 4.7) or this filter.
_STATS_UNSUPPORTED = frozenset((errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS))

NetnsIdentity = tuple[int, int]  # (st_dev, st_ino) of the namespace file
RequestBuilder = Callable[[int], bytes]


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a few module constants
class _Dump:
    request: RequestBuilder
    record_type: int
    what: str


_U32 = struct.Struct("=I")
_NLMSG_SEQ_OFFSET = 8
_templates: dict[tuple[_Dump, ...], tuple[bytes, tuple[int, ...]]] = {}


def _request_template(dumps: tuple[_Dump, ...]) -> tuple[bytes, tuple[int, ...]]:
    """The requests of dumps back to back with sequence number 0, and where each one's
    sequence number goes (built once per combination)."""
    found = _templates.get(dumps)
    if found is None:
        parts = [dump.request(0) for dump in dumps]
        offsets, at = [], 0
        for part in parts:
            offsets.append(at + _NLMSG_SEQ_OFFSET)
            at += len(part)
        found = _templates[dumps] = (b"".join(parts), tuple(offsets))
    return found


_STATS = _Dump(stats_request, RTM_NEWSTATS, "link statistics")
_FULL_LINKS = _Dump(partial(dump_request, RTM_GETLINK), RTM_NEWLINK, "link")
_LINK_INFO = _Dump(link_info_request, RTM_NEWLINK, "link")
_QDISCS = _Dump(partial(dump_request, RTM_GETQDISC), RTM_NEWQDISC, "qdisc")

RECV_SLOTS = 8
"""Datagrams one recvmmsg() can take: a pod's two dumps arrive in 3, the host's in a few more."""

_thread_buffers = threading.local()


def _recv_batch() -> held_gil.RecvBatch:
    """This thread's receive buffers (one set per thread, not per socket: hundreds of sockets)."""
    batch = getattr(_thread_buffers, "batch", None)
    if batch is None:
        batch = _thread_buffers.batch = held_gil.RecvBatch(RECV_SLOTS, RECV_BUFFER_BYTES)
    return batch


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
        self._init_state(netns_path, rcvbuf_bytes, timeout_s, real_socket=True)
        self._reopen()

    @classmethod
    def adopt(
        cls,
        sock: socket.socket,
        netns_path: str | None = None,
        netns_id: NetnsIdentity | None = None,
        *,
        stats_dump: bool | None = None,
    ) -> StatsSocket:
        """Wrap an already-open netlink socket (or a test double with send/recv_into/close).

        Without netns_id the pin identity check is skipped. stats_dump chooses how links()
        reads counters: RTM_GETSTATS plus cached names (True), or full RTM_GETLINK dumps
        (False); by default the former for a real socket, the latter for a test double.
        """
        self = cls.__new__(cls)
        real = isinstance(sock, socket.socket)
        self._init_state(
            netns_path, DEFAULT_RCVBUF_BYTES, DEFAULT_TIMEOUT_S, real_socket=real,
            stats_dump=real if stats_dump is None else stats_dump,
        )
        self._sock, self._netns_id = sock, netns_id
        return self

    def _init_state(
        self,
        netns_path: str | None,
        rcvbuf_bytes: int,
        timeout_s: float,
        real_socket: bool,
        stats_dump: bool = True,
    ) -> None:
        self.netns_path = netns_path
        self._netns_path_bytes = os.fsencode(netns_path) if netns_path is not None else b""
        self._rcvbuf_bytes = rcvbuf_bytes
        self._timeout_s = timeout_s
        self._lock = threading.RLock()  # re-entered by close() on NetnsGone
        self._seq = 0
        self._closed = False
        self._sock: socket.socket | None = None
        self._netns_id: NetnsIdentity | None = None
        self._held_gil_io = real_socket and held_gil.AVAILABLE
        self._stats_dump = stats_dump
        """links() counters from RTM_GETSTATS (cleared when the kernel refuses it)."""
        self._link_info: dict[int, LinkStats] = {}
        """ifindex -> the link's name, peer and kind (counters zero), from link_info_request."""
        self._link_info_due_s = 0.0
        self._link_memo: dict[bytes, LinkStats] = {}
        self._qdisc_memo: dict[bytes, QdiscStats] = {}

    # -- public API ----------------------------------------------------------------------------

    def links(self) -> list[LinkStats]:
        """Every interface of the namespace (loopback included) with its 64-bit counters.

        Counters are read on every call. An interface renamed without being re-created shows
        its old name for up to LINK_INFO_MAX_AGE_S (1.5x at most).
        """
        with self._lock:
            if self._stats_dump:
                try:
                    (payloads,) = self._exchange((_STATS,))
                except NetlinkError as exc:
                    self._check_stats_supported(exc)
                else:
                    return self._links_from_counters(payloads)
            (payloads,) = self._exchange((_FULL_LINKS,))
            return self._decoded(payloads, parse_link, "_link_memo")

    def qdiscs(self) -> list[QdiscStats]:
        """Every visible qdisc of the namespace (root, child and ingress) with TCA_STATS2."""
        with self._lock:
            (payloads,) = self._exchange((_QDISCS,))
            return self._decoded(payloads, parse_qdisc, "_qdisc_memo")

    def links_and_qdiscs(self) -> tuple[list[LinkStats], list[QdiscStats]]:
        """links() and qdiscs() in one round trip: both requests go out in one send().

        The kernel runs the second dump right away when the first one finished within the
        send (as a pod's few links do); otherwise it refuses it (EBUSY) and it is sent again
        after the first completes.
        """
        with self._lock:
            if not self._stats_dump:
                return self.links(), self.qdiscs()
            try:
                stats, qdiscs = self._exchange((_STATS, _QDISCS))
            except NetlinkError as exc:
                self._check_stats_supported(exc)
                return self.links(), self.qdiscs()
            return (
                self._links_from_counters(stats),
                self._decoded(qdiscs, parse_qdisc, "_qdisc_memo"),
            )

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
            self._link_memo, self._qdisc_memo, self._link_info = {}, {}, {}
        if sock is not None:
            sock.close()

    def __enter__(self) -> StatsSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"StatsSocket({self.netns_path or '<own netns>'}, {state})"

    # -- decoding with reuse -------------------------------------------------------------------

    def _check_stats_supported(self, exc: NetlinkError) -> None:
        """Re-raise exc unless it says the kernel does not do RTM_GETSTATS; if it does say so,
        switch this socket to full link dumps for good."""
        if isinstance(exc, DumpInterrupted) or exc.errno not in _STATS_UNSUPPORTED:
            raise exc
        self._stats_dump = False
        self._link_memo = {}

    def _decoded(self, payloads: list[bytes], parse: Callable, memo_attr: str) -> list:
        """Decode payloads, reusing the previous call's object for identical bytes."""
        memo = getattr(self, memo_attr)
        fresh = {}
        out = []
        for raw in payloads:
            record = memo.get(raw)
            if record is None:
                record = parse(raw)
            fresh[raw] = record
            out.append(record)
        setattr(self, memo_attr, fresh)
        return out

    def _links_from_counters(self, payloads: list[bytes]) -> list[LinkStats]:
        """LinkStats from RTM_NEWSTATS payloads plus the cached names, peers and kinds."""
        info = self._link_info
        memo = self._link_memo
        if time.monotonic() >= self._link_info_due_s:
            info = self._refresh_link_info()
            memo = {}  # names may have changed: rebuild every record once
        fresh: dict[bytes, LinkStats] = {}
        out = []
        refreshed = False
        for raw in payloads:
            link = memo.get(raw)
            if link is None:
                ifindex, *counters = parse_link_counters(raw)
                meta = info.get(ifindex)
                if meta is None and not refreshed:  # a new interface: learn its name now
                    info = self._refresh_link_info()
                    refreshed = True
                    meta = info.get(ifindex)
                if meta is None:
                    continue  # deleted between the two dumps
                # (tuple.__new__: LinkStats' own __new__ costs twice as much, per link per pass.)
                link = tuple.__new__(
                    LinkStats, (ifindex, meta.name, meta.link_ifindex, meta.link_netnsid, meta.kind, *counters)
                )
            fresh[raw] = link
            out.append(link)
        self._link_memo = fresh
        return out

    def _refresh_link_info(self) -> dict[int, LinkStats]:
        (payloads,) = self._exchange((_LINK_INFO,))
        self._link_info = {link.ifindex: link for link in map(parse_link, payloads)}
        self._link_info_due_s = time.monotonic() + LINK_INFO_MAX_AGE_S * (0.5 + random.random())
        return self._link_info

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
            found = held_gil.identity(self._netns_path_bytes)
        except OSError as exc:
            raise self._gone(f"stat failed ({exc.strerror})") from None
        if found != self._netns_id:
            raise self._gone("the path no longer holds the namespace this socket was opened in")

    def _exchange(self, dumps: tuple[_Dump, ...]) -> list[list[bytes]]:
        """Run the dumps, sent together in one datagram; each one's message payloads.

        A dump the kernel refused as busy is sent again on its own; a dump flagged
        NLM_F_DUMP_INTR (the table changed meanwhile) is repeated up to MAX_DUMP_RETRIES times.
        """
        with self._lock:
            if self._closed:
                raise NetnsGone(f"stats socket for {self._where()} is closed")
            self._check_alive()
            if self._sock is None:
                self._reopen()  # the previous dump failed midway; start on a clean socket
            chunks = self._exchange_once(dumps)
            for chunk in chunks:
                if chunk is None or chunk.interrupted:
                    break
            else:  # the usual case: everything answered at once
                return [chunk.records for chunk in chunks]  # type: ignore[union-attr]
            return self._repeat(dumps, chunks)

    def _repeat(self, dumps: tuple[_Dump, ...], chunks: list[DumpChunk | None]) -> list[list[bytes]]:
        """Finish an exchange whose dumps were refused as busy or interrupted."""
        results: list[list[bytes]] = [[] for _ in dumps]
        pending = list(range(len(dumps)))
        interrupted_runs = 0
        while True:
            still = []
            for i, chunk in zip(pending, chunks):
                if chunk is None:  # busy: its turn comes next round
                    still.append(i)
                elif chunk.interrupted:
                    still.append(i)
                    interrupted_runs += 1
                else:
                    results[i] = chunk.records
            if not still:
                return results
            if interrupted_runs > MAX_DUMP_RETRIES * len(dumps):
                raise DumpInterrupted(
                    f"{dumps[still[0]].what} dump in {self._where()} was interrupted by "
                    f"concurrent changes {1 + MAX_DUMP_RETRIES} times in a row"
                )
            pending = still
            chunks = self._exchange_once(tuple(dumps[i] for i in pending))

    def _exchange_once(self, dumps: tuple[_Dump, ...]) -> list[DumpChunk | None]:
        """One send with every request, then receive until each dump is done or refused.
        Returns each dump's chunk, or None for one the kernel refused with EBUSY."""
        sock = self._sock
        assert sock is not None
        template, seq_offsets = _request_template(dumps)
        request = bytearray(template)
        chunks = []
        by_seq: dict[int, tuple[int, DumpChunk]] = {}
        seq = self._seq
        for dump, offset in zip(dumps, seq_offsets):
            seq = seq % 0xFFFFFFFF + 1
            _U32.pack_into(request, offset, seq)
            chunk = DumpChunk()
            chunks.append(chunk)
            by_seq[seq] = (dump.record_type, chunk)
        self._seq = seq
        open_dumps = len(chunks)
        split = split_datagram
        batch = _recv_batch()
        data = batch.data
        try:
            if self._held_gil_io:
                held_gil.send(sock, bytes(request))
                while open_dumps:
                    for offset, length in batch.receive(sock):
                        if length == 0:
                            raise NetlinkError(f"netlink socket of {self._where()} returned no data")
                        open_dumps -= split(data, length, by_seq, offset)
            else:
                sock.send(bytes(request))
                while open_dumps:
                    length = sock.recv_into(data, RECV_BUFFER_BYTES, socket.MSG_TRUNC)
                    if length == 0:
                        raise NetlinkError(f"netlink socket of {self._where()} returned no data")
                    open_dumps -= split(data, length, by_seq)
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
        out: list[DumpChunk | None] = chunks  # type: ignore[assignment]
        for i, chunk in enumerate(chunks):
            error = chunk.error
            if error is None:
                continue
            if i > 0 and error.errno == errno.EBUSY:
                # An earlier dump of this send was still running when this one arrived.
                out[i] = None
                continue
            # As after any failed dump, start on a fresh socket next time; but a kernel that
            # merely does not know RTM_GETSTATS left nothing behind (links() falls back).
            if not (dumps[i] is _STATS and error.errno in _STATS_UNSUPPORTED):
                self._drop_socket()
            raise error
        return out

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
