"""One rtnetlink socket per network namespace: the dumps the sampler makes every second and the
single gets the reconciler makes, all decoded by agent.netlink.codec.

An open netlink socket holds a reference on its namespace: after the pin is unmounted the
namespace (and its veths) lives on and dumps keep succeeding. So every call first checks that
the pin still leads to the namespace the socket was opened in, and raises Gone when it does not.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import socket
import threading
import time
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from agent.model.kernel import Link, Qdisc
from agent.netlink import codec
from agent.netlink.errors import Busy, Gone, NetlinkError, error_for
from agent.netlink.netns import netns_identity, run_in_netns

RECV_BUFFER_BYTES = 64 * 1024
"""The kernel fills a dump's datagrams up to 32 KiB: this never truncates one."""
RCVBUF_BYTES = 1 << 20
TIMEOUT_S = 5.0
MAX_DUMP_RETRIES = 3
"""Repeats of a dump flagged NLM_F_DUMP_INTR (the table changed meanwhile) before giving up."""
LINK_NAMES_MAX_AGE_S = 60.0
"""Names, peers and kinds are re-read at least this often (each socket jittered by +-50 %)."""
_STATS_UNSUPPORTED = frozenset((errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS))
"""What a kernel without RTM_GETSTATS (before 4.7) answers: links() falls back to full dumps."""

R = TypeVar("R")


class _Dump:
    """One dump request: how to build it, which messages carry its records, what it is."""

    def __init__(self, build: Callable[[int], bytes], record_type: int, what: str) -> None:
        self.build = build
        self.record_type = record_type
        self.what = what


_LINK_STATS = _Dump(codec.dump_link_stats, codec.RTM_NEWSTATS, "link statistics")
_LINK_NAMES = _Dump(codec.dump_links, codec.RTM_NEWLINK, "link")
_LINKS = _Dump(lambda seq: codec.dump_links(seq, with_stats=True), codec.RTM_NEWLINK, "link")
_QDISCS = _Dump(codec.dump_qdiscs, codec.RTM_NEWQDISC, "qdisc")
_BUSY = object()
_INTERRUPTED = object()


def _open_in_namespace() -> tuple[socket.socket, tuple[int, int]]:
    """Runs inside the target namespace: the socket binds to it at creation."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        try:  # FORCE ignores net.core.rmem_max (the agent has CAP_NET_ADMIN)
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), RCVBUF_BYTES)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        sock.settimeout(TIMEOUT_S)
        return sock, netns_identity("/proc/thread-self/ns/net")
    except BaseException:
        sock.close()
        raise


class NetlinkSocket:
    """Reads of one network namespace (None: the agent's own) over one socket, kept open.

    Thread-safe (one request at a time). Raises Gone once the namespace is gone, and on every
    call after close().
    """

    def __init__(
        self,
        netns_path: str | None = None,
        opener: Callable[[str | None], tuple[socket.socket, tuple[int, int] | None]] | None = None,
    ) -> None:
        """`opener` returns (socket, namespace identity) for a path: a test's scripted socket."""
        self.netns_path = netns_path
        self._opener = opener or (lambda path: run_in_netns(path, _open_in_namespace))
        self._lock = threading.RLock()
        self._seq = 0
        self._closed = False
        self._sock: socket.socket | None = None
        self._identity: tuple[int, int] | None = None
        self._use_link_stats = True
        """links() reads counters with RTM_GETSTATS (cleared when the kernel refuses it)."""
        self._link_names: dict[int, Link] = {}
        self._link_names_due_s = 0.0
        self._link_memo: dict[bytes, Link] = {}
        self._qdisc_memo: dict[bytes, Qdisc] = {}
        self._reopen()

    @property
    def where(self) -> str:
        return self.netns_path or "the agent's own namespace"

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the socket, and with it the kernel's reference on the namespace. Idempotent."""
        with self._lock:
            self._closed = True
            self._drop_socket()
            self._link_memo, self._qdisc_memo, self._link_names = {}, {}, {}

    def __enter__(self) -> NetlinkSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- dumps ---------------------------------------------------------------------------

    def links(self) -> list[Link]:
        """Every device of the namespace (loopback included) with its 64-bit counters. A device
        renamed in place shows its old name for up to LINK_NAMES_MAX_AGE_S (1.5x at most)."""
        with self._lock:
            if self._use_link_stats:
                try:
                    (payloads,) = self._dumps((_LINK_STATS,))
                except NetlinkError as err:
                    self._check_stats_supported(err)
                else:
                    return self._links_from_counters(payloads)
            (payloads,) = self._dumps((_LINKS,))
            return self._decoded(payloads, codec.decode_link, "_link_memo")

    def qdiscs(self) -> list[Qdisc]:
        """Every qdisc of the namespace (root, child and ingress) with its statistics."""
        with self._lock:
            (payloads,) = self._dumps((_QDISCS,))
            return self._decoded(payloads, codec.decode_qdisc, "_qdisc_memo")

    def links_and_qdiscs(self) -> tuple[list[Link], list[Qdisc]]:
        """links() and qdiscs() in one round trip: both requests go in one send()."""
        with self._lock:
            if not self._use_link_stats:
                return self.links(), self.qdiscs()
            try:
                stats, qdiscs = self._dumps((_LINK_STATS, _QDISCS))
            except NetlinkError as err:
                self._check_stats_supported(err)
                return self.links(), self.qdiscs()
            return self._links_from_counters(stats), self._decoded(qdiscs, codec.decode_qdisc, "_qdisc_memo")

    # ---- single gets ---------------------------------------------------------------------

    def link(self, ifindex: int = 0, name: str = "") -> Link | None:
        """One device, by ifindex or else by name, without counters; None when there is none."""
        what = f"get link {ifindex or name}"
        payload = self._get(lambda seq: codec.get_link(seq, ifindex, name), codec.RTM_NEWLINK, what,
                            absent=(errno.ENODEV, errno.ENXIO))
        return None if payload is None else self._decode(codec.decode_link, payload, what)

    def qdisc(self, ifindex: int, parent: int) -> Qdisc | None:
        """The qdisc at `parent` of a device; None when there is none or it is one of the kernel's
        placeholders (noop, noqueue), which are never sent."""
        what = f"get qdisc of ifindex {ifindex}"
        payload = self._get(lambda seq: codec.get_qdisc(seq, ifindex, parent), codec.RTM_NEWQDISC, what,
                            absent=(errno.ENOENT, errno.EINVAL))
        return None if payload is None else self._decode(codec.decode_qdisc, payload, what)

    def nsid_of(self, netns_path: str) -> int | None:
        """The id this namespace gives the namespace pinned at netns_path; None when it has none
        (no device links the two)."""
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise Gone(f"{self.where}: get nsid of {netns_path}: {err.strerror}") from err
        try:
            what = f"get nsid of {netns_path}"
            payload = self._get(lambda seq: codec.get_nsid(seq, fd), codec.RTM_NEWNSID, what)
        finally:
            os.close(fd)
        nsid = codec.NETNSA_NSID_NOT_ASSIGNED if payload is None else self._decode(codec.decode_nsid, payload, what)
        return None if nsid == codec.NETNSA_NSID_NOT_ASSIGNED else nsid

    # ---- decoding ------------------------------------------------------------------------

    def _decode(self, decode: Callable[[bytes], R], payload: bytes, what: str) -> R:
        try:
            return decode(payload)
        except NetlinkError as err:
            raise NetlinkError(f"{self.where}: {what}: {err}") from None

    def _decoded(self, payloads: list[bytes], decode: Callable[[bytes], R], memo_attr: str) -> list[R]:
        """Decoded payloads; bytes equal to the previous call's give the same object back, so
        callers can tell an unchanged record by identity."""
        memo: dict[bytes, R] = getattr(self, memo_attr)
        fresh: dict[bytes, R] = {}
        for payload in payloads:
            record = memo.get(payload)
            fresh[payload] = record if record is not None else self._decode(decode, payload, "dump")
        setattr(self, memo_attr, fresh)
        return [fresh[payload] for payload in payloads]

    def _links_from_counters(self, payloads: list[bytes]) -> list[Link]:
        """Links from RTM_NEWSTATS counters plus the names, peers and kinds of a dump without
        statistics, re-read when due or when an unknown device shows up."""
        names, memo = self._link_names, self._link_memo
        if time.monotonic() >= self._link_names_due_s:
            names, memo = self._refresh_link_names(), {}
        fresh: dict[bytes, Link] = {}
        links: list[Link] = []
        refreshed = False
        for payload in payloads:
            link = memo.get(payload)
            if link is None:
                ifindex, counters = self._decode(codec.decode_link_counters, payload, "link statistics")
                named = names.get(ifindex)
                if named is None and not refreshed:  # a new device: learn its name now
                    names, refreshed = self._refresh_link_names(), True
                    named = names.get(ifindex)
                if named is None:
                    continue  # deleted between the two dumps
                link = Link(*named[:9], *counters)
            fresh[payload] = link
            links.append(link)
        self._link_memo = fresh
        return links

    def _refresh_link_names(self) -> dict[int, Link]:
        (payloads,) = self._dumps((_LINK_NAMES,))
        self._link_names = {link.ifindex: link for link in (self._decode(codec.decode_link, p, "link") for p in payloads)}
        self._link_names_due_s = time.monotonic() + LINK_NAMES_MAX_AGE_S * random.uniform(0.5, 1.0)
        return self._link_names

    def _check_stats_supported(self, err: NetlinkError) -> None:
        """Re-raise err unless the kernel does not know RTM_GETSTATS; then use full dumps."""
        if err.errno not in _STATS_UNSUPPORTED:
            raise err
        self._use_link_stats = False
        self._link_memo = {}

    # ---- requests ------------------------------------------------------------------------

    def _dumps(self, dumps: Sequence[_Dump]) -> list[list[bytes]]:
        """Each dump's record payloads. The requests go out in one send(); one the kernel refused
        as busy (an earlier dump of the send still ran) or flagged interrupted is sent again."""
        results: list[list[bytes]] = [[] for _ in dumps]
        pending = list(range(len(dumps)))
        interrupted = 0
        while pending:
            outcomes = self._exchange([dumps[i] for i in pending])
            still = []
            for i, outcome in zip(pending, outcomes):
                if outcome is _BUSY or outcome is _INTERRUPTED:
                    still.append(i)
                    interrupted += outcome is _INTERRUPTED
                else:
                    results[i] = outcome  # type: ignore[assignment]
            if interrupted > MAX_DUMP_RETRIES * len(dumps):
                raise Busy(f"{self.where}: {dumps[still[0]].what} dump interrupted by changes {interrupted} times")
            pending = still
        return results

    def _exchange(self, dumps: Sequence[_Dump]) -> list[object]:
        """One send of every request; each dump's payloads, or _BUSY or _INTERRUPTED."""
        open_dumps: dict[int, tuple[int, _Dump]] = {}
        request = b""
        for position, dump in enumerate(dumps):
            seq = self._next_seq()
            open_dumps[seq] = (position, dump)
            request += dump.build(seq)
        payloads: list[list[bytes]] = [[] for _ in dumps]
        outcomes: list[object] = [None] * len(dumps)
        interrupted: set[int] = set()
        with self._talking() as sock:
            sock.send(request)
            while open_dumps:
                for msg_type, flags, seq, payload in codec.messages(self._receive(sock)):
                    entry = open_dumps.get(seq)
                    if entry is None:
                        continue  # a late answer to an abandoned request
                    position, dump = entry
                    if flags & codec.NLM_F_DUMP_INTR:
                        interrupted.add(position)
                    if msg_type == dump.record_type:
                        payloads[position].append(payload)
                    elif msg_type in (codec.NLMSG_DONE, codec.NLMSG_ERROR):
                        code = codec.status(payload)
                        if msg_type == codec.NLMSG_ERROR and code == 0:
                            continue  # an ACK: dumps do not send one, but it is harmless
                        del open_dumps[seq]
                        outcomes[position] = self._outcome(position, dump, code, payloads[position], position in interrupted)
                    elif msg_type == codec.NLMSG_OVERRUN:
                        raise NetlinkError(f"{self.where}: netlink overrun: data lost")
        for outcome in outcomes:
            if isinstance(outcome, NetlinkError):
                raise outcome
        return outcomes

    def _outcome(self, position: int, dump: _Dump, code: int, payloads: list[bytes], interrupted: bool) -> object:
        if code == errno.EBUSY and position > 0:
            return _BUSY
        if code:
            return error_for(code, f"{self.where}: {dump.what} dump")
        return _INTERRUPTED if interrupted else payloads

    def _get(self, build: Callable[[int], bytes], answer_type: int, what: str, absent: Iterable[int] = ()) -> bytes | None:
        """The answer to one request (None when the kernel sent none, or an errno in `absent`);
        it asks for an ACK, which follows the answer and ends the wait."""
        seq = self._next_seq()
        found: bytes | None = None
        code = -1
        with self._talking() as sock:
            sock.send(build(seq))
            while code < 0:
                for msg_type, _flags, msg_seq, payload in codec.messages(self._receive(sock)):
                    if msg_seq != seq:
                        continue
                    if msg_type == answer_type:
                        found = payload
                    elif msg_type == codec.NLMSG_ERROR:
                        code = codec.status(payload)
        if code == 0 or code in absent:
            return found
        raise error_for(code, f"{self.where}: {what}")

    def _receive(self, sock: socket.socket) -> bytes:
        data = sock.recv(RECV_BUFFER_BYTES)
        if not data:
            raise NetlinkError(f"{self.where}: the netlink socket returned no data")
        return data

    @contextlib.contextmanager
    def _talking(self) -> Iterator[socket.socket]:
        """The socket for one request and its answers, under the lock. A request that fails
        midway leaves the kernel's dump running on it: it is dropped, the next one starts anew."""
        with self._lock:
            sock = self._ready_socket()
            try:
                yield sock
            except OSError as err:
                self._drop_socket()
                if self.netns_path is not None and not _still_there(self.netns_path):
                    self.close()
                    raise Gone(f"network namespace {self.where} is gone") from err
                kind = Busy if isinstance(err, TimeoutError) else NetlinkError
                raise kind(f"{self.where}: netlink I/O failed: {err}") from err
            except BaseException:
                self._drop_socket()
                raise

    def _next_seq(self) -> int:
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq

    def _ready_socket(self) -> socket.socket:
        """The socket, after checking that the pin still leads to its namespace."""
        if self._closed:
            raise Gone(f"netlink socket for {self.where} is closed")
        if self.netns_path is not None and self._identity is not None:
            try:
                now = netns_identity(self.netns_path)
            except OSError as err:
                self.close()
                raise Gone(f"network namespace {self.where} is gone: {err.strerror}") from None
            if now != self._identity:
                self.close()
                raise Gone(f"network namespace {self.where} is gone: the pin holds another namespace now")
        if self._sock is None:
            self._reopen()  # the previous request failed midway: start on a clean socket
        assert self._sock is not None
        return self._sock

    def _reopen(self) -> None:
        self._drop_socket()
        self._sock, self._identity = self._opener(self.netns_path)

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _still_there(netns_path: str) -> bool:
    try:
        netns_identity(netns_path)
    except OSError:
        return False
    return True


class NetlinkSocketPool:
    """One NetlinkSocket per namespace path, opened on first use and reused. Thread-safe.

    None is the agent's own namespace. A socket that closed itself because its namespace went
    away is replaced on the next get() (which raises Gone if the path is still not one).
    """

    def __init__(self, factory: Callable[[str | None], NetlinkSocket] = NetlinkSocket) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._sockets: dict[str | None, NetlinkSocket] = {}

    def get(self, netns_path: str | None) -> NetlinkSocket:
        with self._lock:
            sock = self._sockets.get(netns_path)
            if sock is None or sock.closed:
                sock = self._sockets[netns_path] = self._factory(netns_path)
            return sock

    def forget(self, netns_path: str | None) -> None:
        """Close and drop the socket of one namespace."""
        with self._lock:
            sock = self._sockets.pop(netns_path, None)
        if sock is not None:
            sock.close()

    def retain(self, paths: Iterable[str]) -> None:
        """Close the sockets of every namespace not in paths (the agent's own is kept): an open
        socket keeps a deleted namespace alive."""
        keep = set(paths)
        with self._lock:
            stale = [self._sockets.pop(p) for p in list(self._sockets) if p is not None and p not in keep]
        for sock in stale:
            sock.close()

    def close_all(self) -> None:
        with self._lock:
            closing = list(self._sockets.values())
            self._sockets.clear()
        for sock in closing:
            sock.close()

    def __enter__(self) -> NetlinkSocketPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_all()
