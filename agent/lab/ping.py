"""One ICMP echo, for machines without iputils-ping: `python -m agent.lab.ping [-W S] ADDRESS`.

Exit status 0 when a reply came back in time, 1 otherwise (as `ping -c1 -W S` does). Needs root
(raw socket). `ping_argv` picks the real ping when it is installed.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import socket
import struct
import sys
import time

_ECHO_REQUEST, _ECHO_REPLY = 8, 0


def ping_argv(address: str, timeout_s: int = 1) -> list[str]:
    """argv for one echo to address, to run inside a pod."""
    if shutil.which("ping"):
        return ["ping", "-c1", f"-W{timeout_s}", address]
    return [sys.executable, "-m", "agent.lab.ping", "-W", str(timeout_s), address]


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo(address: str, timeout_s: float) -> bool:
    ident, seq = os.getpid() & 0xFFFF, 1
    payload = b"podbw-lab-ping"
    header = struct.pack("!BBHHH", _ECHO_REQUEST, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", _ECHO_REQUEST, 0, _checksum(header + payload), ident, seq) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.sendto(packet, (address, 0))
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data, (source, _) = sock.recvfrom(2048)
            icmp = data[(data[0] & 0x0F) * 4 :]  # skip the IP header
            if len(icmp) >= 8 and source == address:
                kind, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
                if kind == _ECHO_REPLY and rid == ident and rseq == seq:
                    return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.lab.ping", description=__doc__)
    parser.add_argument("-W", dest="timeout_s", type=float, default=1.0, help="seconds to wait for the reply")
    parser.add_argument("address")
    args = parser.parse_args(argv)
    try:
        ok = echo(args.address, args.timeout_s)
    except OSError as e:
        print(f"ping {args.address}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"{args.address} {'is alive' if ok else 'did not answer'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
