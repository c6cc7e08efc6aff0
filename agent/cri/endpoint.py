"""Where the CRI socket is, and whether it is usable, checked before gRPC dials it.

gRPC reports a missing or inaccessible socket only as a generic UNAVAILABLE after its own
connect attempt; a stat() first gives the operator the real cause on one line.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from agent.cri.errors import CriError, CriNotCri, CriPermissionDenied, CriUnavailable

UNIX_SCHEME = "unix://"
MAX_SOCKET_PATH_BYTES = 107
"""sun_path holds 108 bytes including the terminating NUL."""


@dataclass(frozen=True)
class Endpoint:
    """A CRI endpoint on a unix socket."""

    socket_path: str
    """Absolute path of the socket file."""

    @classmethod
    def parse(cls, endpoint: str) -> Endpoint:
        """Accept `unix:///path` (as kubelet and crictl write it) or a bare path."""
        text = endpoint.strip()
        if text.startswith(UNIX_SCHEME):
            path = text[len(UNIX_SCHEME):]
        elif text.startswith("unix:"):
            path = text[len("unix:"):]
        elif "://" in text:
            raise CriError(f"CRI endpoint {endpoint}: only unix:// endpoints are supported")
        else:
            path = text
        if not path:
            raise CriError(f"CRI endpoint {endpoint!r}: empty socket path")
        parsed = cls(os.path.abspath(path))
        if len(os.fsencode(parsed.socket_path)) > MAX_SOCKET_PATH_BYTES:
            raise CriError(
                f"CRI endpoint {parsed}: socket path longer than {MAX_SOCKET_PATH_BYTES} bytes"
            )
        return parsed

    @property
    def grpc_target(self) -> str:
        return f"{UNIX_SCHEME}{self.socket_path}"

    def __str__(self) -> str:
        return self.grpc_target

    def check_socket(self) -> None:
        """Raise the CriError that explains why the socket cannot be dialled; None if it can."""
        try:
            st = os.stat(self.socket_path)
        except FileNotFoundError:
            raise CriUnavailable(f"CRI endpoint {self}: socket does not exist") from None
        except NotADirectoryError:
            raise CriUnavailable(
                f"CRI endpoint {self}: socket does not exist (a parent is not a directory)"
            ) from None
        except PermissionError:
            raise CriPermissionDenied(
                f"CRI endpoint {self}: permission denied on a directory of the socket path"
            ) from None
        except OSError as exc:
            raise CriUnavailable(f"CRI endpoint {self}: cannot stat socket: {exc.strerror}") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise CriNotCri(f"CRI endpoint {self}: not a socket but a {_file_kind(st.st_mode)}")
        # connect() on a unix socket needs write permission on the socket file.
        if not os.access(self.socket_path, os.R_OK | os.W_OK):
            raise CriPermissionDenied(
                f"CRI endpoint {self}: permission denied (uid {os.geteuid()} may not read and "
                f"write the socket, mode {stat.filemode(st.st_mode)} owner {st.st_uid}:{st.st_gid})"
            )


def _file_kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "non-socket file"
