"""send / recvmmsg / stat for the sampler's netlink sockets, without releasing the GIL.

Why: Python releases the GIL around every socket call and os.stat(). A thread that gives the
GIL up while others are busy (HTTP threads rendering /metrics for many scrapers) waits up to
the switch interval (5 ms) to get it back. The sampler makes several such calls per pod, so
under load a 250-pod pass stretched from tens of milliseconds to seconds (bench/collect.py).
These calls are short and never sleep: a netlink dump is produced synchronously inside
send() and recv() (the kernel builds the next part of a dump as the previous one is read),
receiving is MSG_DONTWAIT, and the stat is of a namespace pin on a local filesystem. Holding
the GIL through them costs other threads microseconds and spares the sampler a wait per call.

recvmmsg() also takes every datagram of a small dump in one system call: a pod's link and
qdisc dumps answer in three datagrams, which recv() needs three calls for.

ctypes.PyDLL calls C without releasing the GIL. Where libc lacks a function (non-glibc), or a
call would block (EAGAIN), callers fall back to the ordinary, GIL-releasing Python calls.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import threading

# Plain ints: socket.MSG_* are IntFlag members, and `|` on them runs Python enum code.
MSG_DONTWAIT = int(getattr(socket, "MSG_DONTWAIT", 0x40))
MSG_TRUNC = int(getattr(socket, "MSG_TRUNC", 0x20))
AT_FDCWD = -100
STATX_INO = 0x100
# struct statx has one layout on every architecture (unlike struct stat).
_STATX_BYTES = 256
_STX_INO = struct.Struct("=Q")  # stx_ino, at offset 32
_STX_DEV = struct.Struct("=II")  # stx_dev_major, stx_dev_minor, at offset 136


class _IoVec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


class _MsgHdr(ctypes.Structure):
    _fields_ = (
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_IoVec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    )


class _MMsgHdr(ctypes.Structure):
    _fields_ = (("hdr", _MsgHdr), ("len", ctypes.c_uint))


_MMSG_BYTES = ctypes.sizeof(_MMsgHdr)
_FLAGS_AT = _MMsgHdr.hdr.offset + _MsgHdr.flags.offset
_LEN_AT = _MMsgHdr.len.offset
_INT = struct.Struct("=i")
_UINT = struct.Struct("=I")


def _bind(name: str, argtypes: tuple, restype: type) -> object | None:
    try:
        fn = getattr(_libc, name)
    except AttributeError:  # pragma: no cover - older or non-glibc libc
        return None
    fn.argtypes = argtypes
    fn.restype = restype
    return fn


try:
    _libc = ctypes.PyDLL(None, use_errno=True)
except OSError:  # pragma: no cover - no dynamic libc at all
    _send = _recvmmsg = _statx = None
else:
    _send = _bind("send", (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int), ctypes.c_ssize_t)
    _recvmmsg = _bind(
        "recvmmsg",
        (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p),
        ctypes.c_int,
    )
    _statx = _bind(
        "statx",
        (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p),
        ctypes.c_int,
    )

AVAILABLE = _send is not None and _recvmmsg is not None


def send(sock: socket.socket, data: bytes) -> int:
    """sock.send(data), holding the GIL unless the call would block."""
    if _send is not None:
        sent = _send(sock.fileno(), data, len(data), MSG_DONTWAIT)
        if sent >= 0:
            return sent
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err))
    return sock.send(data)


class RecvBatch:
    """Buffers for up to `slots` datagrams of up to `slot_bytes` each, filled by one recvmmsg().

    `data` is one bytearray; datagram i lands at offset i * slot_bytes.
    """

    def __init__(self, slots: int, slot_bytes: int) -> None:
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.data = bytearray(slots * slot_bytes)
        # from_buffer pins the bytearray (it can no longer be resized) while _view lives.
        self._view = (ctypes.c_char * len(self.data)).from_buffer(self.data)
        base = ctypes.addressof(self._view)
        self._iovs = (_IoVec * slots)()
        self._msgs = (_MMsgHdr * slots)()
        for i in range(slots):
            self._iovs[i].base = base + i * slot_bytes
            self._iovs[i].len = slot_bytes
            self._msgs[i].hdr.iov = ctypes.pointer(self._iovs[i])
            self._msgs[i].hdr.iovlen = 1
        self._msgs_address = ctypes.addressof(self._msgs)
        # Fields read through struct, not ctypes attributes (which build an object per access).
        self._msgs_raw = memoryview(self._msgs).cast("B")
        self._first_slot = memoryview(self.data)[:slot_bytes]

    def receive(self, sock: socket.socket) -> list[tuple[int, int]]:
        """Every datagram already queued (up to `slots`), as (offset, length) in `data`.

        When nothing is queued yet, waits for one with the socket's own (GIL-releasing,
        timeout-bound) recv_into. A datagram longer than a slot raises OSError(EMSGSIZE).
        """
        if _recvmmsg is not None:
            count = _recvmmsg(sock.fileno(), self._msgs_address, self.slots, MSG_DONTWAIT, None)
            if count > 0:
                out = []
                raw = self._msgs_raw
                for i in range(count):
                    at = i * _MMSG_BYTES
                    if _INT.unpack_from(raw, at + _FLAGS_AT)[0] & MSG_TRUNC:
                        raise OSError(errno.EMSGSIZE, f"netlink datagram longer than {self.slot_bytes} bytes")
                    out.append((i * self.slot_bytes, _UINT.unpack_from(raw, at + _LEN_AT)[0]))
                return out
            err = ctypes.get_errno()
            if count < 0 and err not in (errno.EAGAIN, errno.EINTR):
                raise OSError(err, os.strerror(err))
        length = sock.recv_into(self._first_slot, self.slot_bytes, socket.MSG_TRUNC)
        if length > self.slot_bytes:
            raise OSError(errno.EMSGSIZE, f"netlink datagram of {length} bytes, longer than a slot")
        return [(0, length)]


_statx_buffers = threading.local()


def identity(path: str | bytes) -> tuple[int, int]:
    """(st_dev, st_ino) of path, as os.stat() gives them (follows symlinks)."""
    if _statx is not None:
        buf = getattr(_statx_buffers, "buf", None)
        if buf is None:
            buf = _statx_buffers.buf = ctypes.create_string_buffer(_STATX_BYTES)
        if _statx(AT_FDCWD, os.fsencode(path), 0, STATX_INO, buf) == 0:
            major, minor = _STX_DEV.unpack_from(buf, 136)
            return os.makedev(major, minor), _STX_INO.unpack_from(buf, 32)[0]
        err = ctypes.get_errno()
        if err != errno.ENOSYS:
            raise OSError(err, os.strerror(err), os.fsdecode(path))
    st = os.stat(path)
    return st.st_dev, st.st_ino
