"""Pods from pinned network namespaces alone, for nodes without a CRI socket."""

from __future__ import annotations

import os

from agent.model.pod import SOURCE_NETNS, Pod
from agent.netlink.netns import host_netns_inode, is_netns, netns_inode


def pod_from_netns(netns_dir: str, file_name: str) -> Pod:
    path = os.path.join(netns_dir, file_name)
    return Pod(
        sandbox_id=file_name,
        uid="",
        namespace="",
        name=file_name,
        netns_path=path,
        source=SOURCE_NETNS,
    )


def is_pod_netns(path: str, host_inode: int | None = None) -> bool:
    """A pinned namespace that is not the host's own (CRI-O pins host-network pods to it)."""
    if not is_netns(path):
        return False
    try:
        inode = netns_inode(path)
    except OSError:
        return False
    return inode != (host_netns_inode() if host_inode is None else host_inode)


def scan_netns_dir(netns_dir: str) -> list[Pod]:
    try:
        names = sorted(os.listdir(netns_dir))
    except FileNotFoundError:
        return []
    host_inode = host_netns_inode()
    return [
        pod_from_netns(netns_dir, name)
        for name in names
        if is_pod_netns(os.path.join(netns_dir, name), host_inode)
    ]
