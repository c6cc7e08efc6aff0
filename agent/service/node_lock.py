"""One agent per node and runtime: an abstract unix socket as a lock that dies with its holder.

Two agents shaping the same pods (say, one in egress mode `pod` and one in `ifb`) would undo each
other's work forever. The socket lives in the host network namespace, where a DaemonSet agent
runs (hostNetwork), and needs no file: the kernel frees the name when the holder exits, even by
SIGKILL, so a crashed agent never leaves a stale lock.
"""

from __future__ import annotations

import hashlib
import socket
import struct

_UCRED = struct.Struct("=iII")  # pid, uid, gid


def lock_name(scope: str) -> bytes:
    """The abstract socket name for agents of one scope (a runtime and its netns directory)."""
    return b"\0podbw-agent-" + hashlib.sha1(scope.encode()).hexdigest()[:20].encode()


class NodeLock:
    def __init__(self, scope: str) -> None:
        self.scope = scope
        self._name = lock_name(scope)
        self._sock: socket.socket | None = None

    @property
    def held(self) -> bool:
        return self._sock is not None

    def try_acquire(self) -> bool:
        """Take the lock unless another process holds it; True when this one holds it."""
        if self._sock is not None:
            return True
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(self._name)
            sock.listen(1)  # only so that a waiting agent can ask who holds it (holder_pid)
        except OSError:
            sock.close()
            return False
        self._sock = sock
        return True

    def holder_pid(self) -> int | None:
        """The pid of the process holding the lock, when it can be learnt (None otherwise)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            sock.connect(self._name)
            pid, _uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
            return pid or None
        except OSError:
            return None
        finally:
            sock.close()

    def release(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
