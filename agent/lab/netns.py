"""Pinned network namespaces, made the way CRI-O's pinns makes them.

pinns creates the empty file first (O_CREAT|O_EXCL) and bind-mounts the namespace onto it
afterwards, so an inotify watcher sees IN_CREATE on a file that is not a namespace yet; the
lab keeps that gap (the file is created here, `unshare` mounts the namespace onto it later).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import signal

from agent.lab import process
from agent.lab.config import SYSTEM_NETNS_DIR
from agent.lab.errors import LabError

_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_SHARED = 1 << 20
_MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, flags: int) -> None:
    if _libc.mount(source.encode(), target.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise LabError(f"mount {source} on {target}: {os.strerror(err)}")


def mount_points() -> list[str]:
    """Every mount point of this process's mount namespace."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ")
            if len(fields) > 4:
                # mountinfo escapes space, tab, newline and backslash as octal.
                points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    return points


def is_mount_point(path: str) -> bool:
    return os.path.abspath(path) in mount_points()


def ensure_netns_dir(netns_dir: str) -> None:
    """Create the dir; the system one also becomes a shared mount point, as `ip netns` makes it.

    If /var/run/netns were a plain directory, a later `ip netns add` would bind it onto itself
    and our pins would keep a hidden copy underneath that no umount here could reach.
    """
    os.makedirs(netns_dir, mode=0o755, exist_ok=True)
    if os.path.realpath(netns_dir) != os.path.realpath(SYSTEM_NETNS_DIR):
        return
    real = os.path.realpath(netns_dir)
    if not is_mount_point(real):
        _mount(real, real, _MS_BIND | _MS_REC)
    _mount("none", real, _MS_SHARED | _MS_REC)


def create_pin_file(path: str) -> None:
    """Step one of pinning: the empty file, which must not exist yet."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
    except FileExistsError as e:
        raise LabError(f"netns file {path} already exists") from e
    os.close(fd)


def pin_new_netns(path: str) -> None:
    """Step two: a fresh network namespace bind-mounted onto the file."""
    process.run(["unshare", f"--net={path}", "true"])


def host_netns_source() -> str:
    """/proc/1/ns/net, or our own when pid 1's is off limits (sandboxes deny it with EACCES).

    The lab runs in the host namespace, so both name the same namespace there.
    """
    try:
        os.stat("/proc/1/ns/net")
        return "/proc/1/ns/net"
    except PermissionError:
        return "/proc/self/ns/net"


def pin_host_netns(path: str) -> None:
    """What CRI-O does for hostNetwork pods: the pin is the host's own namespace."""
    _mount(host_netns_source(), path, _MS_BIND)


def netns_inode(path: str) -> int | None:
    """Inode of the namespace mounted at path, None when nothing is mounted there."""
    try:
        st = os.stat(path)
        root_dev = os.stat(os.path.dirname(path) or "/").st_dev
    except OSError:
        return None
    return st.st_ino if st.st_dev != root_dev else None


def unpin(path: str) -> None:
    """Unmount (lazily: a holder keeps the namespace, not the mount) and remove the file."""
    while _libc.umount2(path.encode(), _MNT_DETACH) == 0:
        pass  # stacked mounts: a second pin on the same file is unmounted too
    err = ctypes.get_errno()
    if err not in (errno.EINVAL, errno.ENOENT):
        raise LabError(f"umount {path}: {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def umount_tree(directory: str) -> None:
    """Unmount every mount at or below directory, deepest first."""
    directory = os.path.abspath(directory)
    below = [m for m in mount_points() if m == directory or m.startswith(directory + "/")]
    for point in sorted(set(below), key=len, reverse=True):
        while _libc.umount2(point.encode(), _MNT_DETACH) == 0:
            pass


def kill_processes_in(netns_inodes: set[int]) -> list[int]:
    """SIGKILL every process inside one of these namespaces (they would keep it alive)."""
    own = os.stat("/proc/self/ns/net").st_ino
    targets = netns_inodes - {own}
    killed = []
    if not targets:
        return killed
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            inode = os.stat(f"/proc/{entry}/ns/net").st_ino
        except OSError:
            continue
        if inode in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
    return killed
