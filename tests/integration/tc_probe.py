"""Read qdiscs with iproute2's `tc -j`: an observer independent of podbw's own netlink code."""

from __future__ import annotations

import json
import subprocess


def qdiscs(device: str, netns_path: str | None = None) -> list[dict]:
    argv = ["tc", "-s", "-j", "qdisc", "show", "dev", device]
    if netns_path:
        argv = ["nsenter", f"--net={netns_path}", "--", *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        return []
    return json.loads(result.stdout or "[]")


def root(device: str, netns_path: str | None = None) -> dict | None:
    for qdisc in qdiscs(device, netns_path):
        if qdisc.get("root"):
            return qdisc
    return None


def tbf_rate(device: str, netns_path: str | None = None) -> int | None:
    """The rate (bytes/s) of the device's root TBF; None when its root is no TBF or absent."""
    found = root(device, netns_path)
    return found["options"]["rate"] if found and found["kind"] == "tbf" else None


def tc(*args: str, netns_path: str | None = None) -> None:
    argv = ["tc", *args]
    if netns_path:
        argv = ["nsenter", f"--net={netns_path}", "--", *argv]
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=10)


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True, timeout=10).returncode == 0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


def link_alias(name: str) -> str:
    """The device's alias as iproute2 reports it ("" when it has none)."""
    out = subprocess.run(["ip", "-j", "link", "show", name], check=True, capture_output=True, text=True, timeout=10).stdout
    return json.loads(out)[0].get("ifalias", "")
