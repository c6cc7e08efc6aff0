"""Entering pinned network namespaces without forking and without creating them.

pyroute2's `IPRoute(netns=...)` forks a child per socket and, with its default flags, creates a
namespace that does not exist. Here a short-lived thread setns()es into the namespace and runs a
callable there: sockets it opens stay bound to that namespace for their whole life, while the
calling thread (and every other thread of the agent) never changes namespace.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
from typing import Callable, TypeVar

from agent.netlink.errors import Gone

CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
HOST_NETNS_PATH = "/proc/1/ns/net"
OWN_NETNS_PATH = "/proc/self/ns/net"

T = TypeVar("T")

# os.setns() arrives in Python 3.12; until then, libc's.
_libc = ctypes.CDLL(None, use_errno=True)


def _nsfs_device() -> int:
    """The device of nsfs, the one filesystem every namespace file lives on."""
    return os.stat(OWN_NETNS_PATH).st_dev


def is_netns(path: str) -> bool:
    """True when path is a bind-mounted namespace file; false for a missing or empty pin.

    The pin file exists, empty, before CRI-O's pinns bind-mounts the namespace onto it: an
    inotify IN_CREATE alone does not mean the namespace is usable yet.
    """
    try:
        return os.stat(path).st_dev == _nsfs_device()
    except OSError:
        return False


def netns_inode(path: str) -> int:
    """Inode of the namespace behind path: equal inodes mean the same namespace."""
    return os.stat(path).st_ino


def host_netns_inode() -> int:
    """Inode of the host's network namespace (PID 1's); host-network pods' pins have it too.

    When PID 1's namespace links cannot be read (EACCES: PID 1 belongs to a supervisor the
    agent may not ptrace), the agent's own, which is the host's: it runs with hostNetwork.
    """
    try:
        return netns_inode(HOST_NETNS_PATH)
    except PermissionError:
        return netns_inode(OWN_NETNS_PATH)


def netns_identity(path: str) -> tuple[int, int]:
    """(device, inode) of the namespace at path: what a socket opened there stays bound to."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _open_netns(netns_path: str) -> int:
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise Gone(f"network namespace {netns_path} does not exist") from exc
    # Checked on the open fd, not the path, so an unmount between check and setns cannot slip by.
    if os.fstat(fd).st_dev != _nsfs_device():
        os.close(fd)
        raise Gone(f"{netns_path} is not a namespace file (empty pin or unmounted)")
    return fd


def _setns(fd: int, netns_path: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        if err == errno.EINVAL:
            raise Gone(f"{netns_path} is a namespace file but not a network namespace")
        raise OSError(err, f"setns({netns_path}): {os.strerror(err)}")


def run_in_netns(netns_path: str | None, fn: Callable[[], T]) -> T:
    """Run fn inside the network namespace pinned at netns_path and return its result.

    fn runs in a dedicated thread that exits afterwards, so no thread of the caller ever
    changes namespace. Sockets fn creates keep talking to that namespace after the thread ends.
    netns_path None runs fn directly in the caller's namespace. Raises Gone when the path is
    missing or not a network namespace; exceptions from fn propagate unchanged.
    """
    if netns_path is None:
        return fn()
    fd = _open_netns(netns_path)
    outcome: dict[str, object] = {}

    def body() -> None:
        try:
            _setns(fd, netns_path)
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread, re-raised there
            outcome["error"] = exc

    try:
        worker = threading.Thread(target=body, name=f"netns:{os.path.basename(netns_path)}")
        worker.start()
        worker.join()
    finally:
        os.close(fd)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def open_netlink_socket(netns_path: str | None) -> socket.socket:
    """A rtnetlink socket bound to the namespace at netns_path (None: the caller's own).

    For pyroute2 0.9.x use it as `IPRoute(use_socket=sock)`, built and used in one thread:
    IPRoute keeps its socket per thread, so one constructed inside run_in_netns and used from
    another thread silently opens a fresh socket in that thread's namespace (the host's). A
    datagram socket: pyroute2's asyncio transport takes no other.
    """
    return run_in_netns(netns_path, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE))
