"""Host-side links the lab owns: its bridge, its pods' veths, the bandwidth plugin's ifbs."""

from __future__ import annotations

import ipaddress
import json
import os

from agent.lab import process


def link_exists(name: str) -> bool:
    return bool(name) and os.path.exists(f"/sys/class/net/{name}")


def link_master(name: str) -> str:
    """Name of the bridge the link is enslaved to ("" when none)."""
    try:
        return os.path.basename(os.readlink(f"/sys/class/net/{name}/master"))
    except OSError:
        return ""


def delete_link(name: str) -> bool:
    """Delete a host link if it exists; True when it was there."""
    if not link_exists(name):
        return False
    proc = process.run(["ip", "link", "del", "dev", name], check=False)
    return proc.returncode == 0


def addresses_in(subnet: str) -> list[tuple[str, str]]:
    """(interface, address) of host addresses inside subnet."""
    network = ipaddress.ip_network(subnet)
    proc = process.run(["ip", "-j", "-4", "addr", "show"], check=False)
    found = []
    try:
        links = json.loads(proc.stdout or b"[]")
    except ValueError:
        return found
    for link in links:
        for info in link.get("addr_info", []):
            addr = info.get("local", "")
            if addr and ipaddress.ip_address(addr) in network:
                found.append((link.get("ifname", ""), f"{addr}/{info.get('prefixlen', '')}"))
    return found
